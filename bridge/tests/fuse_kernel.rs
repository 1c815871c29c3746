//! Real FUSE mounts through `fuse::kernel` (our own mount, our own /dev/fuse fd) and
//! `fuse::proxy` (the interrupt-filtering relay in front of fuser).
//!
//! Needs a working /dev/fuse and fusermount3 (root for the direct `mount(2)` test). Without
//! /dev/fuse the tests print "FUSE TEST SKIPPED" and pass, unless SCHEME_BRIDGE_REQUIRE_FUSE=1.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry,
    ReplyOpen, Request, Session, SessionACL,
};
use rustix::process::{kill_process, Pid, Signal};
use scheme_bridge::fuse::kernel::{self, KernelMount, MountOptions};
use scheme_bridge::fuse::proxy::{self, Proxy, ProxyStats};

const REQUIRE_ENV: &str = "SCHEME_BRIDGE_REQUIRE_FUSE";
const DIRECT_CHILD_ENV: &str = "SCHEME_BRIDGE_TEST_DIRECT_MOUNT_CHILD";
const KILLED_CHILD_ENV: &str = "SCHEME_BRIDGE_TEST_KILLED_CHILD_MOUNTPOINT";

/// Whether FUSE tests can run; prints why not (or panics if they are required).
fn fuse_available() -> bool {
    let _ = env_logger::builder().is_test(true).try_init();
    match fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => true,
        Err(e) => {
            let reason = format!("cannot open /dev/fuse: {e}");
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("{reason} ({REQUIRE_ENV}=1)");
            }
            eprintln!("FUSE TEST SKIPPED: {reason}");
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test filesystem: /hello ("hi\n") and /slow, whose reads are parked until interrupted.

const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;
const HELLO: u64 = 2;
const SLOW: u64 = 3;
const HELLO_TEXT: &[u8] = b"hi\n";

fn attr(ino: u64) -> FileAttr {
    let (kind, size, perm, nlink) = match ino {
        ROOT => (FileType::Directory, 0, 0o755, 2),
        HELLO => (FileType::RegularFile, HELLO_TEXT.len() as u64, 0o644, 1),
        _ => (FileType::RegularFile, 4096, 0o644, 1),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: 1,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink,
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

/// Shared between the filesystem and the proxy's interrupt callback.
#[derive(Default)]
struct State {
    /// Unanswered reads of /slow by FUSE unique.
    parked: Mutex<HashMap<u64, ReplyData>>,
    /// Interrupts that arrived before their read was dispatched.
    early: Mutex<HashSet<u64>>,
    /// Every interrupt seen.
    interrupts: Mutex<Vec<u64>>,
}

impl State {
    /// The proxy's `on_interrupt`: finish the parked read with EINTR.
    fn interrupt(&self, unique: u64) {
        self.interrupts.lock().unwrap().push(unique);
        let mut parked = self.parked.lock().unwrap();
        match parked.remove(&unique) {
            Some(reply) => reply.error(Errno::EINTR),
            None => {
                self.early.lock().unwrap().insert(unique);
            }
        }
    }

    fn parked_uniques(&self) -> Vec<u64> {
        self.parked.lock().unwrap().keys().copied().collect()
    }

    fn saw_interrupt(&self, unique: u64) -> bool {
        self.interrupts.lock().unwrap().contains(&unique)
    }

    /// Drops the parked replies (fuser answers them EIO).
    fn drop_parked(&self) {
        let replies: Vec<ReplyData> = self.parked.lock().unwrap().drain().map(|(_, r)| r).collect();
        drop(replies);
    }
}

struct TestFs(Arc<State>);

impl Filesystem for TestFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ino = match (parent.0, name.to_str()) {
            (ROOT, Some("hello")) => HELLO,
            (ROOT, Some("slow")) => SLOW,
            _ => return reply.error(Errno::ENOENT),
        };
        reply.entry(&TTL, &attr(ino), Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            ROOT | HELLO | SLOW => reply.attr(&TTL, &attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // direct_io: each read(2) is a FUSE_READ from the reading task itself (no page cache,
        // no readahead), which is what FUSE_INTERRUPT applies to.
        let flags = if ino.0 == SLOW { FopenFlags::FOPEN_DIRECT_IO } else { FopenFlags::empty() };
        reply.opened(FileHandle(ino.0), flags);
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        _size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match ino.0 {
            HELLO => {
                let start = (offset as usize).min(HELLO_TEXT.len());
                reply.data(&HELLO_TEXT[start..]);
            }
            SLOW => {
                let unique = req.unique().0;
                let mut parked = self.0.parked.lock().unwrap();
                if self.0.early.lock().unwrap().remove(&unique) {
                    reply.error(Errno::EINTR);
                } else {
                    parked.insert(unique, reply);
                }
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (HELLO, FileType::RegularFile, "hello"),
            (SLOW, FileType::RegularFile, "slow"),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

// ---------------------------------------------------------------------------------------------
// Harness

/// Cleans up whatever a test leaves, even when it fails: kills and reaps its children (aborting
/// the connection if one is stuck in a FUSE request), then lazily unmounts.
struct Guard {
    mountpoint: PathBuf,
    children: Vec<Child>,
}

impl Guard {
    fn new(mountpoint: &Path) -> Guard {
        Guard { mountpoint: mountpoint.to_path_buf(), children: Vec::new() }
    }

    /// Starts `cat <path>` in the background; returns its index in `children`.
    fn spawn_cat(&mut self, path: &Path) -> usize {
        let child = Command::new("cat")
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cat");
        self.children.push(child);
        self.children.len() - 1
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            if wait_exit(child, Duration::from_secs(2)).is_none() {
                // Stuck in a FUSE request the kernel waits out: abort the connection.
                let _ = kernel::abort_connection(&self.mountpoint);
                if wait_exit(child, Duration::from_secs(5)).is_none() {
                    eprintln!("child {} is stuck; leaving it", child.id());
                }
            }
        }
        if kernel::is_fuse_mountpoint(&self.mountpoint) {
            let unmounted = Command::new("fusermount3")
                .args(["-u", "-z", "--"])
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                let _ =
                    rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::DETACH);
            }
        }
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The whole stack on one mountpoint. Fields drop in order: unmount, then stop the proxy
/// (closing /dev/fuse), then let go of fuser's thread.
struct Mounted {
    kernel: KernelMount,
    proxy: Proxy,
    session: Option<BackgroundSession>,
    state: Arc<State>,
}

fn start(mountpoint: &Path, options: &MountOptions) -> Mounted {
    let mut kernel = kernel::mount(mountpoint, options).expect("kernel::mount");
    let state = Arc::new(State::default());
    let target = Arc::clone(&state);
    let device = kernel.take_device().expect("device");
    let mut proxy =
        proxy::spawn(device, proxy::DEFAULT_MAX_MESSAGE, Arc::new(move |u| target.interrupt(u)))
            .expect("proxy::spawn");
    let fuser_end = proxy.take_fuser_end().expect("fuser end");
    let session = Session::from_fd(
        TestFs(Arc::clone(&state)),
        fuser_end,
        SessionACL::Owner,
        Config::default(),
    )
    .expect("Session::from_fd")
    .spawn()
    .expect("Session::spawn");
    Mounted { kernel, proxy, session: Some(session), state }
}

fn test_options() -> MountOptions {
    MountOptions {
        fsname: "scheme-bridge-test".into(),
        subtype: "sbtest".into(),
        ..MountOptions::default()
    }
}

/// Unmounts (if still mounted) and checks that fuser's session and every proxy thread end.
fn stop(mut m: Mounted) -> ProxyStats {
    m.kernel.unmount().expect("KernelMount::unmount");
    m.kernel.unmount().expect("unmount is idempotent");
    let session = m.session.take().expect("session");
    assert!(
        wait_until(Duration::from_secs(5), || session.guard.is_finished()),
        "fuser's session did not end after the unmount"
    );
    session.join().expect("fuser's session ended with an error");
    m.state.drop_parked();
    let stats = m.proxy.stats();
    let Mounted { proxy, .. } = m;
    let (done, joined) = mpsc::channel();
    thread::spawn(move || {
        let mut proxy = proxy;
        proxy.join();
        let _ = done.send(proxy);
    });
    let proxy = joined.recv_timeout(Duration::from_secs(5)).expect("Proxy::join did not return");
    assert!(proxy.is_finished(), "proxy threads still running after join");
    stats
}

fn read_hello(mountpoint: &Path) -> String {
    fs::read_to_string(mountpoint.join("hello")).expect("read hello")
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn mount_read_unmount() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path();
    let _guard = Guard::new(mnt);
    let options = MountOptions { auto_unmount: true, max_read: Some(1 << 17), ..test_options() };
    let m = start(mnt, &options);
    assert!(kernel::is_fuse_mountpoint(mnt));
    assert_eq!(m.kernel.mountpoint(), fs::canonicalize(mnt).unwrap());
    eprintln!(
        "proxy max_message ({} requested): {}",
        proxy::DEFAULT_MAX_MESSAGE,
        m.proxy.max_message()
    );

    assert_eq!(read_hello(mnt), "hi\n");
    let mut names: Vec<String> =
        fs::read_dir(mnt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["hello", "slow"]);

    let stats = stop(m);
    assert!(!kernel::is_fuse_mountpoint(mnt));
    assert!(stats.requests >= 4 && stats.replies >= 4, "{stats:?}");
    assert_eq!((stats.interrupts, stats.rejected), (0, 0), "{stats:?}");
}

#[test]
fn interrupt_ends_a_blocked_read() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path();
    let mut guard = Guard::new(mnt);
    let m = start(mnt, &test_options());

    // Twice: the first interrupt must not have switched interrupts off for the mount.
    for round in 1..=2u64 {
        let cat = guard.spawn_cat(&mnt.join("slow"));
        assert!(
            wait_until(Duration::from_secs(5), || m.state.parked_uniques().len() == 1),
            "round {round}: the read of /slow never reached the filesystem"
        );
        thread::sleep(Duration::from_millis(200));
        let unique = m.state.parked_uniques()[0];
        kill_process(Pid::from_child(&guard.children[cat]), Signal::INT).unwrap();
        let status = wait_exit(&mut guard.children[cat], Duration::from_secs(1));
        assert!(status.is_some(), "round {round}: cat did not exit within 1 s of SIGINT");
        assert!(m.state.saw_interrupt(unique), "round {round}: no FUSE_INTERRUPT for {unique}");
        assert!(m.state.parked_uniques().is_empty());
        // The dying cat's FLUSH can be interrupted too: at least one per round.
        assert!(m.proxy.stats().interrupts >= round, "{:?}", m.proxy.stats());
        assert_eq!(read_hello(mnt), "hi\n");
    }
    stop(m);
}

#[test]
fn unmount_path_and_abort_connection() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path();
    let mut guard = Guard::new(mnt);

    // unmount_path, as `schememount -u` does; KernelMount then finds its mount gone.
    let mut m = start(mnt, &test_options());
    assert_eq!(read_hello(mnt), "hi\n");
    assert!(kernel::is_fuse_mountpoint(mnt));
    let open = fs::File::open(mnt.join("hello")).unwrap();
    let busy = format!(
        "mountpoint {} is busy: a process has a file or its working directory there; use \
         --lazy to detach it now",
        mnt.display()
    );
    let err = kernel::unmount_path(mnt, false).expect_err("unmount_path while a file is open");
    assert_eq!((err.kind(), err.to_string()), (ErrorKind::ResourceBusy, busy.clone()));
    let err = m.kernel.unmount().expect_err("KernelMount::unmount while a file is open");
    assert_eq!((err.kind(), err.to_string()), (ErrorKind::ResourceBusy, busy));
    drop(open);
    kernel::unmount_path(mnt, false).expect("unmount_path");
    assert!(!kernel::is_fuse_mountpoint(mnt));
    stop(m);
    let err = kernel::unmount_path(mnt, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // abort_connection frees a reader stuck in a request the server never answers.
    let m = start(mnt, &test_options());
    let cat = guard.spawn_cat(&mnt.join("slow"));
    assert!(
        wait_until(Duration::from_secs(5), || m.state.parked_uniques().len() == 1),
        "the read of /slow never reached the filesystem"
    );
    kernel::abort_connection(mnt).expect("abort_connection");
    let status = wait_exit(&mut guard.children[cat], Duration::from_secs(1))
        .expect("the blocked reader did not return within 1 s of the abort");
    assert!(!status.success(), "cat should have failed: {status}");
    assert!(!kernel::is_fuse_mountpoint(mnt), "abort_connection should detach the mount");
    stop(m);
}

#[test]
fn unusable_mountpoints_give_clear_errors() {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let full = dir.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), "x").unwrap();
    let _guards = [Guard::new(&missing), Guard::new(&file), Guard::new(&full)];

    let cases = [
        (&missing, ErrorKind::NotFound, "does not exist"),
        (&file, ErrorKind::NotADirectory, "is not a directory"),
        (&full, ErrorKind::DirectoryNotEmpty, "is not empty"),
    ];
    for (path, kind, what) in cases {
        let err = kernel::mount(path, &test_options()).expect_err("mount should fail");
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(err.to_string(), format!("mountpoint {} {what}", path.display()));
    }
}

/// Root without fusermount: `mount(2)` directly. Runs itself again in a child process whose
/// PATH has no fusermount (PATH is process-wide, other tests need it).
#[test]
fn direct_mount_without_fusermount() {
    if std::env::var_os(DIRECT_CHILD_ENV).is_some() {
        return direct_mount_child();
    }
    if !fuse_available() {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("FUSE TEST SKIPPED: mounting without fusermount needs root");
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "direct_mount_without_fusermount", "--nocapture", "--test-threads=1"])
        .env(DIRECT_CHILD_ENV, "1")
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}");
}

fn direct_mount_child() {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path();
    let _guard = Guard::new(mnt);
    // auto_unmount is not possible without fusermount3: only a warning.
    let options = MountOptions {
        fsname: "direct,source".into(),
        auto_unmount: true,
        default_permissions: true,
        ..test_options()
    };
    let m = start(mnt, &options);
    let canonical = fs::canonicalize(mnt).unwrap();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == canonical.to_str())
        .expect("the mount is in mountinfo");
    assert!(line.contains(" - fuse.sbtest direct,source "), "{line}");
    assert!(line.contains("default_permissions"), "{line}");
    assert_eq!(read_hello(mnt), "hi\n");
    stop(m);
    assert!(!kernel::is_fuse_mountpoint(mnt));
}

/// With `auto_unmount`, fusermount3 removes the mount when the process that mounted it dies
/// without unmounting (here: SIGKILL).
#[test]
fn auto_unmount_after_the_server_is_killed() {
    if let Some(mountpoint) = std::env::var_os(KILLED_CHILD_ENV) {
        return killed_child(Path::new(&mountpoint));
    }
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path();
    let mut guard = Guard::new(mnt);
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "auto_unmount_after_the_server_is_killed", "--nocapture"])
        .args(["--test-threads=1"])
        .env(KILLED_CHILD_ENV, mnt)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    guard.children.push(child);
    let stdout = guard.children[0].stdout.take().unwrap();
    // The harness may print "test <name> ... " on the same line first.
    let mounted =
        BufReader::new(stdout).lines().any(|line| line.is_ok_and(|l| l.ends_with("MOUNTED")));
    assert!(mounted, "the child did not mount");
    assert!(kernel::is_fuse_mountpoint(mnt));
    guard.children[0].kill().unwrap();
    guard.children[0].wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !kernel::is_fuse_mountpoint(mnt)),
        "fusermount3 did not remove the dead mount"
    );
}

fn killed_child(mnt: &Path) {
    let options = MountOptions { auto_unmount: true, ..test_options() };
    let m = start(mnt, &options);
    assert_eq!(read_hello(mnt), "hi\n");
    println!("MOUNTED");
    // Wait to be killed; do not unmount.
    thread::sleep(Duration::from_secs(60));
    drop(m);
    panic!("not killed");
}
