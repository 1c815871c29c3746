//! The other ways to run schememount: --namespace, -d tracing, --daemon COMMAND, and
//! -u with --lazy and --abort on a busy mount.

#[path = "util/load.rs"]
mod load;
mod util;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use util::{fuse_usable, is_mounted, sh, Mount, SCHEMEMOUNT};

#[test]
fn a_namespace_lists_its_schemes_like_redox_scheme() {
    let Some(mount) = Mount::start(&["--namespace", "chan", "time", "rand"]) else { return };
    let mut names: Vec<String> = std::fs::read_dir(mount.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["chan", "rand", "time"]);
    let (_, out) = sh(&format!("head -c 16 {}/rand/urandom | wc -c", mount.root().display()));
    assert_eq!(out.trim(), "16");
    let (_, out) = sh(&format!("head -c 16 {}/time/4 | wc -c", mount.root().display()));
    assert_eq!(out.trim(), "16");
    assert!(std::fs::metadata(mount.path("chan")).unwrap().is_dir());
    assert!(std::fs::metadata(mount.path("nosuch")).is_err());
}

#[test]
fn debug_traces_every_call_and_prints_a_summary_at_exit() {
    if !fuse_usable() {
        return;
    }
    let mut traced = Traced::start(&["zero"], &[]);
    let dir = traced.dir.path().to_path_buf();
    let (_, out) = sh(&format!("head -c 5000 {}/x | wc -c", dir.display()));
    assert_eq!(out.trim(), "5000");
    let (status, _) =
        sh(&format!("dd if=/dev/zero of={}/x bs=1M count=2 2>/dev/null", dir.display()));
    assert!(status.success());
    let (status, stderr) = traced.finish();
    assert!(status.success());
    assert!(stderr.contains("open \"x\""), "{stderr}");
    assert!(stderr.contains("read fd=0 len="), "{stderr}");
    assert!(
        stderr.contains("write fd=0 len=1048576")
            || stderr.contains("write_region fd=0 len=1048576"),
        "1 MiB writes arrive whole: {stderr}"
    );
    let summary = stderr.lines().skip_while(|l| !l.starts_with("call ")).collect::<Vec<_>>();
    assert!(summary.iter().any(|l| l.starts_with("read ")), "{stderr}");
    assert!(summary[0].contains("median"), "{stderr}");
    assert!(!is_mounted(&dir));
}

#[test]
fn daemon_runs_any_program_that_speaks_the_wire() {
    let command = format!("{SCHEMEMOUNT} --serve zero");
    let Some(mount) = Mount::start(&["--daemon", &command]) else { return };
    let (_, out) = sh(&format!("head -c 1000 {}/x | tr -d '\\0' | wc -c", mount.root().display()));
    assert_eq!(out.trim(), "0");
}

#[test]
fn unmount_refuses_a_busy_mount_and_abort_frees_blocked_readers() {
    let Some(mut mount) = Mount::start(&["chan"]) else { return };
    let _listener = std::fs::File::create(mount.path("busy")).unwrap();
    let path = mount.path("busy");
    let reader =
        std::thread::spawn(move || std::fs::File::open(path).and_then(|mut f| f.read(&mut [0; 4])));
    std::thread::sleep(Duration::from_millis(300));
    let root = mount.root().to_str().unwrap().to_owned();
    let out = Command::new(SCHEMEMOUNT).args(["-u", &root]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("busy"), "{:?}", out);
    let started = Instant::now();
    let out = Command::new(SCHEMEMOUNT).args(["-u", "--abort", &root]).output().unwrap();
    assert!(out.status.success(), "{:?}", out);
    assert!(reader.join().unwrap().is_err(), "the blocked read fails");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!mount.is_mounted());
    let status = mount.wait_exit(Duration::from_secs(5)).expect("schememount notices and exits");
    assert!(status.code().is_some());
}

#[test]
fn lazy_unmount_detaches_at_once() {
    let Some(mut mount) = Mount::start(&["zero"]) else { return };
    let file = std::fs::File::open(mount.path("held")).unwrap();
    let root = mount.root().to_str().unwrap().to_owned();
    let out = Command::new(SCHEMEMOUNT).args(["-u", "--lazy", &root]).output().unwrap();
    assert!(out.status.success(), "{:?}", out);
    assert!(!mount.is_mounted());
    drop(file);
    assert!(wait_for_exit(&mut mount));
}

fn wait_for_exit(mount: &mut Mount) -> bool {
    mount.wait_exit(Duration::from_secs(5)).is_some()
}

/// `-o busy_poll=US` reaches the daemon (through its environment), and I/O is the same with
/// busy polling off and with a long window, pinned to one CPU (where it turns itself off) or not.
#[test]
fn busy_poll_reaches_the_daemon_and_every_setting_serves_the_same_bytes() {
    for window in ["0", "2000"] {
        let option = format!("busy_poll={window}");
        let Some(mount) = Mount::start(&["-o", &option, "ramfs"]) else { return };
        let daemon = load::daemon_of(mount.pid());
        let environ = std::fs::read(format!("/proc/{daemon}/environ")).unwrap();
        let expected = format!("SCHEME_BRIDGE_BUSY_POLL_US={window}");
        assert!(
            environ.split(|&b| b == 0).any(|var| var == expected.as_bytes()),
            "the daemon's environment lacks {expected}"
        );
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(mount.path("f"), &data).unwrap();
        assert_eq!(std::fs::read(mount.path("f")).unwrap(), data, "{option}");
        let (status, out) = sh(&format!(
            "taskset -c 0 cat {} | cmp - {}/f && echo same",
            mount.path("f").display(),
            mount.root().display()
        ));
        assert!(status.success() && out.contains("same"), "{option}: {out}");
    }
}

/// Names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// With busy polling off, the FUSE thread reads a never-blocking daemon's answers itself: one
/// program's copy, compare, rename and listing start no reply reader thread, and the daemon's
/// death while the mount is idle (nobody reading the wire) still ends the mount.
#[test]
fn without_busy_polling_the_fuse_thread_reads_the_answers_and_sees_the_daemon_die() {
    let Some(mut mount) = Mount::start(&["-o", "busy_poll=0", "ramfs"]) else { return };
    let root = mount.root().display().to_string();
    let (status, out) = sh(&format!(
        "head -c 300001 /dev/urandom > /tmp/sb-src-$$ && cp /tmp/sb-src-$$ {root}/f && \
         cmp /tmp/sb-src-$$ {root}/f && mv {root}/f {root}/g && ls -l {root}/g >/dev/null && \
         echo ok; rm -f /tmp/sb-src-$$"
    ));
    assert!(status.success() && out.contains("ok"), "{out}");
    let names = thread_names(mount.pid());
    assert!(!names.iter().any(|n| n.contains("wire-repl")), "a reply reader thread: {names:?}");
    std::thread::sleep(Duration::from_millis(300)); // idle
    let daemon = load::daemon_of(mount.pid());
    util::kill(daemon, Signal::KILL);
    assert!(load::poll_until(Duration::from_secs(5), || !mount.is_mounted()), "mount left");
    let status = mount.wait_exit(Duration::from_secs(5)).expect("schememount exits");
    assert!(!status.success(), "exit status after the daemon died: {status:?}");
}

/// With busy polling off, while programs keep requests queued up (16 at once here) a reader
/// thread takes the answers, so that the FUSE thread goes on reading requests; once they are
/// done it hands the wire back. Every program gets its bytes throughout.
#[test]
fn without_busy_polling_a_queue_of_requests_moves_the_answers_to_a_reader_thread_for_a_while() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(mount) = Mount::start(&["-o", "busy_poll=0", "ramfs"]) else { return };
    let root = mount.root().display().to_string();
    let (pid, done, seen) =
        (mount.pid(), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let watcher = {
        let (done, seen) = (Arc::clone(&done), Arc::clone(&seen));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if thread_names(pid).iter().any(|n| n.contains("wire-repl")) {
                    seen.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let (status, out) = sh(&format!(
        "for i in $(seq 16); do \
           (head -c $((i * 30011)) /dev/urandom > /tmp/sb-q-$$-$i && \
            for round in 1 2 3 4 5 6 7 8; do \
              cp /tmp/sb-q-$$-$i {root}/f$i && cmp /tmp/sb-q-$$-$i {root}/f$i || exit 1; \
            done; echo ok; rm -f /tmp/sb-q-$$-$i) & \
         done; wait"
    ));
    done.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(status.success() && out.matches("ok").count() == 16, "{out}");
    assert!(seen.load(Ordering::SeqCst), "no reply reader thread while 16 programs worked");
    let gone = load::poll_until(Duration::from_secs(5), || {
        !thread_names(pid).iter().any(|n| n.contains("wire-repl"))
    });
    assert!(gone, "the reply reader thread stayed: {:?}", thread_names(pid));
    std::fs::write(mount.path("after"), b"quiet again").unwrap();
    assert_eq!(std::fs::read(mount.path("after")).unwrap(), b"quiet again");
    assert!(!thread_names(pid).iter().any(|n| n.contains("wire-repl")), "a reader came back");
}

/// With busy polling off, a released handle's close may wait to go out with the next call
/// (`Shared::close_released`); none is lost, also when nothing follows: after a burst of
/// creates, opens and listings and a quiet spell (the client's watchdog sends a close left
/// queued within 200 ms), every handle the daemon gave out is closed.
#[test]
fn without_busy_polling_every_released_handle_is_closed_even_when_nothing_follows() {
    if !fuse_usable() {
        return;
    }
    let mut traced = Traced::start(&["-o", "busy_poll=0", "ramfs"], &[]);
    let script = format!(
        "set -e; cd {d}; for i in $(seq 40); do echo $i > f$i; cat f$i f$i >/dev/null; done; \
         mkdir sub; ls -l . sub >/dev/null; sleep 1",
        d = traced.dir.path().display()
    );
    let (status, out) = sh(&script);
    let (_, trace) = traced.finish();
    assert!(status.success(), "{out}");
    let handles = |call: &str| -> Vec<u64> {
        let mut fds: Vec<u64> = trace
            .lines()
            .filter_map(|line| {
                let rest = line.split_once("] ")?.1;
                let (name, rest) = rest.split_once(' ')?;
                let fd = match call {
                    "close" if name == "close" => rest.strip_prefix("fd=")?.split(' ').next()?,
                    "open" if name == "open" || name == "open_stat" => {
                        rest.split_once(" -> ")?.1.split(' ').next()?
                    }
                    _ => return None,
                };
                fd.parse().ok()
            })
            .collect();
        fds.sort_unstable();
        fds
    };
    let (opened, closed) = (handles("open"), handles("close"));
    assert!(opened.len() >= 120, "{} handles opened: {trace}", opened.len());
    assert_eq!(opened, closed, "handles opened and closed differ: {trace}");
}

/// The same I/O with busy polling on (more than one CPU) is answered through a reader thread.
#[test]
fn with_busy_polling_a_reader_thread_takes_the_answers() {
    if std::thread::available_parallelism().map_or(true, |n| n.get() < 2) {
        return; // one CPU: busy polling is off, and the FUSE thread reads (test above)
    }
    let Some(mount) = Mount::start(&["ramfs"]) else { return };
    std::fs::write(mount.path("f"), b"hello").unwrap();
    assert_eq!(std::fs::read(mount.path("f")).unwrap(), b"hello");
    let names = thread_names(mount.pid());
    assert!(names.iter().any(|n| n.contains("wire-repl")), "no reply reader thread: {names:?}");
}

/// Large reads and writes go through the payload region shared with the daemon, and with
/// `SCHEME_BRIDGE_REGION=0` through the pipe; the bytes are the same either way.
#[test]
fn large_io_goes_through_the_payload_region_unless_it_is_turned_off() {
    if !fuse_usable() {
        return;
    }
    for region in ["1", "0"] {
        let mut traced = Traced::start(&["ramfs"], &[("SCHEME_BRIDGE_REGION", region)]);
        let dir = traced.dir.path().to_path_buf();
        let script = format!(
            "set -e; head -c 3000000 /dev/urandom > {d}.src; cp {d}.src {d}/f; \
             dd if={d}/f of={d}.direct bs=1M iflag=direct status=none; \
             dd if={d}.src of={d}/g bs=1M oflag=direct status=none; \
             cmp {d}.src {d}/f && cmp {d}.src {d}.direct && cmp {d}.src {d}/g && echo same; \
             rm -f {d}.src {d}.direct",
            d = dir.display()
        );
        let (status, out) = sh(&script);
        let (_, trace) = traced.finish();
        assert!(status.success() && out.contains("same"), "region={region}: {out}");
        let through_region =
            trace.contains("write_region fd=") && trace.contains("read_region fd=");
        assert_eq!(through_region, region == "1", "region={region}: {trace}");
        if region == "0" {
            assert!(trace.contains("write fd=") && !trace.contains("_region"), "{trace}");
        }
    }
}

/// With attributes cached (ramfs's default) a file's data stays in the page cache across opens:
/// reading it again makes no daemon read, and writes through the mount, in place or
/// truncating, are seen at once. With `-o attr_timeout=0` every open reads from the daemon.
#[test]
fn file_data_is_cached_across_opens_while_attributes_are() {
    if !fuse_usable() {
        return;
    }
    for (args, daemon_reads) in [(&["ramfs"][..], 3), (&["-o", "attr_timeout=0", "ramfs"][..], 5)] {
        let mut traced = Traced::start(args, &[]);
        let script = format!(
            "set -e; cd {d}; printf hello > f; cat f; cat f; cat f; \
             printf J | dd of=f conv=notrunc status=none; cat f; printf HELLO > f; cat f",
            d = traced.dir.path().display()
        );
        let (status, out) = sh(&script);
        let (_, trace) = traced.finish();
        assert!(status.success(), "{args:?}: {out}");
        assert_eq!(out, "hellohellohelloJelloHELLO", "{args:?}");
        // Cached: the first cat, then one read after each write (it changes the mtime the
        // daemon reports, and the kernel drops the file's pages when it sees that). Uncached:
        // one per cat.
        // (A read of 1 KiB or more goes through the payload region: `read_region`.)
        let reads = trace.matches(" read fd=").count() + trace.matches(" read_region fd=").count();
        assert_eq!(reads, daemon_reads, "{args:?}: {trace}");
    }
}

/// `schememount -d ARGS` (options and a scheme) in the foreground on a fresh directory,
/// stopped (and its mount gone) when dropped, also when a test fails half-way.
struct Traced {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Traced {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Traced {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(SCHEMEMOUNT)
            .arg("-d")
            .args(args)
            .arg(dir.path())
            .env("SCHEMEMOUNT_STATUS_PIPE", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = [0u8; 6];
        child.stdout.take().unwrap().read_exact(&mut ready).unwrap();
        Traced { dir, child: Some(child) }
    }

    /// Ends schememount with SIGTERM: its exit status and everything it wrote to stderr.
    fn finish(&mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().expect("running");
        util::kill(child.id(), Signal::TERM);
        let out = child.wait_with_output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            util::kill(child.id(), Signal::TERM);
            let _ = child.wait();
        }
    }
}

/// A mount made by root raises the kernel's readahead for it to one request's size, or to
/// `-o read_ahead_kb`, so that a sequential reader's cache misses become full-size FUSE reads
/// (not 128 KiB ones); others keep the kernel's 128 KiB. It happens at the first open.
#[test]
fn readahead_is_one_request_or_as_asked() {
    use std::os::unix::fs::MetadataExt;
    let root = rustix::process::geteuid().is_root();
    let request_kib = scheme_bridge::fuse::kernel_max_write() / 1024;
    let cases: [(&[&str], u32); 2] =
        [(&["ramfs"], request_kib), (&["-o", "read_ahead_kb=256", "ramfs"], 256)];
    for (args, wanted) in cases {
        let Some(mount) = Mount::start(args) else { return };
        std::fs::write(mount.path("f"), b"first open").unwrap();
        let device = std::fs::metadata(mount.root()).unwrap().dev();
        let (major, minor) = (rustix::fs::major(device), rustix::fs::minor(device));
        let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
        let wanted = if root { wanted } else { 128 };
        let read = || std::fs::read_to_string(&knob).unwrap().trim().parse::<u32>().unwrap();
        let set = load::poll_until(Duration::from_secs(5), || read() == wanted);
        assert!(set, "{args:?}: {knob} is {}, wanted {wanted}", read());
    }
}
