//! Mounting and unmounting a FUSE filesystem ourselves, so that we own the `/dev/fuse` fd.
//!
//! fuser's own `Session::new` mounts and keeps the device to itself. We mount here instead and
//! hand the device to [`super::proxy`], which relays it to fuser through `Session::from_fd`.
//!
//! # How [`mount`] mounts
//!
//! - **fusermount3** (or `fusermount`), found on `PATH`, through the `_FUSE_COMMFD` protocol that
//!   libfuse and fuser use: we create a Unix socket pair, run
//!   `fusermount3 -o <options> -- <mountpoint>` with `_FUSE_COMMFD=<fd number of its end>`, and
//!   fusermount3 opens `/dev/fuse`, calls `mount(2)` and sends the open device back over the
//!   socket as `SCM_RIGHTS`. We receive it close-on-exec.
//!   - Without `auto_unmount` fusermount3 exits right after that; we reap it and check its status.
//!     Its stderr is captured and goes into our error (or a warning log) rather than straight
//!     to the terminal.
//!   - With `auto_unmount` it stays alive, blocked reading its end of the socket; when our end
//!     closes (our process died) it lazily unmounts the filesystem if the connection is dead
//!     (opening the mountpoint gives `ENOTCONN`). [`KernelMount`] therefore keeps our end of the
//!     socket and the [`Child`] until it is unmounted.
//!   - Its end of the socket must survive `exec`, which safe Rust can only arrange by clearing
//!     `FD_CLOEXEC` on it around the spawn: a process spawned by another thread in that short
//!     window inherits a copy. That is harmless (it can only keep fusermount3's end open, and we
//!     never wait for that end's EOF: while waiting for the device we watch the child's exit).
//! - **`mount(2)` directly**, when no fusermount is installed and we are root: we open
//!   `/dev/fuse` ourselves and pass `fd=N,rootmode=40000,user_id=..,group_id=..`. There is no
//!   helper process then, so `auto_unmount` is not available (a warning is logged).
//!
//! Unmounting runs `fusermount3 -u` (root without fusermount: `umount2`). Nothing in here touches
//! the mounted filesystem itself (no `stat` of the mountpoint once mounted): a FUSE mount whose
//! server is not reading yet, or is stuck, would block us. Mount state is read from
//! `/proc/self/mountinfo`.

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{self, ErrorKind, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use log::{debug, info, warn};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::{fcntl_setfd, Errno, FdFlags};
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::net::{
    recvmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SocketFlags, SocketType,
};
use rustix::process::{getegid, geteuid};

const DEV_FUSE: &str = "/dev/fuse";
const FUSECTL_DIR: &str = "/sys/fs/fuse/connections";
const MOUNTINFO: &str = "/proc/self/mountinfo";
const COMMFD_ENV: &str = "_FUSE_COMMFD";
const FUSERMOUNT_NAMES: [&str; 2] = ["fusermount3", "fusermount"];

/// Options for [`mount`]. Empty `fsname`/`subtype` are left out.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// Source shown in `mount`/`df` (`fsname=`); commas and backslashes are escaped for
    /// fusermount3.
    pub fsname: String,
    /// Type suffix: the mount shows as `fuse.<subtype>`.
    pub subtype: String,
    /// Mount read-only (`ro`).
    pub read_only: bool,
    /// Let other users access the mount (`allow_other`; for non-root users it needs
    /// `user_allow_other` in /etc/fuse.conf).
    pub allow_other: bool,
    /// Let the kernel check permissions from the file modes (`default_permissions`).
    pub default_permissions: bool,
    /// Keep fusermount3 waiting, so that the mount goes away if this process dies
    /// (`auto_unmount`). Needs fusermount3.
    pub auto_unmount: bool,
    /// Largest single FUSE_READ the kernel sends (`max_read=N`).
    pub max_read: Option<u32>,
}

/// A mounted FUSE filesystem whose `/dev/fuse` fd we own. Unmounts on drop.
#[derive(Debug)]
pub struct KernelMount {
    /// Canonical path of the mountpoint.
    mountpoint: PathBuf,
    /// The `/dev/fuse` fd (close-on-exec) until [`KernelMount::take_device`].
    device: Option<OwnedFd>,
    /// The fusermount binary used to mount; `None` when mounted with `mount(2)` directly.
    fusermount: Option<PathBuf>,
    /// `major:minor` of the new mount as found in mountinfo right after mounting, so that
    /// [`KernelMount::unmount`] can tell whether it is still there (and not unmount whatever
    /// was mounted on the same path later).
    dev: Option<(u32, u32)>,
    /// Our end of the `_FUSE_COMMFD` socket, kept open for an `auto_unmount` fusermount3.
    auto_unmount_socket: Option<OwnedFd>,
    /// The waiting `auto_unmount` fusermount3, reaped after unmounting.
    helper: Option<Child>,
    mounted: bool,
}

impl KernelMount {
    /// The `/dev/fuse` fd.
    ///
    /// # Panics
    /// If it was taken with [`KernelMount::take_device`].
    pub fn device(&self) -> BorrowedFd<'_> {
        self.device.as_ref().expect("the /dev/fuse fd was taken with take_device()").as_fd()
    }

    /// Takes the `/dev/fuse` fd (close-on-exec) out, e.g. for [`super::proxy::spawn`]. The
    /// mount stays ours: it is still unmounted by [`KernelMount::unmount`] or drop.
    pub fn take_device(&mut self) -> Option<OwnedFd> {
        self.device.take()
    }

    /// The canonical mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// `(major, minor)` of the mount's device, as mountinfo showed it right after mounting.
    pub fn dev(&self) -> Option<(u32, u32)> {
        self.dev
    }

    /// Unmounts (not lazily: fails with `ResourceBusy` while a process has a file or its
    /// working directory there). Idempotent; a mount that is already gone (unmounted from
    /// outside) counts as success. Afterwards the `auto_unmount` helper is released and reaped.
    pub fn unmount(&mut self) -> io::Result<()> {
        if !self.mounted {
            return Ok(());
        }
        if self.still_mounted() {
            match &self.fusermount {
                Some(bin) => fusermount_unmount(bin, &self.mountpoint, false)?,
                None => umount2(&self.mountpoint, false)?,
            }
        } else {
            debug!("{} is no longer mounted", self.mountpoint.display());
        }
        self.mounted = false;
        self.release_helper(true);
        Ok(())
    }

    /// Records that the mount is gone: the connection reported it (the device read ended with
    /// `ENODEV` after an unmount from outside). The mount table cannot tell: a new mount at the
    /// same path right after ours may get the same device number, and must not be unmounted.
    pub fn forget(&mut self) {
        self.mounted = false;
    }

    /// Whether our mount is still in the mount table (true if that cannot be told).
    fn still_mounted(&self) -> bool {
        let Some(dev) = self.dev else { return true };
        match read_mountinfo() {
            Ok(entries) => entries.iter().any(|e| e.dev == dev && e.mount_point == self.mountpoint),
            Err(_) => true,
        }
    }

    /// Closes the `auto_unmount` socket (fusermount3 then finds the mount gone and exits) and
    /// reaps fusermount3. Without `wait`, only if it has exited by then: while the mount is
    /// still there, fusermount3 opens the mountpoint to see whether it is dead, and that open
    /// can hang on a live connection nobody serves.
    fn release_helper(&mut self, wait: bool) {
        if wait {
            if let Some(child) = self.helper.take() {
                match child_kill(child) {
                    Ok(()) => return drop(self.auto_unmount_socket.take()),
                    Err(child) => self.helper = Some(child),
                }
            }
        }
        drop(self.auto_unmount_socket.take());
        if let Some(mut child) = self.helper.take() {
            let status = if wait {
                child.wait()
            } else {
                thread::sleep(Duration::from_millis(50));
                match child.try_wait() {
                    Ok(Some(status)) => Ok(status),
                    Ok(None) => {
                        debug!("leaving the auto_unmount fusermount (pid {}) running", child.id());
                        return;
                    }
                    Err(e) => Err(e),
                }
            };
            let message = child_stderr(&mut child);
            match status {
                Ok(status) if !status.success() => {
                    warn!("the auto_unmount fusermount exited with {status}: {message}")
                }
                Ok(_) if !message.is_empty() => debug!("auto_unmount fusermount: {message}"),
                Ok(_) => {}
                Err(e) => warn!("cannot reap the auto_unmount fusermount: {e}"),
            }
        }
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = self.unmount() {
                warn!("unmounting {} failed: {e}; detaching it lazily", self.mountpoint.display());
                let lazy = match &self.fusermount {
                    Some(bin) => fusermount_unmount(bin, &self.mountpoint, true),
                    None => umount2(&self.mountpoint, true),
                };
                match lazy {
                    Ok(()) => self.mounted = false,
                    Err(e) => log::error!(
                        "cannot detach {} either: {e}; it stays mounted",
                        self.mountpoint.display()
                    ),
                }
            }
        }
        // Also when the unmount failed: with our device fd closed the connection dies (if the
        // proxy has not got the fd), and an auto_unmount fusermount3 then detaches the dead
        // mount by itself.
        let mounted = self.mounted;
        drop(self.device.take());
        self.release_helper(!mounted);
    }
}

/// Mounts a FUSE filesystem on `mountpoint` and returns it with the `/dev/fuse` fd; see the
/// module docs for how. The mountpoint must be an existing, empty directory.
///
/// The kernel queues requests (starting with FUSE_INIT) on the device right away; they are
/// answered once a server (the proxy and fuser) reads it. Until then any access to the
/// mountpoint blocks.
pub fn mount(mountpoint: &Path, opts: &MountOptions) -> io::Result<KernelMount> {
    let mountpoint = check_mountpoint(mountpoint)?;
    if let Err(e) = fs::metadata(DEV_FUSE) {
        return Err(if e.kind() == ErrorKind::NotFound {
            io::Error::new(
                ErrorKind::NotFound,
                "/dev/fuse is missing: load the fuse module or install fuse3",
            )
        } else {
            io::Error::new(e.kind(), format!("{DEV_FUSE}: {e}"))
        });
    }
    match find_fusermount() {
        Some(bin) => mount_with_fusermount(bin, mountpoint, opts),
        None if geteuid().is_root() => mount_direct(mountpoint, opts),
        None => Err(no_fusermount()),
    }
}

/// Unmounts the FUSE filesystem at `mountpoint` (for `schememount -u`): `fusermount3 -u`, with
/// `-z` (detach now, finish when no longer busy) if `lazy`. As root without fusermount,
/// `umount2` (with `MNT_DETACH` if `lazy`). Refuses mountpoints that are not FUSE mounts.
pub fn unmount_path(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let mnt = absolute_path(mountpoint)?;
    if let Ok(entries) = read_mountinfo() {
        match topmost(&entries, &mnt) {
            Some(entry) if entry.is_fuse() => {}
            Some(entry) => {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} is a {} mount, not a FUSE mount", mnt.display(), entry.fstype),
                ))
            }
            None => return Err(not_mounted(&mnt)),
        }
    }
    match find_fusermount() {
        Some(bin) => fusermount_unmount(&bin, &mnt, lazy),
        None if geteuid().is_root() => umount2(&mnt, lazy),
        None => Err(no_fusermount()),
    }
}

/// Aborts the FUSE connection of the mount at `mountpoint`, then detaches it lazily (for
/// `schememount --abort`).
///
/// Writes `1` to `/sys/fs/fuse/connections/<minor>/abort`: every request in flight ends with
/// `ECONNABORTED` (callers stuck in the kernel wake up), new ones fail with `ENOTCONN`, and
/// the server's read of `/dev/fuse` returns `ENODEV`. If the fuse control filesystem is not
/// mounted and we are root, it is mounted on /sys/fs/fuse/connections first (and left there,
/// as systemd does).
pub fn abort_connection(mountpoint: &Path) -> io::Result<()> {
    let mnt = absolute_path(mountpoint)?;
    let entries = read_mountinfo()?;
    let entry = match topmost(&entries, &mnt) {
        Some(entry) if entry.is_fuse() => entry,
        Some(entry) => {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("{} is a {} mount, not a FUSE mount", mnt.display(), entry.fstype),
            ))
        }
        None => return Err(not_mounted(&mnt)),
    };
    let conn = Path::new(FUSECTL_DIR).join(entry.dev.1.to_string());
    if !conn.is_dir() {
        ensure_fusectl(&entries)?;
        if !conn.is_dir() {
            return Err(io::Error::new(
                ErrorKind::NotFound,
                format!(
                    "no FUSE connection {} in {FUSECTL_DIR} for {}",
                    entry.dev.1,
                    mnt.display()
                ),
            ));
        }
    }
    let abort = conn.join("abort");
    fs::write(&abort, b"1").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot abort the FUSE connection ({}): {e}", abort.display()),
        )
    })?;
    info!("aborted the FUSE connection of {}", mnt.display());
    unmount_path(&mnt, true)
}

/// Whether `path` is a FUSE mountpoint (the topmost mount there has type `fuse`, `fuse.*`,
/// `fuseblk` or `fuseblk.*`), from /proc/self/mountinfo. Does not touch the mount itself.
pub fn is_fuse_mountpoint(path: &Path) -> bool {
    let Ok(path) = absolute_path(path) else { return false };
    let Ok(entries) = read_mountinfo() else { return false };
    topmost(&entries, &path).is_some_and(MountEntry::is_fuse)
}

/// A warning text if the kernel is set to abort FUSE connections whose requests go
/// unanswered too long (`fs.fuse.default_request_timeout` / `fs.fuse.max_request_timeout`,
/// Linux 6.15+), which a read blocking on a stream file would trigger.
pub fn check_request_timeout() -> Option<String> {
    let read = |name: &str| {
        fs::read_to_string(format!("/proc/sys/fs/fuse/{name}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let default = read("default_request_timeout");
    let max = read("max_request_timeout");
    if default == 0 && max == 0 {
        return None;
    }
    Some(format!(
        "the kernel aborts a whole FUSE connection as soon as any one request stays unanswered \
         too long (fs.fuse.default_request_timeout = {default} s, fs.fuse.max_request_timeout = \
         {max} s): a read that blocks waiting for data on a stream file longer than that will \
         abort the entire mount, and every access then fails with ENOTCONN until it is \
         remounted; set both to 0 (sysctl -w fs.fuse.default_request_timeout=0 \
         fs.fuse.max_request_timeout=0) to use blocking stream files"
    ))
}

// ---------------------------------------------------------------------------------------------
// Mounting

/// Checks that the mountpoint is an existing empty directory; returns its canonical path.
fn check_mountpoint(mp: &Path) -> io::Result<PathBuf> {
    let meta = match fs::metadata(mp) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(io::Error::new(
                ErrorKind::NotFound,
                format!("mountpoint {} does not exist", mp.display()),
            ))
        }
        Err(e) if e.raw_os_error() == Some(Errno::NOTCONN.raw_os_error()) => {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "mountpoint {}: {e} (a FUSE mount whose server died is still there; \
                     unmount it first)",
                    mp.display()
                ),
            ))
        }
        Err(e) => {
            return Err(io::Error::new(e.kind(), format!("mountpoint {}: {e}", mp.display())))
        }
    };
    if !meta.is_dir() {
        return Err(io::Error::new(
            ErrorKind::NotADirectory,
            format!("mountpoint {} is not a directory", mp.display()),
        ));
    }
    let mut entries = fs::read_dir(mp)
        .map_err(|e| io::Error::new(e.kind(), format!("mountpoint {}: {e}", mp.display())))?;
    if entries.next().is_some() {
        return Err(io::Error::new(
            ErrorKind::DirectoryNotEmpty,
            format!("mountpoint {} is not empty", mp.display()),
        ));
    }
    fs::canonicalize(mp)
}

/// `fusermount3`, else `fusermount`, from `PATH`.
fn find_fusermount() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    FUSERMOUNT_NAMES.iter().find_map(|name| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

fn no_fusermount() -> io::Error {
    io::Error::new(
        ErrorKind::NotFound,
        "fusermount3 (or fusermount) is not on PATH: install fuse3 (or run as root to mount \
         without it)",
    )
}

/// The `-o` string for fusermount3.
fn fusermount_options(opts: &MountOptions) -> String {
    let mut parts = Vec::new();
    if !opts.fsname.is_empty() {
        parts.push(format!("fsname={}", escape_option(&opts.fsname)));
    }
    if !opts.subtype.is_empty() {
        parts.push(format!("subtype={}", escape_option(&opts.subtype)));
    }
    parts.extend(common_options(opts));
    if opts.auto_unmount {
        parts.push("auto_unmount".to_owned());
    }
    parts.join(",")
}

/// Options that both fusermount3 and the kernel (direct `mount(2)`) take as text.
fn common_options(opts: &MountOptions) -> Vec<String> {
    let mut parts = Vec::new();
    if opts.read_only {
        parts.push("ro".to_owned());
    }
    if opts.allow_other {
        parts.push("allow_other".to_owned());
    }
    if opts.default_permissions {
        parts.push("default_permissions".to_owned());
    }
    if let Some(n) = opts.max_read {
        parts.push(format!("max_read={n}"));
    }
    parts
}

/// fusermount3 (3.x) splits `-o` at commas except after a backslash in `fsname=`/`subtype=`.
fn escape_option(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == ',' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn mount_with_fusermount(
    bin: PathBuf,
    mountpoint: PathBuf,
    opts: &MountOptions,
) -> io::Result<KernelMount> {
    let (ours, theirs) =
        socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    let options = fusermount_options(opts);
    let mut cmd = Command::new(&bin);
    if !options.is_empty() {
        cmd.arg("-o").arg(&options);
    }
    cmd.arg("--")
        .arg(&mountpoint)
        .env(COMMFD_ENV, theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Captured: its messages go into our errors, and an auto_unmount fusermount3 3.x
        // complains "<mnt> not mounted" on stderr after every clean unmount.
        .stderr(Stdio::piped());
    // fusermount3's end must survive exec (see the module docs for the window this opens).
    fcntl_setfd(&theirs, FdFlags::empty())?;
    let spawned = cmd.spawn();
    drop(theirs);
    let mut child = spawned
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", bin.display())))?;

    let device = match receive_device(&ours, &mut child) {
        Ok(device) => device,
        Err(e) => {
            drop(ours);
            let status = child.wait();
            let message = child_stderr(&mut child);
            return Err(fusermount_failed(&bin, &mountpoint, status, &message, e));
        }
    };
    debug!("{} mounted {} ({options})", bin.display(), mountpoint.display());
    let mut mount = KernelMount {
        dev: find_mount_dev(&mountpoint),
        mountpoint,
        device: Some(device),
        fusermount: Some(bin),
        auto_unmount_socket: None,
        helper: None,
        mounted: true,
    };
    if opts.auto_unmount {
        mount.auto_unmount_socket = Some(ours);
        mount.helper = Some(child);
    } else {
        drop(ours);
        let status = child.wait()?;
        let message = child_stderr(&mut child);
        if !status.success() {
            let bin = mount.fusermount.clone().unwrap_or_default();
            let e = io::Error::other(format!(
                "{} exited with {status} after mounting {}: {message}",
                bin.display(),
                mount.mountpoint.display()
            ));
            if let Err(e) = mount.unmount() {
                warn!("cannot unmount {} again: {e}", mount.mountpoint.display());
            }
            return Err(e);
        }
        if !message.is_empty() {
            warn!("{}: {message}", bin_name(mount.fusermount.as_deref().unwrap_or(Path::new(""))));
        }
    }
    Ok(mount)
}

/// What a finished child wrote to its captured stderr, trimmed.
/// Ends an `auto_unmount` fusermount3 whose mount is already gone, before its socket closes:
/// it would otherwise unmount whatever is mounted at the same path by then (a new mount made
/// right after `schememount -u`). Gives the child back if it cannot be killed (a setuid
/// fusermount3 run by an ordinary user), to be released the usual way.
fn child_kill(mut child: Child) -> Result<(), Child> {
    if child.kill().is_err() {
        return Err(child);
    }
    let _ = child.wait();
    Ok(())
}

fn child_stderr(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = io::Read::read_to_string(&mut stderr, &mut text);
    }
    text.trim().to_owned()
}

fn bin_name(bin: &Path) -> std::borrow::Cow<'_, str> {
    bin.file_name().unwrap_or(bin.as_os_str()).to_string_lossy()
}

fn fusermount_failed(
    bin: &Path,
    mountpoint: &Path,
    status: io::Result<ExitStatus>,
    message: &str,
    cause: io::Error,
) -> io::Error {
    let name = bin_name(bin);
    let mnt = mountpoint.display();
    match status {
        Ok(status) if !status.success() && !message.is_empty() => {
            io::Error::other(format!("{name} could not mount {mnt} ({status}): {message}"))
        }
        Ok(status) if !status.success() => {
            io::Error::other(format!("{name} could not mount {mnt} ({status})"))
        }
        _ => io::Error::new(
            cause.kind(),
            format!("{name} did not hand over /dev/fuse for {mnt}: {cause} {message}")
                .trim_end()
                .to_owned(),
        ),
    }
}

/// Waits for fusermount3 to send the device, watching for it to exit without doing so.
fn receive_device(sock: &OwnedFd, child: &mut Child) -> io::Result<OwnedFd> {
    let tick = Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
    loop {
        let mut fds = [PollFd::new(sock, PollFlags::IN)];
        match poll(&mut fds, Some(&tick)) {
            Ok(0) => {}
            Ok(_) => {
                return recv_fd(sock, RecvFlags::empty())?.ok_or_else(|| {
                    io::Error::new(ErrorKind::UnexpectedEof, "it closed the socket")
                })
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if let Some(status) = child.try_wait()? {
            // It may have sent the fd just before exiting.
            return match recv_fd(sock, RecvFlags::DONTWAIT) {
                Ok(Some(fd)) => Ok(fd),
                _ => Err(io::Error::other(format!("it exited with {status}"))),
            };
        }
    }
}

/// Receives one message carrying an fd (`SCM_RIGHTS`), close-on-exec. `None` on EOF.
fn recv_fd(sock: &OwnedFd, flags: RecvFlags) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        let mut iov = [IoSliceMut::new(&mut byte)];
        match recvmsg(sock, &mut iov, &mut control, flags | RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => break msg,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fd = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            if fd.is_none() {
                fd = fds.next();
            }
        }
    }
    match fd {
        Some(fd) => Ok(Some(fd)),
        None if msg.bytes == 0 => Ok(None),
        None => Err(io::Error::new(ErrorKind::InvalidData, "no file descriptor in its message")),
    }
}

/// Root without fusermount: `mount(2)` ourselves.
fn mount_direct(mountpoint: PathBuf, opts: &MountOptions) -> io::Result<KernelMount> {
    use rustix::fs::{open, Mode, OFlags};
    let device = open(DEV_FUSE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{DEV_FUSE}: {e}")))?;
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={}",
        device.as_raw_fd(),
        geteuid().as_raw(),
        getegid().as_raw()
    );
    for option in common_options(opts) {
        if option != "ro" {
            data.push(',');
            data.push_str(&option);
        }
    }
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
    if opts.read_only {
        flags |= MountFlags::RDONLY;
    }
    let fstype =
        if opts.subtype.is_empty() { "fuse".to_owned() } else { format!("fuse.{}", opts.subtype) };
    let source = if opts.fsname.is_empty() { DEV_FUSE } else { opts.fsname.as_str() };
    let data_c = CString::new(data.clone())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "NUL byte in the mount options"))?;
    rustix::mount::mount(source, &mountpoint, fstype.as_str(), flags, data_c.as_c_str()).map_err(
        |e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("mount({source}, {}, {fstype}, {data}): {e}", mountpoint.display()),
            )
        },
    )?;
    if opts.auto_unmount {
        warn!(
            "auto_unmount needs fusermount3, which is not installed: if this process dies, {} \
             stays mounted (and answers ENOTCONN) until unmounted by hand",
            mountpoint.display()
        );
    }
    debug!("mounted {} with mount(2) ({data})", mountpoint.display());
    Ok(KernelMount {
        dev: find_mount_dev(&mountpoint),
        mountpoint,
        device: Some(device),
        fusermount: None,
        auto_unmount_socket: None,
        helper: None,
        mounted: true,
    })
}

// ---------------------------------------------------------------------------------------------
// Unmounting

fn busy(mnt: &Path) -> io::Error {
    io::Error::new(
        ErrorKind::ResourceBusy,
        format!(
            "mountpoint {} is busy: a process has a file or its working directory there; use \
             --lazy to detach it now",
            mnt.display()
        ),
    )
}

fn not_mounted(mnt: &Path) -> io::Error {
    io::Error::new(ErrorKind::InvalidInput, format!("{} is not a mountpoint", mnt.display()))
}

/// `fusermount3 -u [-z] -- mnt`, its stderr captured into the error.
fn fusermount_unmount(bin: &Path, mnt: &Path, lazy: bool) -> io::Result<()> {
    let mut cmd = Command::new(bin);
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    cmd.arg("--").arg(mnt).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", bin.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if msg.contains("Device or resource busy") {
        return Err(busy(mnt));
    }
    if msg.contains("not found in") || msg.contains("Invalid argument") {
        return Err(not_mounted(mnt));
    }
    Err(io::Error::other(format!(
        "{} -u{} {} failed ({}): {msg}",
        bin.display(),
        if lazy { " -z" } else { "" },
        mnt.display(),
        out.status
    )))
}

fn umount2(mnt: &Path, lazy: bool) -> io::Result<()> {
    let mut flags = UnmountFlags::NOFOLLOW;
    if lazy {
        flags |= UnmountFlags::DETACH;
    }
    match rustix::mount::unmount(mnt, flags) {
        Ok(()) => Ok(()),
        Err(Errno::BUSY) => Err(busy(mnt)),
        Err(Errno::INVAL) => Err(not_mounted(mnt)),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot unmount {}: {e}", mnt.display()),
        )),
    }
}

/// Mounts the fuse control filesystem on /sys/fs/fuse/connections if it is not there, we are
/// root and the directory is empty.
fn ensure_fusectl(entries: &[MountEntry]) -> io::Result<()> {
    let dir = Path::new(FUSECTL_DIR);
    if entries.iter().any(|e| e.fstype == "fusectl" && e.mount_point == dir) {
        return Ok(());
    }
    let hint = "the FUSE control filesystem is not mounted (as root: mount -t fusectl fusectl \
                /sys/fs/fuse/connections)";
    if !geteuid().is_root() {
        return Err(io::Error::new(ErrorKind::NotFound, hint));
    }
    let empty = fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
    if !empty {
        return Err(io::Error::new(ErrorKind::NotFound, hint));
    }
    rustix::mount::mount("fusectl", dir, "fusectl", MountFlags::empty(), None::<&std::ffi::CStr>)
        .map_err(|e| {
        io::Error::new(io::Error::from(e).kind(), format!("{hint}; mounting it failed: {e}"))
    })?;
    info!("mounted the FUSE control filesystem on {FUSECTL_DIR}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Mount table

/// One line of /proc/self/mountinfo, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    /// Field 3, `major:minor` (for FUSE the minor names the connection in fusectl).
    dev: (u32, u32),
    /// Field 5, unescaped.
    mount_point: PathBuf,
    /// The field after the ` - ` separator.
    fstype: String,
}

impl MountEntry {
    fn is_fuse(&self) -> bool {
        let t = self.fstype.as_str();
        t == "fuse" || t == "fuseblk" || t.starts_with("fuse.") || t.starts_with("fuseblk.")
    }
}

fn read_mountinfo() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&fs::read(MOUNTINFO)?))
}

fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n').filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &[u8]) -> Option<MountEntry> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if fields.len() < 7 {
        return None;
    }
    let dev = std::str::from_utf8(fields[2]).ok()?;
    let (major, minor) = dev.split_once(':')?;
    let dev = (major.parse().ok()?, minor.parse().ok()?);
    let mount_point = PathBuf::from(OsString::from_vec(unescape_octal(fields[4])));
    let separator = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    let fstype = String::from_utf8_lossy(fields.get(separator + 1)?).into_owned();
    Some(MountEntry { dev, mount_point, fstype })
}

/// Undoes the kernel's `\ooo` escaping of space, tab, newline and backslash.
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// The topmost mount on `path` (mountinfo lists mounts in the order they were made).
fn topmost<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    entries.iter().rev().find(|e| e.mount_point == path)
}

fn find_mount_dev(mountpoint: &Path) -> Option<(u32, u32)> {
    let entries = read_mountinfo().ok()?;
    topmost(&entries, mountpoint).filter(|e| e.is_fuse()).map(|e| e.dev)
}

/// An absolute path with the parent directories resolved, the last component left alone:
/// resolving the mountpoint itself would ask the FUSE filesystem (which may hang).
fn absolute_path(path: &Path) -> io::Result<PathBuf> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let abs = std::path::absolute(path).map_err(context)?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) if name != OsStr::new("..") => {
            Ok(fs::canonicalize(parent).map_err(context)?.join(name))
        }
        _ => Ok(abs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_string() {
        let opts = MountOptions {
            fsname: r"a,b\c".into(),
            subtype: "echo".into(),
            read_only: true,
            allow_other: true,
            default_permissions: true,
            auto_unmount: true,
            max_read: Some(131072),
        };
        assert_eq!(
            fusermount_options(&opts),
            r"fsname=a\,b\\c,subtype=echo,ro,allow_other,default_permissions,max_read=131072,auto_unmount"
        );
        assert_eq!(fusermount_options(&MountOptions::default()), "");
    }

    #[test]
    fn mountinfo_lines() {
        let text = b"22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n\
            95 30 0:52 / /tmp/a\\040b\\134c rw,nosuid,nodev,relatime shared:55 master:3 - \
            fuse.echo a,b rw,user_id=0,group_id=0\n\
            96 30 0:53 / /sys/fs/fuse/connections rw - fusectl fusectl rw\n\
            garbage\n";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].dev, (0, 52));
        assert_eq!(entries[1].mount_point, Path::new(r"/tmp/a b\c"));
        assert_eq!(entries[1].fstype, "fuse.echo");
        assert!(entries[1].is_fuse());
        assert!(!entries[0].is_fuse());
        assert!(!entries[2].is_fuse(), "fusectl is not a FUSE mount");
        assert_eq!(topmost(&entries, Path::new("/proc")).map(|e| e.dev), Some((0, 21)));
    }

    #[test]
    fn octal_unescape_edges() {
        assert_eq!(unescape_octal(b"a\\04"), b"a\\04");
        assert_eq!(unescape_octal(b"\\011x\\"), b"\tx\\");
        assert_eq!(unescape_octal(b"\\777"), b"\\777");
    }
}
