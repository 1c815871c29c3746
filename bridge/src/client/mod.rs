//! The caller side of the wire: [`Client`] sends scheme calls to a daemon (a spawned child or
//! any pair of pipes) and matches replies to calls by tag, in any order. Any number of threads
//! may have calls outstanding; a call that blocks in the daemon delays nobody else. When the
//! daemon dies or the stream breaks, every outstanding and later call fails with
//! [`CallError::Disconnected`].

use std::fmt;
use std::io::{BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

mod calls;
mod events;
mod mailbox;
mod wire;

use calls::{Calls, Waiter};
pub use calls::{Completion, Limits};
use events::Events;
use mailbox::Mailbox;
use wire::{SharedWire, WireIn};

use crate::region::{self, Slots};
use crate::trace::Trace;
use crossbeam_channel::Receiver;
use log::{debug, error, warn};
use scheme_protocol::{
    handshake, hello, Bytes, Call, Caller, Errno, Fd, Frame, FrameReader, FrameWriter, Peer, Reply,
    Stat, StatVfs, Tag, TimeSpec, FEATURE_COMPOUND, FEATURE_PATH_STEPS, FEATURE_REGION,
    FEATURE_RING, MAX_FRAME, MAX_OVERHEAD,
};

/// The capacity asked for the pipes to a spawned daemon: one 1 MiB payload plus its header.
const PIPE_SIZE: usize = 2 << 20;

/// How long a spawned daemon has to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long dropping a client waits for a spawned daemon to exit before killing it.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The daemon answered with this Redox errno.
    Errno(Errno),
    /// The daemon is gone or the stream broke; the reason is the first failure seen.
    Disconnected(Arc<str>),
    /// The daemon answered with a reply of the wrong shape (a `Stat` to a read, say).
    Protocol(String),
}

impl CallError {
    /// The errno to report to a program: the daemon's, or `EIO` for transport failures.
    pub fn errno(&self) -> Errno {
        match self {
            CallError::Errno(errno) => *errno,
            CallError::Disconnected(_) | CallError::Protocol(_) => Errno::EIO,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Errno(errno) => write!(f, "{errno}"),
            CallError::Disconnected(why) => write!(f, "daemon disconnected: {why}"),
            CallError::Protocol(what) => write!(f, "protocol error: {what}"),
        }
    }
}

impl std::error::Error for CallError {}

impl From<Errno> for CallError {
    fn from(errno: Errno) -> Self {
        CallError::Errno(errno)
    }
}

/// Result of a client call.
pub type CallResult<T> = Result<T, CallError>;

/// An event the daemon posted: handle `fd` has `flags` (`EVENT_READ` 1, `EVENT_WRITE` 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The daemon's handle id.
    pub fd: Fd,
    /// The posted `EVENT_*` flags.
    pub flags: u64,
}

struct Inner {
    out: Mutex<Option<FrameWriter<Box<dyn Write + Send>>>>,
    calls: Arc<Calls>,
    next_tag: AtomicU64,
    events: Receiver<Event>,
    /// Where the reader thread posts events; the watchdog delivers what overflowed.
    event_path: Arc<Events>,
    /// The wire from the daemon, until the reader thread takes it.
    wire: SharedWire,
    /// The same pipe, for the watchdog to see the daemon hang up while nobody reads the wire.
    hangup_fd: Option<std::os::fd::OwnedFd>,
    peer: Peer,
    child: Mutex<Option<Child>>,
    reader: Arc<Mutex<wire::ReaderState>>,
    /// The payload region, if the daemon mapped the one offered.
    region: Option<Arc<Slots>>,
}

/// A connection to one scheme daemon. Cloning is cheap; clones share the connection and may
/// use another [`Caller`] identity ([`Client::with_caller`]).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    caller: Caller,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("scheme", &self.inner.peer.scheme)
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

/// A call that has been sent and not yet answered.
#[derive(Debug)]
pub struct PendingCall {
    tag: Tag,
    mailbox: Mailbox,
    client: Client,
}

impl Client {
    /// Spawns `command` with piped stdin/stdout (stderr inherited) and handshakes with it,
    /// expecting it to serve `scheme` ("" accepts any). The daemon is reaped when the last
    /// clone of the client is dropped.
    pub fn spawn(mut command: Command, scheme: &str) -> scheme_protocol::Result<Client> {
        let offer = region::offer(&mut command);
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("both were requested as pipes");
        };
        grow_pipe(&stdin);
        grow_pipe(&stdout);
        // The handshake runs on a helper thread so that a daemon that never answers (and never
        // exits) is killed after HANDSHAKE_TIMEOUT instead of hanging the caller.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let expected = scheme.to_owned();
        let poll_fd = stdout.as_fd().try_clone_to_owned().ok();
        let offer = offer.map(|slots| (slots, stdin.as_fd().try_clone_to_owned().ok()));
        std::thread::spawn(move || {
            let stdout = crate::busy_poll::BusyPoll::following_streams(stdout);
            let _ = tx.send(Self::connect_wire(stdout, poll_fd, stdin, &expected, offer));
        });
        let outcome = rx.recv_timeout(HANDSHAKE_TIMEOUT).unwrap_or_else(|_| {
            let _ = child.kill();
            Err(scheme_protocol::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
            )))
        });
        match outcome {
            Ok(client) => {
                *client.inner.child.lock().unwrap_or_else(PoisonError::into_inner) = Some(child);
                Ok(client)
            }
            Err(err) => {
                reap(child);
                Err(err)
            }
        }
    }

    /// Handshakes over an existing pair of pipes and starts the reply reader thread.
    pub fn connect(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
        scheme: &str,
    ) -> scheme_protocol::Result<Client> {
        let client = Self::connect_wire(reader, None, writer, scheme, None)?;
        client.inner.start_reader();
        Ok(client)
    }

    /// Handshakes; `poll_fd` (the reader's pipe) lets blocked callers read the wire
    /// themselves until a reader thread is needed (see `wire.rs`); `offer` is the payload
    /// region handed to the daemon, kept if it says it mapped it, with the daemon's pipe to
    /// wake it if frames go through the region's rings.
    fn connect_wire(
        reader: impl Read + Send + 'static,
        poll_fd: Option<std::os::fd::OwnedFd>,
        writer: impl Write + Send + 'static,
        scheme: &str,
        offer: Option<(Arc<Slots>, Option<std::os::fd::OwnedFd>)>,
    ) -> scheme_protocol::Result<Client> {
        let hangup_fd = poll_fd.as_ref().and_then(|fd| fd.try_clone().ok());
        let reader = crate::source::Source::new(Box::new(reader), poll_fd);
        let mut frames_in = FrameReader::new(BufReader::with_capacity(1 << 16, reader), MAX_FRAME);
        let mut frames_out: FrameWriter<Box<dyn Write + Send>> =
            FrameWriter::new(Box::new(writer), MAX_FRAME);
        let mut ours = hello(scheme, MAX_FRAME);
        ours.features |= FEATURE_COMPOUND | FEATURE_PATH_STEPS;
        if let Some((slots, pipe)) = &offer {
            ours.features |= FEATURE_REGION;
            let can_sleep = frames_in.get_ref().get_ref().pipe().is_some();
            if crate::ring::offered(slots.region().len(), pipe.is_some(), can_sleep) {
                ours.features |= FEATURE_RING;
            }
        }
        let peer = handshake(&mut frames_in, &mut frames_out, &ours)?;
        let (region, ring_pipe) = match offer {
            Some((slots, pipe)) if peer.features & FEATURE_REGION != 0 => (Some(slots), pipe),
            _ => (None, None),
        };
        let busy_poll = match (&region, ring_pipe) {
            (Some(slots), Some(pipe)) => {
                let region = slots.shared_region();
                let to = crate::ring::Direction::ToDaemon;
                crate::ring::agree(
                    peer.features,
                    &mut frames_in,
                    &mut frames_out,
                    &region,
                    to,
                    pipe,
                    true,
                )?
            }
            _ => crate::busy_poll::window(),
        };
        let (event_path, event_rx) = Events::new();
        let inner = Inner {
            out: Mutex::new(Some(frames_out)),
            calls: Arc::new(Calls::new()),
            next_tag: AtomicU64::new(1),
            events: event_rx,
            event_path: Arc::new(event_path),
            wire: Arc::new(Mutex::new(Some(WireIn { frames: frames_in, busy_poll }))),
            hangup_fd,
            peer,
            child: Mutex::new(None),
            reader: Arc::default(),
            region,
        };
        let inner = Arc::new(inner);
        let watched = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name(crate::thread_name(&inner.peer.scheme, "wire-watchdog"))
            .spawn(move || watch(&watched))?;
        Ok(Client { inner, caller: current_caller() })
    }

    /// The payload region's slots, if the daemon mapped the region offered at spawn.
    pub fn payload_slots(&self) -> Option<Arc<Slots>> {
        self.inner.region.clone()
    }

    /// Whether the daemon runs the compound calls (`StatPath`, `OpenStat`).
    pub fn compound(&self) -> bool {
        self.inner.peer.features & FEATURE_COMPOUND != 0
    }

    /// Whether the daemon runs the compound call `OnPath`.
    pub fn path_steps(&self) -> bool {
        self.inner.peer.features & FEATURE_PATH_STEPS != 0
    }

    /// Sets the limits on this connection's calls (for every clone).
    pub fn set_limits(&self, limits: Limits) {
        self.inner.calls.set_limits(limits);
    }

    /// A clone that makes its calls as `caller`.
    pub fn with_caller(&self, caller: Caller) -> Client {
        Client { inner: Arc::clone(&self.inner), caller }
    }

    /// The identity calls are made with (by default this process's pid, euid and egid).
    pub fn caller(&self) -> Caller {
        self.caller
    }

    /// The scheme the daemon announced.
    pub fn scheme(&self) -> &str {
        &self.inner.peer.scheme
    }

    /// The largest read or write payload one call can carry.
    pub fn max_payload(&self) -> usize {
        self.inner.peer.max_frame.saturating_sub(MAX_OVERHEAD)
    }

    /// Events the daemon posted, in order.
    pub fn events(&self) -> &Receiver<Event> {
        self.inner.start_reader();
        &self.inner.events
    }

    /// The OS process id of the spawned daemon, if this client spawned it.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.inner.child.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(Child::id)
    }

    /// Sends `call` and returns at once; the answer is collected from the [`PendingCall`].
    pub fn start(&self, call: Call) -> CallResult<PendingCall> {
        let mailbox = Mailbox::take();
        let tag = self.send_call(self.caller, call, Waiter::Thread(mailbox.sender()))?;
        Ok(PendingCall { tag, mailbox, client: self.clone() })
    }

    /// Sends `call` as `caller` and returns at once; `done` runs with the answer on the reply
    /// reader thread (or at once, if the call cannot be sent), so it must not block. Returns
    /// the tag, for [`Client::cancel`].
    pub fn submit(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        self.submit_with_reader(caller, call, done, true)
    }

    /// Like [`Client::submit`], but the reader thread, unless something needs it for good,
    /// hands the wire back once no call has been in flight for `READER_IDLE` (50 ms): for a
    /// caller that reads its answers itself ([`Client::submit_and_read`]) but not while calls
    /// keep coming faster than it can answer them one at a time.
    pub fn submit_for_now(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        self.submit_with_reader(caller, call, done, false)
    }

    fn submit_with_reader(&self, caller: Caller, call: Call, done: Completion, good: bool) -> Tag {
        self.inner.start_reader_for(good);
        let tag = self.next_tag();
        let waiter = Waiter::Completion(done);
        if let Err((err, waiter)) = self.send_with_tag(tag, caller, call, waiter) {
            waiter.finish(tag, Err(err));
        }
        tag
    }

    /// Like [`Client::submit`], but without a reader thread: if no thread is reading the wire,
    /// this one reads it until no call is in flight, running `done` (and the completions of
    /// calls other threads sent meanwhile) itself before it returns; if one is, that one runs
    /// `done`. So a lone call's answer goes from the wire to `done` without a thread hand-off,
    /// and calls from several threads still overlap. Only for daemons whose calls all answer
    /// at once: the caller is held until the wire is idle. A reader thread, once started (by
    /// [`Client::submit`] or [`Client::events`]), takes over for good.
    pub fn submit_and_read(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        let tag = self.next_tag();
        let waiter = Waiter::Completion(done);
        if let Err((err, waiter)) = self.send_with_tag(tag, caller, call, waiter) {
            waiter.finish(tag, Err(err));
        }
        wire::lead_until_idle(&self.inner.wire, &self.inner.calls, &self.inner.event_path);
        tag
    }

    /// Queues `call` with `done` to go out with the call this thread sends next with
    /// [`Client::submit_and_read`], in the same write, and be read with it: for a call just
    /// ahead of another (a seek before a read), so that the daemon wakes once for both and
    /// the two cost one round trip. Should nothing follow for a watchdog tick, the watchdog
    /// sends it and starts a reader thread: slower, never lost.
    pub fn submit_ahead(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        let tag = self.next_tag();
        let waiter = Waiter::Completion(done);
        let queue = |writer: &mut FrameWriter<_>, frame: &Frame| writer.queue_frame(frame);
        if let Err((err, waiter)) = self.put_with_tag(tag, caller, call, waiter, queue) {
            waiter.finish(tag, Err(err));
        }
        tag
    }

    /// Gives up on `tag`: the daemon side answers it `EINTR` at once; a daemon that ignores
    /// the cancel for [`Limits::cancel_grace`] gets it answered `EINTR` here.
    pub fn cancel(&self, tag: Tag) {
        self.inner.calls.cancelled(tag);
        let _ = self.send(&Frame::Cancel { tag });
    }

    /// Becomes disconnected (every `recv` fails) once the daemon is gone: at once if a thread
    /// is reading the wire, else within the watchdog's tick, when it finds the daemon's end of
    /// the pipe closed (so watching for the end needs no thread reading for good).
    pub fn closed(&self) -> Receiver<()> {
        self.inner.calls.closed.clone()
    }

    /// Traces every call from now on: one line per answer, and statistics for a summary.
    pub fn set_trace(&self, trace: Arc<Trace>) {
        let _ = self.inner.calls.trace.set(trace);
    }

    /// Closes the connection for every clone: the daemon sees end of file and exits, a spawned
    /// daemon is reaped (killed after a grace period), and outstanding calls fail.
    pub fn shutdown(&self) {
        self.inner.out.lock().unwrap_or_else(PoisonError::into_inner).take();
        let child = self.inner.child.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(child) = child {
            reap(child);
        }
        self.inner.calls.fail_all("client shut down");
    }

    fn next_tag(&self) -> Tag {
        Tag(self.inner.next_tag.fetch_add(1, Ordering::Relaxed))
    }

    fn send_call(&self, caller: Caller, call: Call, waiter: Waiter) -> CallResult<Tag> {
        let tag = self.next_tag();
        self.send_with_tag(tag, caller, call, waiter).map_err(|(err, _)| err)?;
        Ok(tag)
    }

    /// Registers `waiter` for `tag` and sends the call; gives the waiter back on failure.
    fn send_with_tag(
        &self,
        tag: Tag,
        caller: Caller,
        call: Call,
        waiter: Waiter,
    ) -> Result<(), (CallError, Waiter)> {
        let send = |writer: &mut FrameWriter<_>, frame: &Frame| writer.write_frame(frame);
        self.put_with_tag(tag, caller, call, waiter, send)
    }

    /// Registers `waiter` for `tag` and hands the call's frame to `put` (which writes or
    /// queues it); gives the waiter back on failure.
    fn put_with_tag(
        &self,
        tag: Tag,
        caller: Caller,
        call: Call,
        waiter: Waiter,
        put: impl FnOnce(&mut FrameWriter<Box<dyn Write + Send>>, &Frame) -> scheme_protocol::Result<()>,
    ) -> Result<(), (CallError, Waiter)> {
        self.inner.calls.register(tag, &call, waiter)?;
        debug!("{} tag={} {call}", self.scheme(), tag.0);
        if let Some(trace) = self.inner.calls.trace.get() {
            trace.started(tag, &call);
        }
        let frame = Frame::Call { tag, caller, call };
        match self.write_with(|writer| put(writer, &frame)) {
            Ok(()) => Ok(()),
            Err(err) => match self.inner.calls.unregister(tag) {
                Some(waiter) => Err((err, waiter)),
                None => Ok(()), // fail_all already answered it
            },
        }
    }

    /// Sends `call` and waits for its answer.
    pub fn call(&self, call: Call) -> CallResult<Reply> {
        self.start(call)?.wait()
    }

    /// Sends calls queued by [`Client::submit_ahead`] that no write followed since the last
    /// look (`seen`: the writer's count of writes then), and starts the reader thread for their
    /// answers, since no thread may be reading: the breach of `submit_ahead`'s contract costs
    /// speed, never an answer.
    fn send_stale_queue(&self, seen: &mut Option<u64>) {
        let out = self.inner.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(writer) = out.as_ref().filter(|writer| writer.has_queued()) else {
            *seen = None;
            return;
        };
        if *seen != Some(writer.writes()) {
            *seen = Some(writer.writes());
            return;
        }
        drop(out);
        // Expected now and then: a released handle's close is queued while a FUSE request
        // waits, and that request may make no call to this daemon.
        debug!("a call queued ahead of another waited alone for a watchdog tick; sent now");
        let _ = self.write_with(|writer| writer.write_queued());
        self.inner.start_reader();
    }

    fn send(&self, frame: &Frame) -> CallResult<()> {
        self.write_with(|writer| writer.write_frame(frame))
    }

    /// Writes with `write`; a failed write ends the stream (every call fails).
    fn write_with(
        &self,
        write: impl FnOnce(&mut FrameWriter<Box<dyn Write + Send>>) -> scheme_protocol::Result<()>,
    ) -> CallResult<()> {
        let mut out = self.inner.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(writer) = out.as_mut() else {
            return Err(CallError::Disconnected("client closed".into()));
        };
        match write(writer) {
            Ok(()) => Ok(()),
            Err(scheme_protocol::Error::Encode(what)) => Err(CallError::Protocol(what)),
            Err(err) => {
                let why = format!("cannot write to the daemon: {err}");
                error!("{why}");
                *out = None;
                drop(out);
                self.inner.calls.fail_all(&why);
                Err(CallError::Disconnected(why.into()))
            }
        }
    }

    /// `open(path, flags)`: flags are Redox `O_*` with the mode in the low 16 bits.
    pub fn open(&self, path: &str, flags: usize) -> CallResult<Fd> {
        value(self.call(Call::Open { path: path.into(), flags: flags as u64 })?).map(Fd)
    }

    /// `dup(fd, buf)` with a non-empty buffer, e.g. `"listen"`.
    pub fn dup(&self, fd: Fd, buf: &[u8]) -> CallResult<Fd> {
        value(self.call(Call::Dup { fd, buf: Bytes::from(buf) })?).map(Fd)
    }

    /// `read(fd)` of up to `len` bytes (capped at [`Client::max_payload`]).
    pub fn read(&self, fd: Fd, len: usize) -> CallResult<Vec<u8>> {
        data(self.call(Call::Read { fd, len: len.min(self.max_payload()) as u64 })?)
    }

    /// `write(fd, data)`; writes at most [`Client::max_payload`] bytes, returns the count.
    pub fn write(&self, fd: Fd, data: &[u8]) -> CallResult<usize> {
        let data = &data[..data.len().min(self.max_payload())];
        count(self.call(Call::Write { fd, data: Bytes::from(data) })?)
    }

    /// `lseek(fd, offset, whence)`; returns the new offset.
    pub fn seek(&self, fd: Fd, offset: i64, whence: usize) -> CallResult<u64> {
        value(self.call(Call::Lseek { fd, offset, whence: whence as u64 })?)
    }

    /// `fcntl(fd, cmd, arg)`.
    pub fn fcntl(&self, fd: Fd, cmd: usize, arg: usize) -> CallResult<u64> {
        value(self.call(Call::Fcntl { fd, cmd: cmd as u64, arg: arg as u64 })?)
    }

    /// `fevent(fd, flags)`: registers interest; returns the flags ready now.
    pub fn fevent(&self, fd: Fd, flags: u64) -> CallResult<u64> {
        value(self.call(Call::Fevent { fd, flags })?)
    }

    /// `fpath(fd)` into a 4096-byte buffer.
    pub fn fpath(&self, fd: Fd) -> CallResult<Vec<u8>> {
        data(self.call(Call::Fpath { fd, len: 4096 })?)
    }

    /// `fstat(fd)`.
    pub fn fstat(&self, fd: Fd) -> CallResult<Stat> {
        match self.call(Call::Fstat { fd })? {
            Reply::Stat(stat) => Ok(stat),
            other => Err(wrong_shape("fstat", &other)),
        }
    }

    /// `fstatvfs(fd)`.
    pub fn fstatvfs(&self, fd: Fd) -> CallResult<StatVfs> {
        match self.call(Call::Fstatvfs { fd })? {
            Reply::StatVfs(stat) => Ok(stat),
            other => Err(wrong_shape("fstatvfs", &other)),
        }
    }

    /// `fsync(fd)`.
    pub fn fsync(&self, fd: Fd) -> CallResult<()> {
        value(self.call(Call::Fsync { fd })?).map(drop)
    }

    /// `ftruncate(fd, len)`.
    pub fn ftruncate(&self, fd: Fd, len: u64) -> CallResult<()> {
        value(self.call(Call::Ftruncate { fd, len })?).map(drop)
    }

    /// `fchmod(fd, mode)`.
    pub fn fchmod(&self, fd: Fd, mode: u16) -> CallResult<()> {
        value(self.call(Call::Fchmod { fd, mode })?).map(drop)
    }

    /// `fchown(fd, uid, gid)`.
    pub fn fchown(&self, fd: Fd, uid: u32, gid: u32) -> CallResult<()> {
        value(self.call(Call::Fchown { fd, uid, gid })?).map(drop)
    }

    /// `futimens(fd, [atime, mtime])`.
    pub fn futimens(&self, fd: Fd, times: &[TimeSpec]) -> CallResult<()> {
        value(self.call(Call::Futimens { fd, times: times.to_vec() })?).map(drop)
    }

    /// `flink(fd, path)`: a hard link at the scheme-relative `path`.
    pub fn flink(&self, fd: Fd, path: &str) -> CallResult<()> {
        value(self.call(Call::Flink { fd, path: path.into() })?).map(drop)
    }

    /// `frename(fd, path)`.
    pub fn frename(&self, fd: Fd, path: &str) -> CallResult<()> {
        value(self.call(Call::Frename { fd, path: path.into() })?).map(drop)
    }

    /// `close(fd)`.
    pub fn close(&self, fd: Fd) -> CallResult<()> {
        value(self.call(Call::Close { fd })?).map(drop)
    }

    /// `unlink(path)`.
    pub fn unlink(&self, path: &str) -> CallResult<()> {
        value(self.call(Call::Unlink { path: path.into() })?).map(drop)
    }

    /// `rmdir(path)`.
    pub fn rmdir(&self, path: &str) -> CallResult<()> {
        value(self.call(Call::Rmdir { path: path.into() })?).map(drop)
    }

    /// `getdents(fd)`: up to `len` bytes of dirent records from cursor `opaque`; empty = end.
    pub fn getdents(&self, fd: Fd, len: usize, opaque: u64) -> CallResult<Vec<u8>> {
        let len = len.min(self.max_payload()) as u64;
        data(self.call(Call::Getdents { fd, len, opaque })?)
    }
}

impl PendingCall {
    /// The tag the call was sent with.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// Waits for the answer, reading the wire itself while nobody else does.
    pub fn wait(self) -> CallResult<Reply> {
        let inner = &self.client.inner;
        let own = (self.tag, &self.mailbox);
        let answer = loop {
            if let Some(answer) = wire::try_lead(&inner.wire, &inner.calls, &inner.event_path, own)
            {
                break answer;
            }
            if let Some(answer) = self.mailbox.wait(self.tag) {
                break answer;
            }
        };
        self.mailbox.give_back();
        answer
    }

    /// Waits at most `timeout`; gives the call back if it is still unanswered.
    pub fn wait_timeout(self, timeout: Duration) -> Result<CallResult<Reply>, PendingCall> {
        self.client.inner.start_reader();
        match self.mailbox.wait_until(self.tag, Instant::now() + timeout) {
            Some(answer) => {
                self.mailbox.give_back();
                Ok(answer)
            }
            None => Err(self),
        }
    }

    /// Gives up on the call (like a signal interrupting a syscall): the daemon side answers
    /// `EINTR` at once and discards the daemon's late answer. Returns what the call ended with,
    /// which is the real answer if it arrived first.
    pub fn cancel(self) -> CallResult<Reply> {
        self.client.cancel(self.tag);
        self.wait()
    }
}

impl Inner {
    /// Starts the reader thread for good: from now on it alone reads the wire.
    fn start_reader(&self) {
        self.start_reader_for(true);
    }

    /// Starts the reader thread unless it runs; `good`: it never hands the wire back.
    fn start_reader_for(&self, good: bool) {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        reader.for_good |= good;
        if reader.running {
            return;
        }
        if let Some(stopped) = reader.thread.take() {
            let _ = stopped.join(); // it handed the wire back and is returning
        }
        let (wire, calls, events, state) = (
            Arc::clone(&self.wire),
            Arc::clone(&self.calls),
            Arc::clone(&self.event_path),
            Arc::clone(&self.reader),
        );
        let spawned = std::thread::Builder::new()
            .name(crate::thread_name(&self.peer.scheme, "wire-replies"))
            .spawn(move || wire::read_while_needed(&wire, &calls, &events, &state));
        match spawned {
            Ok(thread) => {
                reader.thread = Some(thread);
                reader.running = true;
            }
            Err(err) => error!("cannot start the reply reader thread: {err}"),
        }
    }
}

impl Drop for Inner {
    /// Closes the daemon's stdin (it sees EOF and exits), reaps a spawned daemon (killing it
    /// after a grace period) and joins the reader thread once the daemon's stdout has closed.
    fn drop(&mut self) {
        self.out.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(child) = self.child.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            reap(child);
        }
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner).thread.take();
        if let Some(reader) = reader {
            let deadline = Instant::now() + Duration::from_millis(200);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if reader.is_finished() {
                let _ = reader.join();
            } else {
                debug!("reply reader still running (daemon stdout held open elsewhere); detached");
            }
        }
    }
}

/// Makes a pipe to or from the daemon hold a whole large frame, so that a 1 MiB read or write
/// crosses it in one step instead of sixteen 64 KiB ones (each a context switch when both
/// processes share a CPU). Best effort: unprivileged processes may be capped by
/// `/proc/sys/fs/pipe-max-size`, and then the pipe keeps its size.
fn grow_pipe(pipe: &impl std::os::fd::AsFd) {
    // Without CAP_SYS_RESOURCE the most is fs.pipe-max-size, 1 MiB by default.
    let grown = [PIPE_SIZE, 1 << 20].iter().find_map(|&size| {
        rustix::pipe::fcntl_setpipe_size(pipe, size).map_err(|err| (size, err)).ok()
    });
    if grown.is_none() {
        debug!("the pipe to the daemon stays at its default size");
    }
}

/// Waits up to [`EXIT_GRACE`] for `child` to exit, then kills it; always reaps it.
fn reap(mut child: Child) {
    let deadline = Instant::now() + EXIT_GRACE;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break,
        }
    }
    warn!("daemon {} did not exit after its stdin closed; killing it", child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// How often the watchdog looks for overdue calls.
const WATCH_TICK: Duration = Duration::from_millis(100);

/// The watchdog thread: fails overdue calls (see [`Limits`]) and cancels the timed-out ones in
/// the daemon, and ends the stream if the daemon hung up while nobody reads the wire; ends with
/// the client or its stream.
fn watch(inner: &Weak<Inner>) {
    let mut queue_seen = None;
    loop {
        std::thread::sleep(WATCH_TICK);
        let Some(inner) = inner.upgrade() else { return };
        inner.event_path.flush();
        let client = Client { inner, caller: current_caller() };
        client.send_stale_queue(&mut queue_seen);
        let inner = client.inner;
        if let Some(hangup) = &inner.hangup_fd {
            wire::notice_hangup(hangup, &inner.wire, &inner.calls, &inner.event_path);
        }
        if inner.calls.is_dead() {
            return;
        }
        let timed_out = inner.calls.expire(Instant::now());
        if timed_out.is_empty() {
            continue;
        }
        let client = Client { inner, caller: current_caller() };
        for tag in timed_out {
            let _ = client.send(&Frame::Cancel { tag });
        }
    }
}

fn value(reply: Reply) -> CallResult<u64> {
    match reply {
        Reply::Value(value) => Ok(value),
        other => Err(wrong_shape("a value", &other)),
    }
}

fn count(reply: Reply) -> CallResult<usize> {
    value(reply).map(|v| v as usize)
}

fn data(reply: Reply) -> CallResult<Vec<u8>> {
    match reply {
        Reply::Data(bytes) => Ok(bytes.into_vec()),
        other => Err(wrong_shape("data", &other)),
    }
}

fn wrong_shape(expected: &str, got: &Reply) -> CallError {
    CallError::Protocol(format!("expected {expected}, daemon answered {}", got.kind()))
}

/// This process as a caller: pid, effective uid and gid.
fn current_caller() -> Caller {
    Caller {
        pid: u64::from(std::process::id()),
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    }
}
