//! SIGKILL under load: 32 client processes (python3) busy on the mount, reading and writing
//! ramfs files or chan streams (half of the chan clients blocked in a read of a stream nobody
//! writes), and then the daemon, or schememount itself, is killed with SIGKILL.
//!
//! Every client's pending or next call must fail within 1 s (each reports the errno, then waits
//! on its stdin so that the test can look at it: no thread of it may be in D state), the mount
//! must be gone from the mount table, and: with the daemon killed, schememount exits non-zero;
//! with schememount killed, the daemon exits (end of file on its pipe) and fusermount3's
//! auto_unmount removes the mount. chan.rs has the single-client versions of these.

#[path = "util/load.rs"]
mod load;
mod util;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use util::Mount;

const CLIENTS: usize = 32;

/// A client: `ramfs` (pwrite+pread+verify of 64 KiB in a loop), `chan-busy` (a message
/// through its own stream pair and back, in a loop) or `chan-blocked` (one round trip, then a
/// read nobody answers). It prints "ready" after its first verified round, then on the first
/// error "err ERRNO" and waits for its stdin to close.
const CLIENT: &str = r#"
import fcntl, os, sys
mode, mnt, me = sys.argv[1], sys.argv[2], int(sys.argv[3])
def say(*words):
    print(*words, flush=True)
def read_exactly(fd, n, offset=None):
    got = b""  # a read cut short by the kill returns what it has; the next one must fail
    while len(got) < n:
        if offset is None:
            chunk = os.read(fd, n - len(got))
        else:
            chunk = os.pread(fd, n - len(got), offset + len(got))
        if not chunk:
            say("eof"); sys.exit(5)
        got += chunk
    return got
try:
    if mode == "ramfs":
        fd = os.open(f"{mnt}/c{me}", os.O_RDWR | os.O_CREAT, 0o644)
    else:
        listener = os.open(f"{mnt}/k{me}", os.O_WRONLY | os.O_CREAT)
        client = os.open(f"{mnt}/k{me}", os.O_RDWR)
        buf = bytearray(b"listen".ljust(256, b"\0"))
        fcntl.ioctl(listener, 0xC1005301, buf)
        server = os.open(f"{mnt}/.dup/" + buf.split(b"\0")[0].decode(), os.O_RDWR)
    i = 0
    while True:
        data = (b"%d.%d;" % (me, i)) * 6000
        if mode == "ramfs":
            offset = (i * 4099) % 200000
            os.pwrite(fd, data, offset)
            got = read_exactly(fd, len(data), offset)
        else:
            os.write(server, data)
            got = read_exactly(client, len(data))
        if got != data:
            say("bad"); sys.exit(4)
        if i == 0:
            say("ready")
        if mode == "chan-blocked":
            os.read(client, 16)  # nobody writes: blocks until the mount fails
            say("returned"); sys.exit(6)
        i += 1
except OSError as e:
    say("err", e.errno)
    sys.stdin.read()
    sys.exit(3)
"#;

/// The client processes; killed and reaped on drop, also when the test fails.
struct Clients {
    children: Vec<Child>,
    lines: Receiver<(usize, String, Instant)>,
}

impl Clients {
    /// Starts one client per mode in `modes` and waits until each has said "ready".
    fn start(mount: &Mount, modes: &[&str]) -> Clients {
        let (tx, lines) = channel();
        let mut children = Vec::new();
        for (me, mode) in modes.iter().enumerate() {
            let mut child = Command::new("python3")
                .args(["-c", CLIENT, mode, mount.root().to_str().unwrap(), &me.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 runs");
            let (tx, stdout) = (tx.clone(), child.stdout.take().unwrap());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.send((me, line, Instant::now()));
                }
            });
            children.push(child);
        }
        let clients = Clients { children, lines };
        for _ in modes {
            let (me, line, _) = clients.next_line(Duration::from_secs(20));
            assert_eq!(line, "ready", "client {me} ({}) did not start", modes[me]);
        }
        clients
    }

    fn next_line(&self, within: Duration) -> (usize, String, Instant) {
        self.lines.recv_timeout(within).expect("a client line in time")
    }

    /// Waits until every `chan-blocked` client sits in a read that reached the mount.
    fn wait_blocked(&self, modes: &[&str]) {
        for (child, _) in self.children.iter().zip(modes).filter(|(_, m)| **m == "chan-blocked") {
            let blocked = load::poll_until(Duration::from_secs(10), || {
                let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", child.id()));
                wchan.is_ok_and(|w| w.contains("fuse") || w.contains("request_wait_answer"))
            });
            assert!(blocked, "client {} never blocked in a FUSE read", child.id());
        }
    }

    /// After the kill at `killed`: each client must report an error within 1 s, and then none
    /// of its threads may be in D state.
    fn expect_all_failed_within_a_second(&self, killed: Instant) {
        let mut reported = vec![None; self.children.len()];
        while reported.iter().any(Option::is_none) {
            let left = Duration::from_secs(1).saturating_sub(killed.elapsed());
            let Ok((me, line, at)) = self.lines.recv_timeout(left) else { break };
            assert!(at >= killed, "client {me} failed before the kill: {line:?}");
            reported[me] = Some((line, at - killed));
        }
        let late: Vec<String> = (0..self.children.len())
            .filter(|&me| reported[me].is_none())
            .map(|me| {
                let pid = self.children[me].id();
                let wchan =
                    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
                format!(
                    "client {me} (pid {pid}): threads {:?}, wchan {wchan}",
                    load::thread_states(pid)
                )
            })
            .collect();
        assert!(late.is_empty(), "no error within 1 s of the kill: {late:?}");
        let slowest = reported.iter().flatten().map(|(_, took)| *took).max().unwrap();
        for (me, report) in reported.iter().enumerate() {
            let Some((line, took)) = report else { continue };
            let errno: i32 = line.strip_prefix("err ").and_then(|e| e.parse().ok()).unwrap_or(-1);
            // EIO: failed by schememount; ENOTCONN, ECONNABORTED: the kernel, connection gone.
            assert!([5, 103, 107].contains(&errno), "client {me} after {took:?}: {line:?}");
        }
        for (me, child) in self.children.iter().enumerate() {
            let states = load::thread_states(child.id());
            assert!(!states.iter().any(|&(_, s)| s == 'D'), "client {me} in D state: {states:?}");
        }
        eprintln!("{} clients failed, the slowest {slowest:?} after the kill", self.children.len());
    }

    /// Closes every stdin; each client must then exit with the status of "reported an error".
    fn finish(mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
            let status = util::wait_for(child, Duration::from_secs(5)).expect("client exits");
            assert_eq!(status.code(), Some(3), "{status:?}");
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn modes(scheme: &str) -> Vec<&'static str> {
    (0..CLIENTS)
        .map(|i| match (scheme, i % 2) {
            ("ramfs", _) => "ramfs",
            (_, 0) => "chan-busy",
            _ => "chan-blocked",
        })
        .collect()
}

/// SIGKILL to the daemon: callers fail within 1 s, the mount goes, schememount exits non-zero.
/// `args`: the scheme, then any options.
fn kill_the_daemon(args: &[&str]) {
    let scheme = args[0];
    let Some(mut mount) = Mount::start(args) else { return };
    let modes = modes(scheme);
    let clients = Clients::start(&mount, &modes);
    clients.wait_blocked(&modes);
    let daemon = load::daemon_of(mount.pid());
    let killed = Instant::now();
    util::kill(daemon, Signal::KILL);
    clients.expect_all_failed_within_a_second(killed);
    assert!(load::poll_until(Duration::from_secs(5), || !mount.is_mounted()), "mount left behind");
    let status = mount.wait_exit(Duration::from_secs(5)).expect("schememount exits");
    assert!(!status.success(), "schememount exit status after its daemon died: {status:?}");
    clients.finish();
}

/// SIGKILL to schememount: callers fail within 1 s, the daemon exits, the mount goes.
fn kill_schememount(scheme: &str) {
    let Some(mut mount) = Mount::start(&[scheme]) else { return };
    let modes = modes(scheme);
    let clients = Clients::start(&mount, &modes);
    clients.wait_blocked(&modes);
    let daemon = load::daemon_of(mount.pid());
    let killed = Instant::now();
    mount.signal_and_wait(Signal::KILL, Duration::from_secs(5)).expect("schememount dies");
    clients.expect_all_failed_within_a_second(killed);
    assert!(
        load::poll_until(Duration::from_secs(5), || load::exited(daemon)),
        "daemon {daemon} lives on"
    );
    assert!(
        load::poll_until(Duration::from_secs(5), || !mount.is_mounted()),
        "stale mount left behind"
    );
    clients.finish();
}

#[test]
fn daemon_sigkill_fails_32_ramfs_clients_at_once() {
    kill_the_daemon(&["ramfs"]);
}

/// Without busy polling the FUSE thread reads the daemon's answers itself (no reader thread).
#[test]
fn daemon_sigkill_fails_32_ramfs_clients_at_once_when_the_fuse_thread_reads_the_answers() {
    kill_the_daemon(&["ramfs", "-o", "busy_poll=0"]);
}

#[test]
fn daemon_sigkill_fails_32_chan_clients_busy_and_blocked_at_once() {
    kill_the_daemon(&["chan"]);
}

#[test]
fn schememount_sigkill_fails_32_chan_clients_and_stops_the_daemon() {
    kill_schememount("chan");
}

#[test]
fn schememount_sigkill_fails_32_ramfs_clients_and_stops_the_daemon() {
    kill_schememount("ramfs");
}
