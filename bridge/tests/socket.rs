//! The daemon side (wire -> Packet) and the client, connected by real OS pipes inside one
//! process: a raw Redox-style todo loop and the `serve` loops run a small blocking scheme
//! unchanged; cancels, dying peers and a hostile daemon are checked here. Tests with real
//! daemon processes live in `daemons/tests/`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use scheme_bridge::{serve_block_mut, CallError, Client, EventPoster, PendingCall, SchemeSocket};
use scheme_protocol::{Bytes, Call, Errno, Fd, PathStep, Reply, MAX_PATH_STEPS};
use syscall::data::{Packet, Stat};
use syscall::error::{Error, Result, EBADF, EIO, ENOENT, ENOSYS};
use syscall::flag::{EventFlags, MODE_FILE};
use syscall::number::{KSMSG_CANCEL, SYS_FEVENT};
use syscall::SchemeBlockMut;

/// A one-buffer mailbox: writes append, reads drain or block while it is empty. Opening
/// "gate" blocks until something was written. Records every close.
#[derive(Default)]
struct Mailbox {
    next_id: usize,
    open: HashSet<usize>,
    buffer: Vec<u8>,
    closed: Arc<Mutex<Vec<usize>>>,
    /// Handles of "nostat", whose fstat fails.
    unstattable: HashSet<usize>,
}

impl SchemeBlockMut for Mailbox {
    fn open(&mut self, path: &str, _flags: usize, _uid: u32, _gid: u32) -> Result<Option<usize>> {
        if path == "gate" && self.buffer.is_empty() {
            return Ok(None);
        }
        if path == "missing" {
            return Err(Error::new(ENOENT));
        }
        self.next_id += 1;
        self.open.insert(self.next_id);
        if path == "nostat" {
            self.unstattable.insert(self.next_id);
        }
        Ok(Some(self.next_id))
    }

    fn read(&mut self, id: usize, buf: &mut [u8]) -> Result<Option<usize>> {
        self.check(id)?;
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let n = buf.len().min(self.buffer.len());
        buf[..n].copy_from_slice(&self.buffer[..n]);
        self.buffer.drain(..n);
        Ok(Some(n))
    }

    fn write(&mut self, id: usize, buf: &[u8]) -> Result<Option<usize>> {
        self.check(id)?;
        self.buffer.extend_from_slice(buf);
        Ok(Some(buf.len()))
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat) -> Result<Option<usize>> {
        self.check(id)?;
        if self.unstattable.contains(&id) {
            return Err(Error::new(EIO));
        }
        *stat = Stat {
            st_mode: MODE_FILE | 0o644,
            st_size: self.buffer.len() as u64,
            ..Stat::default()
        };
        Ok(Some(0))
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8]) -> Result<Option<usize>> {
        self.check(id)?;
        let path = b"mailbox:";
        let n = buf.len().min(path.len());
        buf[..n].copy_from_slice(&path[..n]);
        Ok(Some(n))
    }

    fn close(&mut self, id: usize) -> Result<Option<usize>> {
        self.check(id)?;
        self.open.remove(&id);
        self.closed.lock().unwrap().push(id);
        Ok(Some(0))
    }
}

impl Mailbox {
    fn check(&self, id: usize) -> Result<()> {
        self.open.contains(&id).then_some(()).ok_or(Error::new(EBADF))
    }
}

/// How the socket reads the wire.
#[derive(Debug, Clone, Copy)]
enum Wire {
    /// `SchemeSocket::on_pipe`: a parking loop's serving thread reads the pipe itself.
    Pipe,
    /// `SchemeSocket::new`: any reader, read by the socket's reader thread.
    ReaderThread,
}

const WIRES: [Wire; 2] = [Wire::Pipe, Wire::ReaderThread];

/// A socket and a client joined by two OS pipes, handshaken.
fn connected() -> (SchemeSocket, Client) {
    connected_by(Wire::Pipe)
}

fn connected_by(wire: Wire) -> (SchemeSocket, Client) {
    let _ = env_logger::builder().is_test(true).try_init();
    let (to_daemon_r, to_daemon_w) = std::io::pipe().unwrap();
    let (to_client_r, to_client_w) = std::io::pipe().unwrap();
    let daemon = thread::spawn(move || match wire {
        Wire::Pipe => SchemeSocket::on_pipe(to_daemon_r, to_client_w, "mailbox"),
        Wire::ReaderThread => SchemeSocket::new(to_daemon_r, to_client_w, "mailbox"),
    });
    let client = Client::connect(to_client_r, to_daemon_w, "mailbox").unwrap();
    (daemon.join().unwrap().unwrap(), client)
}

/// A Redox daemon's own main loop, as ipcd wrote it: read packets one at a time, keep the
/// blocked ones in a todo list, retry everything after each new packet, write replies.
fn raw_todo_loop(mut socket: SchemeSocket, mut scheme: Mailbox) {
    let mut todo: Vec<Packet> = Vec::new();
    loop {
        let mut packet = Packet::default();
        if socket.read(&mut packet).unwrap() == 0 {
            break;
        }
        todo.insert(0, packet);
        let mut i = 0;
        while i < todo.len() {
            if let Some(a) = scheme.handle(&todo[i]) {
                let mut packet = todo.remove(i);
                packet.a = a;
                socket.write_all(&packet).unwrap();
            } else {
                i += 1;
            }
        }
    }
}

fn spawn_raw(scheme: Mailbox) -> (Client, thread::JoinHandle<()>) {
    let (socket, client) = connected();
    (client, thread::spawn(move || raw_todo_loop(socket, scheme)))
}

fn spawn_served(scheme: Mailbox) -> (Client, thread::JoinHandle<()>) {
    spawn_served_by(Wire::Pipe, scheme)
}

fn spawn_served_by_reader_thread(scheme: Mailbox) -> (Client, thread::JoinHandle<()>) {
    spawn_served_by(Wire::ReaderThread, scheme)
}

fn spawn_served_by<S: SchemeBlockMut + Send + 'static>(
    wire: Wire,
    mut scheme: S,
) -> (Client, thread::JoinHandle<()>) {
    let (mut socket, client) = connected_by(wire);
    let daemon = thread::spawn(move || serve_block_mut(&mut socket, &mut scheme).unwrap());
    (client, daemon)
}

#[test]
fn raw_redox_loop_parks_a_read_while_other_calls_complete() {
    let (client, daemon) = spawn_raw(Mailbox::default());
    let reader = client.open("r", 0).unwrap();
    let writer = client.open("w", 0).unwrap();
    let parked = client.start(Call::Read { fd: reader, len: 64 }).unwrap();
    for _ in 0..1000 {
        assert_eq!(client.fstat(writer).unwrap().st_size, 0);
    }
    let parked = parked.wait_timeout(Duration::from_millis(50)).expect_err("read must stay parked");
    assert_eq!(client.write(writer, b"hello").unwrap(), 5);
    let reply = parked.wait_timeout(Duration::from_secs(5)).expect("write completes the read");
    assert_eq!(reply.unwrap(), Reply::Data(b"hello".as_slice().into()));
    assert_eq!(client.fpath(writer).unwrap(), b"mailbox:");
    drop(client);
    daemon.join().unwrap();
}

#[test]
fn serve_loop_answers_parked_requests_in_any_order() {
    for wire in WIRES {
        serve_loop_answers_parked_requests_in_any_order_by(wire);
    }
}

fn serve_loop_answers_parked_requests_in_any_order_by(wire: Wire) {
    let (client, daemon) = spawn_served_by(wire, Mailbox::default());
    let fd = client.open("x", 0).unwrap();
    let reads: Vec<_> = (0..3).map(|_| client.start(Call::Read { fd, len: 1 }).unwrap()).collect();
    assert_eq!(client.write(fd, b"abc").unwrap(), 3);
    let mut got: Vec<u8> = reads
        .into_iter()
        .flat_map(|r| match r.wait().unwrap() {
            Reply::Data(bytes) => bytes.into_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    got.sort();
    assert_eq!(got, b"abc");
    drop(client);
    daemon.join().unwrap();
}

#[test]
fn cancel_answers_eintr_at_once_and_the_parked_read_consumes_nothing() {
    for wire in WIRES {
        cancel_answers_eintr_at_once_by(wire);
    }
}

fn cancel_answers_eintr_at_once_by(wire: Wire) {
    let (client, daemon) = spawn_served_by(wire, Mailbox::default());
    let fd = client.open("x", 0).unwrap();
    let parked = client.start(Call::Read { fd, len: 16 }).unwrap();
    let started = Instant::now();
    assert_eq!(parked.cancel(), Err(CallError::Errno(Errno::EINTR)));
    assert!(started.elapsed() < Duration::from_secs(1));
    client.write(fd, b"kept").unwrap();
    assert_eq!(client.read(fd, 16).unwrap(), b"kept");
    drop(client);
    daemon.join().unwrap();
}

#[test]
fn a_cancelled_open_that_completes_later_is_closed_in_the_daemon() {
    cancelled_gate_open_is_closed(Call::Open { path: "gate".into(), flags: 0 });
}

/// Cancels `open_gate` (an open of "gate", plain or compound, which the daemon parks), lets the
/// gate open, and checks the handle it made is closed and nothing else is touched.
fn cancelled_gate_open_is_closed(open_gate: Call) {
    let closed = Arc::new(Mutex::new(Vec::new()));
    let scheme = Mailbox { closed: Arc::clone(&closed), ..Mailbox::default() };
    // The raw loop knows nothing of KSMSG_CANCEL, so the parked open completes later.
    let (client, daemon) = spawn_raw(scheme);
    let gate = client.start(open_gate).unwrap();
    // Calls reach the daemon in order: once "w" is open, the daemon holds the gate open.
    let fd = client.open("w", 0).unwrap();
    assert_eq!(gate.cancel(), Err(CallError::Errno(Errno::EINTR)));
    client.write(fd, b"open the gate").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while closed.lock().unwrap().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    // "w" got id 1; the gate, opened after the write, got id 2.
    assert_eq!(*closed.lock().unwrap(), vec![2]);
    assert_eq!(client.fstat(fd).unwrap().st_size, 13, "the orphan close did not touch w");
    drop(client);
    daemon.join().unwrap();
}

#[test]
fn closing_the_caller_side_ends_the_loop_and_answers_parked_requests() {
    for wire in WIRES {
        let (client, daemon) = spawn_served_by(wire, Mailbox::default());
        let fd = client.open("x", 0).unwrap();
        let parked = client.start(Call::Read { fd, len: 1 }).unwrap();
        drop(parked);
        drop(client);
        daemon.join().unwrap(); // returns: EOF reached the loop
    }
}

#[test]
fn a_daemon_that_goes_away_fails_every_outstanding_call() {
    let (mut socket, client) = connected();
    let daemon = thread::spawn(move || {
        let mut packets = Vec::new();
        socket.next_packets(&mut packets, 8).unwrap();
        drop(socket); // takes the packet and dies without answering
    });
    let started = Instant::now();
    let err = client.open("x", 0).unwrap_err();
    assert!(matches!(err, CallError::Disconnected(_)), "{err:?}");
    assert_eq!(err.errno(), Errno::EIO);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(client.open("y", 0), Err(CallError::Disconnected(_))));
    daemon.join().unwrap();
}

/// A hand-driven daemon: the test reads packets and writes whatever it likes back.
struct Hostile {
    socket: SchemeSocket,
}

impl Hostile {
    fn next(&mut self) -> Packet {
        let mut packet = Packet::default();
        assert_eq!(self.socket.read(&mut packet).unwrap(), 56);
        packet
    }

    fn reply(&mut self, packet: Packet, a: usize) {
        self.socket.write_all(&Packet { a, ..packet }).unwrap();
    }
}

#[test]
fn a_hostile_daemon_gets_eio_for_the_affected_call_only() {
    let (socket, client) = connected();
    let mut daemon = Hostile { socket };
    let c = client.clone();
    let opener = thread::spawn(move || c.open("x", 0));
    let open = daemon.next();
    daemon.reply(open, 7);
    let fd = opener.join().unwrap().unwrap();
    assert_eq!(fd, Fd(7));

    // A read answered with more bytes than the buffer holds.
    let c = client.clone();
    let reader = thread::spawn(move || c.read(fd, 4));
    let read = daemon.next();
    assert_eq!((read.b, read.d), (7, 4));
    daemon.reply(read, 5);
    assert_eq!(reader.join().unwrap(), Err(CallError::Errno(Errno::EIO)));
    // A second reply for the same id, and a reply for an id never sent: dropped.
    daemon.reply(read, 0);
    daemon.reply(Packet { id: 999, ..read }, 0);
    // A write that claims more than it was given.
    let c = client.clone();
    let writer = thread::spawn(move || c.write(fd, b"ab"));
    let write = daemon.next();
    daemon.reply(write, 3);
    assert_eq!(writer.join().unwrap(), Err(CallError::Errno(Errno::EIO)));
    // EINTR without a cancel, and a forwarded fd: neither can reach a Linux caller as such.
    let c = client.clone();
    let syncer = thread::spawn(move || (c.fsync(fd), c.fsync(fd)));
    let first = daemon.next();
    daemon.reply(first, Error::mux(Err(Error::new(syscall::error::EINTR))));
    let second = daemon.next();
    daemon.reply(second, Error::mux(Err(Error::new(syscall::error::ESKMSG))));
    let (a, b) = syncer.join().unwrap();
    assert_eq!(a, Err(CallError::Errno(Errno::EIO)));
    assert_eq!(b, Err(CallError::Errno(Errno::EOPNOTSUPP)));
    // Events: one for an unknown handle is dropped, one for the open handle arrives.
    let event = |b| Packet {
        id: 0,
        a: SYS_FEVENT,
        b,
        c: EventFlags::EVENT_READ.bits(),
        ..Packet::default()
    };
    daemon.socket.write_all(&event(77)).unwrap();
    daemon.socket.write_all(&event(7)).unwrap();
    let got = client.events().recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((got.fd, got.flags), (Fd(7), 1));
    assert!(client.events().try_recv().is_err());
    // The stream is still sound: an ordinary call works.
    let c = client.clone();
    let closer = thread::spawn(move || c.close(fd));
    let close = daemon.next();
    daemon.reply(close, 0);
    assert_eq!(closer.join().unwrap(), Ok(()));
}

#[test]
fn the_cancel_packet_reaches_the_daemon_and_unknown_answers_to_it_are_ignored() {
    let (socket, client) = connected();
    let mut daemon = Hostile { socket };
    let c = client.clone();
    let opener = thread::spawn(move || c.open("x", 0));
    let open = daemon.next();
    daemon.reply(open, 1);
    let fd = opener.join().unwrap().unwrap();
    let parked = client.start(Call::Read { fd, len: 1 }).unwrap();
    let read = daemon.next();
    assert_eq!(parked.cancel(), Err(CallError::Errno(Errno::EINTR)));
    let cancel = daemon.next();
    assert_eq!((cancel.id, cancel.a, cancel.b as u64), (0, KSMSG_CANCEL, read.id));
    // A 2019-era daemon answers the unknown message with ENOSYS under id 0: ignored.
    daemon.reply(cancel, Error::mux(Err(Error::new(ENOSYS))));
    // The late reply to the cancelled read is discarded.
    daemon.reply(read, 0);
    let c = client.clone();
    let syncer = thread::spawn(move || c.fsync(fd));
    let sync = daemon.next();
    daemon.reply(sync, 0);
    assert_eq!(syncer.join().unwrap(), Ok(()));
}

#[test]
fn reads_larger_than_a_frame_are_capped_not_refused() {
    let (client, daemon) = spawn_served(Mailbox::default());
    let fd = client.open("x", 0).unwrap();
    let big = vec![7u8; client.max_payload()];
    assert_eq!(client.write(fd, &big).unwrap(), big.len());
    let got = client.call(Call::Read { fd, len: u64::MAX }).unwrap();
    assert_eq!(got, Reply::Data(big.into()));
    drop(client);
    daemon.join().unwrap();
}

#[test]
fn nonblocking_socket_reports_would_block() {
    let (mut socket, _client) = connected();
    socket.set_nonblocking(true);
    let mut buf = [0u8; 56];
    let err = socket.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
}

/// A client, its daemon thread and the handles its mailbox closed.
type Served = (Client, thread::JoinHandle<()>, Arc<Mutex<Vec<usize>>>);

/// A mailbox behind each loop, the raw Redox loop and `serve_block_mut` (reading the pipe
/// itself, then through the reader thread), one after the other, each recording its own
/// closes.
fn both_loops() -> impl Iterator<Item = Served> {
    type Spawn = fn(Mailbox) -> (Client, thread::JoinHandle<()>);
    [spawn_raw as Spawn, spawn_served, spawn_served_by_reader_thread].into_iter().map(|spawn| {
        let closed = Arc::new(Mutex::new(Vec::new()));
        let (client, daemon) = spawn(Mailbox { closed: Arc::clone(&closed), ..Mailbox::default() });
        (client, daemon, closed)
    })
}

#[test]
fn stat_path_answers_a_stat_and_closes_the_handle_it_opened() {
    for (client, daemon, closed) in both_loops() {
        assert!(client.compound(), "the daemon side announces compound calls");
        let Ok(Reply::Stat(stat)) = client.call(Call::StatPath { path: "m".into() }) else {
            panic!("a stat_path is answered with a stat");
        };
        assert_eq!(stat.st_mode, MODE_FILE | 0o644);
        // The close runs before any later call: the next open gets the next id.
        let fd = client.open("m", 0).unwrap();
        assert_eq!(*closed.lock().unwrap(), vec![1]);
        assert_eq!(fd, Fd(2));
        drop(client);
        daemon.join().unwrap();
    }
}

#[test]
fn open_stat_answers_the_handle_with_its_stat_and_keeps_it_open() {
    for (client, daemon, closed) in both_loops() {
        let opened = client.call(Call::OpenStat { path: "m".into(), flags: 0 });
        let Ok(Reply::Opened { fd, stat }) = opened else { panic!("got {opened:?}") };
        assert_eq!((fd, stat.st_size), (Fd(1), 0));
        assert_eq!(client.write(fd, b"kept").unwrap(), 4);
        assert_eq!(client.fstat(fd).unwrap().st_size, 4);
        assert!(closed.lock().unwrap().is_empty(), "the handle stays open");
        drop(client);
        daemon.join().unwrap();
    }
}

#[test]
fn a_compound_answers_the_first_error_and_closes_what_it_opened() {
    for (client, daemon, closed) in both_loops() {
        let missing = client.call(Call::StatPath { path: "missing".into() });
        assert_eq!(missing, Err(CallError::Errno(Errno::ENOENT)));
        let unstattable = client.call(Call::OpenStat { path: "nostat".into(), flags: 0 });
        assert_eq!(unstattable, Err(CallError::Errno(Errno::EIO)));
        // The next call runs after the close of the handle whose fstat failed.
        client.open("m", 0).unwrap();
        assert_eq!(*closed.lock().unwrap(), vec![1], "a kept handle whose fstat failed is closed");
        drop(client);
        daemon.join().unwrap();
    }
}

#[test]
fn a_cancelled_open_stat_closes_its_handle_in_the_daemon() {
    // A compound cancelled while its open is parked leaves no handle behind either.
    cancelled_gate_open_is_closed(Call::OpenStat { path: "gate".into(), flags: 0 });
}

#[test]
fn on_path_makes_each_step_on_its_handle_then_closes_it() {
    for (client, daemon, closed) in both_loops() {
        assert!(client.path_steps(), "the daemon side announces OnPath");
        let steps = vec![PathStep::Write { data: Bytes::from(&b"hi"[..]) }, PathStep::Fstat];
        let stat = client.call(Call::OnPath { path: "m".into(), flags: 0, steps });
        let Ok(Reply::Stat(stat)) = stat else { panic!("the last step's answer: {stat:?}") };
        assert_eq!(stat.st_size, 2, "the fstat came after the write");
        let read = client.call(Call::OnPath {
            path: "m".into(),
            flags: 0,
            steps: vec![PathStep::Read { len: 16 }],
        });
        assert_eq!(read, Ok(Reply::Data(Bytes::from(&b"hi"[..]))));
        // Both closes ran before the next call: it gets the next id.
        assert_eq!(client.open("m", 0).unwrap(), Fd(3));
        assert_eq!(*closed.lock().unwrap(), vec![1, 2]);
        drop(client);
        daemon.join().unwrap();
    }
}

#[test]
fn on_path_stops_at_a_failed_step_and_still_closes() {
    for (client, daemon, closed) in both_loops() {
        let steps = vec![PathStep::Fstat, PathStep::Write { data: Bytes::from(&b"x"[..]) }];
        let failed = client.call(Call::OnPath { path: "nostat".into(), flags: 0, steps });
        assert_eq!(failed, Err(CallError::Errno(Errno::EIO)));
        let fd = client.open("m", 0).unwrap();
        assert_eq!(*closed.lock().unwrap(), vec![1]);
        assert_eq!(client.fstat(fd).unwrap().st_size, 0, "no step ran after the failed one");
        let missing = client.call(Call::OnPath {
            path: "missing".into(),
            flags: 0,
            steps: vec![PathStep::Fstat],
        });
        assert_eq!(missing, Err(CallError::Errno(Errno::ENOENT)));
        drop(client);
        daemon.join().unwrap();
    }
}

#[test]
fn on_path_without_steps_or_with_too_many_is_einval_and_opens_nothing() {
    for (client, daemon, closed) in both_loops() {
        for count in [0, MAX_PATH_STEPS + 1] {
            let steps = vec![PathStep::Fstat; count];
            let refused = client.call(Call::OnPath { path: "m".into(), flags: 0, steps });
            assert_eq!(refused, Err(CallError::Errno(Errno::EINVAL)), "{count} steps");
        }
        assert_eq!(client.open("m", 0).unwrap(), Fd(1), "nothing was opened");
        assert!(closed.lock().unwrap().is_empty());
        drop(client);
        daemon.join().unwrap();
    }
}

#[test]
fn a_cancelled_on_path_closes_its_handle_in_the_daemon() {
    let steps = vec![PathStep::Fstat];
    cancelled_gate_open_is_closed(Call::OnPath { path: "gate".into(), flags: 0, steps });
}

/// Reads park until another thread opens the gate (and posts an event, as a driver would).
/// The first fstat takes a while, so that a test can post while the loop is busy with it.
struct Gate {
    opened: Arc<AtomicBool>,
    slow_stats: usize,
}

impl Gate {
    fn new(opened: &Arc<AtomicBool>, slow_stats: usize) -> Gate {
        Gate { opened: Arc::clone(opened), slow_stats }
    }
}

impl SchemeBlockMut for Gate {
    fn open(&mut self, _path: &str, _flags: usize, _uid: u32, _gid: u32) -> Result<Option<usize>> {
        Ok(Some(1))
    }

    fn read(&mut self, _id: usize, _buf: &mut [u8]) -> Result<Option<usize>> {
        Ok(self.opened.load(Ordering::SeqCst).then_some(0))
    }

    fn fstat(&mut self, _id: usize, _stat: &mut Stat) -> Result<Option<usize>> {
        if self.slow_stats > 0 {
            self.slow_stats -= 1;
            thread::sleep(Duration::from_millis(200));
        }
        Ok(Some(0))
    }
}

/// A read parked behind a closed [`Gate`] served by `serve_block_mut` over `wire`, and what
/// opens the gate: its flag and the socket's event poster.
struct ParkedRead {
    client: Client,
    daemon: thread::JoinHandle<()>,
    opened: Arc<AtomicBool>,
    poster: EventPoster,
    fd: Fd,
    read: PendingCall,
}

impl ParkedRead {
    fn behind_gate(wire: Wire, slow_stats: usize) -> ParkedRead {
        let (mut socket, client) = connected_by(wire);
        let opened = Arc::new(AtomicBool::new(false));
        let poster = socket.event_poster();
        let mut gate = Gate::new(&opened, slow_stats);
        let daemon = thread::spawn(move || serve_block_mut(&mut socket, &mut gate).unwrap());
        let fd = client.open("gate", 0).unwrap();
        let read = client.start(Call::Read { fd, len: 8 }).unwrap();
        let read = read.wait_timeout(Duration::from_millis(100)).expect_err("the gate is closed");
        ParkedRead { client, daemon, opened, poster, fd, read }
    }

    /// Opens the gate from this thread and posts the event a driver would.
    fn open_gate(&self) {
        self.opened.store(true, Ordering::SeqCst);
        self.poster.post(self.fd.0 as usize, EventFlags::EVENT_READ);
    }

    /// Checks the read was answered within `within`, then ends the daemon.
    fn expect_answered(self, within: Duration, what: &str) {
        let reply = self.read.wait_timeout(within).unwrap_or_else(|_| panic!("{what}"));
        assert_eq!(reply.unwrap(), Reply::Data(Vec::new().into()), "{what}");
        drop(self.client);
        self.daemon.join().unwrap();
    }
}

#[test]
fn an_event_posted_by_another_thread_wakes_the_loop_to_retry_parked_requests() {
    for wire in WIRES {
        let parked = ParkedRead::behind_gate(wire, 0);
        // Nothing comes over the wire from here on: only the post can wake the serving
        // thread, which (on a pipe) reads the wire itself and sleeps on it.
        parked.open_gate();
        parked.expect_answered(Duration::from_secs(5), &format!("{wire:?}: the post was lost"));
    }
}

#[test]
fn an_event_posted_while_only_queries_arrive_still_retries_parked_requests() {
    for (wire, query_first) in WIRES.into_iter().flat_map(|w| [(w, false), (w, true)]) {
        let parked = ParkedRead::behind_gate(wire, 1);
        let (client, fd) = (&parked.client, parked.fd);
        let slow = client.start(Call::Fstat { fd }).unwrap();
        // The loop is inside the slow fstat; the post and a second fstat then reach it in the
        // same batch, in either order. An fstat is a query, which by itself retries nothing.
        thread::sleep(Duration::from_millis(50));
        let early = query_first.then(|| client.start(Call::Fstat { fd }).unwrap());
        thread::sleep(Duration::from_millis(20));
        parked.open_gate();
        let fast = early.unwrap_or_else(|| client.start(Call::Fstat { fd }).unwrap());
        slow.wait_timeout(Duration::from_secs(5)).expect("slow fstat").unwrap();
        fast.wait_timeout(Duration::from_secs(5)).expect("fast fstat").unwrap();
        let what = format!("{wire:?}, query first {query_first}: the post was lost");
        parked.expect_answered(Duration::from_secs(3), &what);
    }
}

#[test]
fn a_serving_thread_reading_the_pipe_itself_takes_frames_that_arrive_in_pieces() {
    use scheme_protocol::codec::encode_frame;
    use scheme_protocol::{hello, Caller, Frame, FrameReader, Tag, MAX_FRAME};
    let (to_daemon_r, mut to_daemon_w) = std::io::pipe().unwrap();
    let (to_client_r, to_client_w) = std::io::pipe().unwrap();
    let mut ours = Vec::new();
    encode_frame(&Frame::Hello(hello("mailbox", MAX_FRAME)), MAX_FRAME, &mut ours).unwrap();
    to_daemon_w.write_all(&ours).unwrap();
    let mut socket = SchemeSocket::on_pipe(to_daemon_r, to_client_w, "mailbox").unwrap();
    let mut replies = FrameReader::new(to_client_r, MAX_FRAME);
    assert!(matches!(replies.read_frame().unwrap(), Frame::Hello(_)));
    let mut gate = Gate::new(&Arc::new(AtomicBool::new(true)), 0);
    let daemon = thread::spawn(move || serve_block_mut(&mut socket, &mut gate).unwrap());
    let caller = Caller { pid: 1, uid: 0, gid: 0 };
    let mut calls = Vec::new();
    for tag in 1..=3 {
        let call = Call::Open { path: "x".into(), flags: 0 };
        encode_frame(&Frame::Call { tag: Tag(tag), caller, call }, MAX_FRAME, &mut calls).unwrap();
    }
    for (i, byte) in calls.iter().enumerate() {
        to_daemon_w.write_all(&[*byte]).unwrap();
        if i % 7 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    for tag in 1..=3 {
        let reply = replies.read_frame().unwrap();
        assert!(matches!(reply, Frame::Reply { tag: Tag(t), response: Ok(_) } if t == tag));
    }
    // The start of a frame, then the end of the stream: the loop ends (the cut is logged).
    to_daemon_w.write_all(&calls[..5]).unwrap();
    drop(to_daemon_w);
    daemon.join().unwrap();
}
