//! The mount's readahead -> `/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`.
//!
//! A FUSE mount starts with the kernel's default readahead, 128 KiB, and FUSE_INIT can only
//! lower it, so a sequential reader's page-cache misses become 128 KiB FUSE reads even where
//! one request may carry 1 MiB. The mount's backing device has a sysfs knob that raises it;
//! only root may write it, and only once FUSE_INIT has been answered (the answer would lower it
//! again). So a thread waits for the mount to answer a `stat` of its root (no request is
//! served before FUSE_INIT) and then writes the knob. Unprivileged mounts keep the default.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use log::{debug, warn};

/// Sets the readahead of the mount at `mountpoint` to `kib` KiB once it answers requests, on
/// a thread of its own (a `stat` that never returns holds only that thread, until unmount).
pub(crate) fn set_when_ready(mountpoint: &Path, kib: u32) -> io::Result<JoinHandle<()>> {
    let mountpoint = mountpoint.to_owned();
    std::thread::Builder::new().name("readahead".into()).spawn(move || {
        let device = match std::fs::metadata(&mountpoint) {
            Ok(meta) => meta.dev(),
            Err(err) => return debug!("readahead left as it is: stat of the mount: {err}"),
        };
        match set(device, kib) {
            Ok(()) => debug!("readahead of {} set to {kib} KiB", mountpoint.display()),
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                debug!("readahead left at the kernel's default (not root): {err}")
            }
            Err(err) => warn!("cannot set the readahead of {}: {err}", mountpoint.display()),
        }
    })
}

/// Writes `kib` to the readahead knob of the backing device `device`.
fn set(device: u64, kib: u32) -> io::Result<()> {
    let knob = knob(device);
    std::fs::write(&knob, format!("{kib}\n"))
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", knob.display())))
}

/// The readahead knob of the backing device `device` (a FUSE mount's anonymous device).
pub(crate) fn knob(device: u64) -> PathBuf {
    let (major, minor) = (rustix::fs::major(device), rustix::fs::minor(device));
    PathBuf::from(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knob_is_named_by_major_and_minor() {
        let device = rustix::fs::makedev(0, 52);
        assert_eq!(knob(device), PathBuf::from("/sys/class/bdi/0:52/read_ahead_kb"));
    }
}
