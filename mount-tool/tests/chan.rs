//! ipcd's chan scheme through a real mount: the seed's hello server (Python, and shell with
//! schemectl) with 20 concurrent `cat`s, blocked reads that delay nobody, epoll wake-ups,
//! Ctrl-C on a blocked reader, and the daemon or schememount dying.

mod util;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use util::{sh, wait_for, Mount};

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello_server.py");

fn python_server(mount: &Mount, connections: usize) -> std::process::Child {
    let child = Command::new("python3")
        .arg(SERVER)
        .arg(mount.root())
        .arg(connections.to_string())
        .spawn()
        .expect("python3 runs");
    wait_until(|| mount.path("hello").exists());
    child
}

fn wait_until(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn cat_of_the_python_hello_server_prints_the_greeting_twenty_at_once() {
    let Some(mount) = Mount::start(&["chan"]) else { return };
    let mut server = python_server(&mount, 21);
    assert_eq!(std::fs::read_to_string(mount.path("hello")).unwrap(), "Hello World!\n");
    let cats: Vec<_> = (0..20)
        .map(|_| {
            Command::new("cat").arg(mount.path("hello")).stdout(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for cat in cats {
        let out = cat.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "Hello World!\n");
    }
    assert!(wait_for(&mut server, Duration::from_secs(10)).unwrap().success());
    let (_, listing) = sh(&format!("ls {}", mount.root().display()));
    assert_eq!(listing.trim(), "", "the listener is gone once the server closed it");
}

#[test]
fn a_shell_server_with_schemectl_and_ls_lists_live_listeners() {
    let Some(mount) = Mount::start(&["chan"]) else { return };
    let schemectl = env!("CARGO_BIN_EXE_schemectl");
    let script = format!(
        "exec 3>{dir}/hello; for i in 1 2; do s=$({schemectl} dup --fd 3 listen) || exit 1; echo 'Hello World!' > \"$s\"; done",
        dir = mount.root().display()
    );
    let mut server = Command::new("sh").arg("-c").arg(script).spawn().unwrap();
    wait_until(|| mount.path("hello").exists());
    let (_, listing) = sh(&format!("ls {}", mount.root().display()));
    assert_eq!(listing.trim(), "hello");
    for _ in 0..2 {
        assert_eq!(std::fs::read_to_string(mount.path("hello")).unwrap(), "Hello World!\n");
    }
    assert!(wait_for(&mut server, Duration::from_secs(10)).unwrap().success());
}

/// A listener plus `n` connected client streams opened through the mount, nobody writing.
fn blocked_readers(
    mount: &Mount,
    n: usize,
) -> (std::fs::File, Vec<std::thread::JoinHandle<std::io::Result<usize>>>) {
    let listener = std::fs::File::create(mount.path("quiet")).unwrap();
    let readers = (0..n)
        .map(|_| {
            let path = mount.path("quiet");
            std::thread::spawn(move || std::fs::File::open(path)?.read(&mut [0; 16]))
        })
        .collect();
    (listener, readers)
}

#[test]
fn stat_and_ls_answer_fast_with_200_reads_blocked() {
    let Some(mount) = Mount::start(&["chan"]) else { return };
    let (listener, readers) = blocked_readers(&mount, 200);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        let started = Instant::now();
        std::fs::metadata(mount.path("quiet")).unwrap();
        std::fs::read_dir(mount.root()).unwrap().for_each(drop);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(50), "stat+ls took {took:?}");
    }
    drop(listener);
    drop(mount); // unmounting ends the blocked reads
    for reader in readers {
        let _ = reader.join();
    }
}

#[test]
fn sigint_ends_a_cat_blocked_on_an_empty_stream_within_a_second() {
    let Some(mount) = Mount::start(&["chan"]) else { return };
    let _listener = std::fs::File::create(mount.path("empty")).unwrap();
    let mut cat = Command::new("cat").arg(mount.path("empty")).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(cat.try_wait().unwrap().is_none(), "cat is blocked");
    let sent = Instant::now();
    util::kill(cat.id(), Signal::INT);
    let status = wait_for(&mut cat, Duration::from_secs(1)).expect("cat exits within 1 s");
    assert!(!status.success());
    assert!(sent.elapsed() < Duration::from_secs(1));
    // Interrupts stay on: a second one works too.
    let mut again = Command::new("cat").arg(mount.path("empty")).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    util::kill(again.id(), Signal::INT);
    assert!(wait_for(&mut again, Duration::from_secs(1)).is_some());
}

#[test]
fn epoll_wakes_within_50ms_of_a_write_by_the_peer() {
    let Some(mount) = Mount::start(&["chan"]) else { return };
    let script = format!(
        r#"
import fcntl, os, select, time, sys
mnt = {mnt:?}
listener = os.open(mnt + "/ep", os.O_WRONLY | os.O_CREAT)
client = os.open(mnt + "/ep", os.O_RDONLY | os.O_NONBLOCK)
buf = bytearray(b"listen".ljust(256, b"\0")); fcntl.ioctl(listener, 0xC1005301, buf)
server = os.open(mnt + "/.dup/" + buf.split(b"\0")[0].decode(), os.O_WRONLY)
ep = select.epoll(); ep.register(client, select.EPOLLIN)
assert ep.poll(0.2) == [], "nothing to read yet"
try:
    os.read(client, 10); sys.exit("read did not say EAGAIN")
except BlockingIOError:
    pass
start = time.monotonic(); os.write(server, b"ping")
events = ep.poll(2.0); took = time.monotonic() - start
assert events and events[0][1] & select.EPOLLIN, events
assert os.read(client, 10) == b"ping"
print(took)
"#,
        mnt = mount.root().display().to_string()
    );
    let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(took < 0.05, "epoll woke after {took} s");
}

#[test]
fn sigkill_to_the_daemon_fails_blocked_readers_and_removes_the_mount() {
    let Some(mut mount) = Mount::start(&["chan"]) else { return };
    let (_listener, readers) = blocked_readers(&mount, 8);
    std::thread::sleep(Duration::from_millis(300));
    let daemon = sh(&format!("pgrep -P {} -f -- '--serve chan'", mount.pid())).1;
    let daemon: u32 = daemon.trim().parse().expect("the daemon is a child of schememount");
    let killed = Instant::now();
    util::kill(daemon, Signal::KILL);
    for reader in readers {
        let result = reader.join().unwrap();
        assert!(result.is_err(), "a blocked read fails: {result:?}");
    }
    assert!(killed.elapsed() < Duration::from_secs(1), "readers took {:?}", killed.elapsed());
    let status = mount.wait_exit(Duration::from_secs(5)).expect("schememount exits");
    assert!(!status.success());
    assert!(!mount.is_mounted());
}

#[test]
fn sigterm_unmounts_cleanly_stops_the_daemon_and_exits_0() {
    let Some(mut mount) = Mount::start(&["chan"]) else { return };
    let pid = mount.pid();
    let status = mount.signal_and_wait(Signal::TERM, Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(!mount.is_mounted());
    let (_, children) = sh(&format!("pgrep -P {pid}"));
    assert_eq!(children.trim(), "", "the daemon is gone");
}

#[test]
fn sigkill_to_schememount_leaves_no_mount_behind() {
    let Some(mut mount) = Mount::start(&["chan"]) else { return };
    let _listener = std::fs::File::create(mount.path("k")).unwrap();
    mount.signal_and_wait(Signal::KILL, Duration::from_secs(5)).expect("dies");
    wait_until(|| !mount.is_mounted());
}

#[test]
fn a_reader_and_a_writer_share_one_stream_fd_from_two_threads() {
    let Some(mount) = Mount::start(&["chan"]) else { return };
    let script = format!(
        r#"
import fcntl, os, threading
mnt = {mnt:?}
listener = os.open(mnt + "/duplex", os.O_WRONLY | os.O_CREAT)
client = os.open(mnt + "/duplex", os.O_RDWR)
buf = bytearray(b"listen".ljust(256, b"\0")); fcntl.ioctl(listener, 0xC1005301, buf)
server = os.open(mnt + "/.dup/" + buf.split(b"\0")[0].decode(), os.O_RDWR)
got = []
reader = threading.Thread(target=lambda: got.append(os.read(server, 64)))
reader.start()                      # blocks in read(server) ...
os.write(server, b"to the client")  # ... while another thread writes the same fd
assert os.read(client, 64) == b"to the client"
os.write(client, b"to the server")
reader.join(5)
assert got == [b"to the server"], got
"#,
        mnt = mount.root().display().to_string()
    );
    let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_dup_token_is_single_use_and_refused_to_another_user() {
    let Some(mount) = Mount::start(&["-o", "allow_other", "chan"]) else { return };
    let user = "sbtestuser";
    let _ = Command::new("useradd").args(["--no-create-home", "--shell", "/bin/sh", user]).status();
    let script = format!(
        r#"
import fcntl, os, subprocess
mnt = {mnt:?}
listener = os.open(mnt + "/tok", os.O_WRONLY | os.O_CREAT)
client = os.open(mnt + "/tok", os.O_RDWR)
buf = bytearray(b"listen".ljust(256, b"\0")); fcntl.ioctl(listener, 0xC1005301, buf)
path = mnt + "/.dup/" + buf.split(b"\0")[0].decode()
other = subprocess.run(["runuser", "-u", {user:?}, "--", "cat", path], capture_output=True, timeout=5)
assert other.returncode != 0 and b"Permission denied" in other.stderr, other
stream = os.open(path, os.O_WRONLY)          # the owner can, once
try:
    os.open(path, os.O_WRONLY); raise SystemExit("a token opened twice")
except FileNotFoundError:
    pass
os.write(stream, b"ok")
assert os.read(client, 2) == b"ok"
"#,
        mnt = mount.root().display().to_string()
    );
    let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
