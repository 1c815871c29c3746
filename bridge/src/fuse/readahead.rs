//! The mount's readahead -> `/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`.
//!
//! A FUSE mount starts with the kernel's default readahead, 128 KiB, and FUSE_INIT can only
//! lower it, so a sequential reader's page-cache misses become 128 KiB FUSE reads even where
//! one request may carry 1 MiB. The mount's backing device has a sysfs knob that raises it;
//! only root may write it, and only once the answer to FUSE_INIT has been processed (it would
//! lower it again). The kernel sends no other request before that, so the knob is written when
//! the first file is opened, before any read of it. Nothing here makes a request of its own:
//! a `stat` of the mount in flight would make an immediate unmount fail as busy.

use std::io;
use std::path::PathBuf;
use std::sync::Once;

use log::{debug, warn};

/// A readahead to set once the mount serves requests.
#[derive(Debug)]
pub(crate) struct Readahead {
    /// The knob of the mount's device (from mountinfo); `None`: unknown, nothing to set.
    knob: Option<PathBuf>,
    kib: u32,
    set: Once,
}

impl Readahead {
    /// `kib` KiB for the mount whose device is `major:minor`.
    pub(crate) fn new(device: Option<(u32, u32)>, kib: u32) -> Readahead {
        Readahead { knob: device.map(knob), kib, set: Once::new() }
    }

    /// Writes the knob the first time it is called: from a request handler, so after the
    /// answer to FUSE_INIT. Best effort: a failure is logged, the kernel's readahead stays.
    pub(crate) fn apply(&self) {
        self.set.call_once(|| {
            let Some(knob) = &self.knob else { return };
            match std::fs::write(knob, format!("{}\n", self.kib)) {
                Ok(()) => debug!("{} set to {} KiB", knob.display(), self.kib),
                Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                    debug!("readahead left at the kernel's default (not root): {err}")
                }
                Err(err) => warn!("cannot set the readahead ({}): {err}", knob.display()),
            }
        });
    }
}

/// The readahead knob of the device `major:minor` (a FUSE mount's anonymous device).
fn knob((major, minor): (u32, u32)) -> PathBuf {
    PathBuf::from(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knob_is_named_by_major_and_minor_and_an_unknown_device_sets_nothing() {
        assert_eq!(knob((0, 52)), PathBuf::from("/sys/class/bdi/0:52/read_ahead_kb"));
        Readahead::new(None, 1024).apply(); // nothing to write, nothing to fail
    }
}
