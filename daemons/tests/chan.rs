//! The `chand` daemon as a real child process, driven through the client library: the seed's
//! hello server with 50 concurrent clients, parked reads that delay nobody, errnos as ipcd
//! gives them, events, and a daemon killed mid-call.

mod util;

use std::thread;
use std::time::{Duration, Instant};

use scheme_bridge::{CallError, Client, Limits};
use scheme_protocol::{Call, Caller, Errno, Fd, Reply};
use syscall::flag::{
    EVENT_READ, EVENT_WRITE, F_GETFL, F_SETFL, O_CREAT, O_EXCL, O_NONBLOCK, O_RDWR,
};
use util::{spawn, PROMPTLY};

const HELLO: &[u8] = b"Hello World!\n";

/// The seed's server: accept forever on `chan:hello`, greet, close.
fn hello_server(client: Client, connections: usize) -> thread::JoinHandle<()> {
    let listener = client.open("hello", O_CREAT | O_RDWR).unwrap();
    thread::spawn(move || {
        for _ in 0..connections {
            let stream = client.dup(listener, b"listen").unwrap();
            assert_eq!(client.write(stream, HELLO).unwrap(), HELLO.len());
            client.close(stream).unwrap();
        }
        client.close(listener).unwrap();
    })
}

/// Reads until end of file.
fn read_to_end(client: &Client, fd: Fd) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let chunk = client.read(fd, 5).unwrap();
        if chunk.is_empty() {
            return all;
        }
        all.extend(chunk);
    }
}

#[test]
fn fifty_concurrent_clients_each_read_hello_then_eof() {
    let client = spawn("chand", "chan");
    let server = hello_server(client.with_caller(Caller { pid: 1, uid: 0, gid: 0 }), 50);
    let clients: Vec<_> = (0..50)
        .map(|n| {
            let client = client.with_caller(Caller { pid: 100 + n, uid: 1000, gid: 1000 });
            thread::spawn(move || {
                let stream = client.open("hello", O_RDWR).unwrap();
                let got = read_to_end(&client, stream);
                client.close(stream).unwrap();
                got
            })
        })
        .collect();
    for handle in clients {
        assert_eq!(handle.join().unwrap(), HELLO);
    }
    server.join().unwrap();
}

/// A connected stream pair: (server side, client side).
fn stream_pair(client: &Client, name: &str) -> (Fd, Fd, Fd) {
    let listener = client.open(name, O_CREAT | O_RDWR).unwrap();
    let near = client.open(name, O_RDWR).unwrap();
    let far = client.dup(listener, b"listen").unwrap();
    (listener, far, near)
}

#[test]
fn a_parked_read_delays_none_of_1000_other_calls_and_a_write_completes_it() {
    let client = spawn("chand", "chan");
    let (listener, far, near) = stream_pair(&client, "pending");
    let parked = client.start(Call::Read { fd: near, len: 64 }).unwrap();
    let started = Instant::now();
    for n in 0..1000 {
        let fd = if n % 2 == 0 { far } else { listener };
        client.fcntl(fd, F_GETFL, 0).unwrap();
    }
    let elapsed = started.elapsed();
    let parked = parked.wait_timeout(Duration::from_millis(20)).expect_err("read stays parked");
    client.write(far, b"done").unwrap();
    let reply = parked.wait_timeout(PROMPTLY).expect("the write completes the read");
    assert_eq!(reply.unwrap(), Reply::Data(b"done".as_slice().into()));
    eprintln!("1000 calls beside a parked read took {elapsed:?}");
}

#[test]
fn ipcd_errnos_cross_the_wire_unchanged() {
    let client = spawn("chand", "chan");
    assert_eq!(client.open("nobody", O_RDWR), Err(CallError::Errno(Errno::ENOENT)));
    let listener = client.open("x", O_CREAT | O_RDWR | O_NONBLOCK).unwrap();
    assert_eq!(client.open("x", O_CREAT | O_EXCL | O_RDWR), Err(Errno::EEXIST.into()));
    // A non-blocking accept with nobody waiting is EWOULDBLOCK, Redox's 41, not EAGAIN.
    assert_eq!(client.dup(listener, b"listen"), Err(Errno::EWOULDBLOCK.into()));
    let near = client.open("x", O_RDWR).unwrap();
    let far = client.dup(listener, b"listen").unwrap();
    client.fcntl(near, F_SETFL, O_RDWR | O_NONBLOCK).unwrap();
    assert_eq!(client.read(near, 8), Err(Errno::EAGAIN.into()));
    assert_eq!(client.fpath(far).unwrap(), b"chan:x");
    client.write(far, b"last words").unwrap();
    client.close(far).unwrap();
    assert_eq!(client.read(near, 64).unwrap(), b"last words", "buffered data survives");
    assert_eq!(client.read(near, 64).unwrap(), b"", "then end of file");
    assert_eq!(client.write(near, b"?"), Err(Errno::EPIPE.into()));
}

#[test]
fn readiness_is_posted_as_events() {
    let client = spawn("chand", "chan");
    let listener = client.open("ev", O_CREAT | O_RDWR).unwrap();
    assert_eq!(client.fevent(listener, EVENT_READ.bits() as u64).unwrap(), 0);
    let near = client.open("ev", O_RDWR).unwrap();
    let event = client.events().recv_timeout(PROMPTLY).unwrap();
    assert_eq!((event.fd, event.flags), (listener, (EVENT_READ | EVENT_WRITE).bits() as u64));
    let far = client.dup(listener, b"listen").unwrap();
    let event = client.events().recv_timeout(PROMPTLY).unwrap();
    assert_eq!((event.fd, event.flags), (near, EVENT_WRITE.bits() as u64));
    client.write(far, b"ping").unwrap();
    let event = client.events().recv_timeout(PROMPTLY).unwrap();
    assert_eq!((event.fd, event.flags), (near, EVENT_READ.bits() as u64));
    let ready = client.fevent(near, (EVENT_READ | EVENT_WRITE).bits() as u64).unwrap();
    assert_eq!(ready, (EVENT_READ | EVENT_WRITE).bits() as u64);
}

#[test]
fn a_daemon_killed_mid_call_fails_every_outstanding_call_within_a_second() {
    let client = spawn("chand", "chan");
    let (listener, _far, near) = stream_pair(&client, "doomed");
    let parked: Vec<_> = (0..8)
        .map(|n| {
            let fd = if n % 2 == 0 { near } else { listener };
            let call = if n % 2 == 0 {
                Call::Read { fd, len: 1 }
            } else {
                Call::Dup { fd, buf: b"listen".as_slice().into() }
            };
            client.start(call).unwrap()
        })
        .collect();
    let pid = rustix::process::Pid::from_raw(client.daemon_pid().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let killed = Instant::now();
    for call in parked {
        let result = call.wait_timeout(Duration::from_secs(1)).expect("answered within 1 s");
        assert!(matches!(result, Err(CallError::Disconnected(_))), "{result:?}");
    }
    assert!(killed.elapsed() < Duration::from_secs(1));
    assert!(matches!(client.open("doomed", O_RDWR), Err(CallError::Disconnected(_))));
}

/// With no reader thread, a caller blocked in a call reads the wire for everyone (the leader).
/// When the leader's own answer comes, it must wake a blocked caller to take over: here the
/// only other caller's answer arrives after the leader left, caused by a write nobody waits
/// for, so without that wake-up it would never be read.
#[test]
fn a_leaving_leader_hands_the_wire_to_a_blocked_caller() {
    let client = spawn("chand", "chan");
    let (_l1, far1, near1) = stream_pair(&client, "first");
    let (_l2, far2, near2) = stream_pair(&client, "second");
    let leader = {
        let client = client.clone();
        thread::spawn(move || client.read(near1, 16))
    };
    thread::sleep(Duration::from_millis(100)); // the leader is reading the wire
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let follower = {
        let client = client.clone();
        thread::spawn(move || done_tx.send(client.read(near2, 16)))
    };
    thread::sleep(Duration::from_millis(100)); // the follower waits for the leader
    client.write(far1, b"one").unwrap();
    assert_eq!(leader.join().unwrap().unwrap(), b"one");
    let _unwaited = client.start(Call::Write { fd: far2, data: b"two".as_slice().into() }).unwrap();
    let answer = done_rx.recv_timeout(Duration::from_secs(5)).expect("the follower got its answer");
    assert_eq!(answer.unwrap(), b"two");
    follower.join().unwrap().expect("the answer was taken");
}

/// A caller blocked in a call with no reader thread sleeps on the wire (the leader), with no
/// timer. When its call is failed other than from the wire (here by the watchdog's call
/// timeout, while the daemon is stopped, so that no answer or end of file can come), the
/// client's bell must wake it at once.
#[test]
fn a_leader_asleep_on_the_wire_wakes_when_its_call_times_out() {
    use rustix::process::{kill_process, Pid, Signal};
    let client = spawn("chand", "chan");
    let timeout = Duration::from_millis(300);
    client.set_limits(Limits { call_timeout: Some(timeout), ..Limits::default() });
    let listener = client.open("frozen", O_CREAT | O_RDWR).unwrap();
    let daemon = Pid::from_raw(client.daemon_pid().unwrap() as i32).unwrap();
    kill_process(daemon, Signal::STOP).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    let leader = {
        let client = client.clone();
        thread::spawn(move || done_tx.send(client.fcntl(listener, F_GETFL, 0)))
    };
    let answer = done_rx.recv_timeout(PROMPTLY);
    kill_process(daemon, Signal::CONT).unwrap();
    let answer = answer.expect("the leader woke up");
    assert_eq!(answer, Err(CallError::Errno(Errno::EIO)));
    assert!(started.elapsed() >= timeout);
    leader.join().unwrap().unwrap();
}
