//! wire -> Packet: [`SchemeSocket`], a file that behaves like the Redox kernel's `:name` scheme
//! socket. Reading it yields whole 56-byte `Packet`s whose `b`/`c`/`d` point at buffers in this
//! process that stay valid until the reply for that packet id is written; writing it takes
//! replies (result in `a`, any order) and event posts (`id = 0, a = SYS_FEVENT`). Everything the
//! daemon writes is checked before it becomes a wire reply.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::mem::size_of;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::{debug, error, warn};
use rustc_hash::FxHashMap;
use rustix::event::{poll, PollFd, PollFlags};
use scheme_protocol::{
    handshake, hello, Call, Errno, Fd, Frame, FrameReader, FrameWriter, Reply, Response, Tag,
    FEATURE_COMPOUND, FEATURE_PATH_STEPS, FEATURE_REGION, MAX_FRAME, MAX_OVERHEAD,
};
use syscall::data::Packet;

use crate::bell::Bell;
use crate::compound::{self, After, Next as NextStep, Step};
use crate::packet::{self, Buffers};
use crate::region::Region;
use crate::source::Source;

/// Calls queued for or held by the daemon at once; a caller that sends more (ours stops at
/// 16384) gets `EAGAIN` for the excess, so the queue stays bounded.
const MAX_OUTSTANDING: usize = 1 << 16;

/// Bytes read from the wire at once: several small frames arrive in one `read(2)`.
const READ_BUFFER: usize = 64 << 10;

/// Out-buffer bytes held for the daemon at once (zeroed memory that parked reads keep until
/// they are answered); a read that would pass it is answered `EAGAIN`.
const MAX_BUFFERED: usize = 256 << 20;

/// The out-buffer bytes a packet holds.
fn out_size(buffers: &Buffers) -> usize {
    match buffers {
        Buffers::Out(buf) => buf.len(),
        _ => 0,
    }
}

/// Bytes in one `Packet`.
pub const PACKET_SIZE: usize = size_of::<Packet>();

type Writer = FrameWriter<Box<dyn Write + Send>>;
type WireIn = FrameReader<BufReader<Source>>;
/// The wire before it is read: the frames, where the reader thread puts calls, the scheme name.
type Unread = (WireIn, Sender<Inbound>, String);

/// What the wire reader thread hands to the daemon side.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A call to turn into a packet.
    Call { tag: Tag, caller: scheme_protocol::Caller, call: Call },
    /// The caller cancelled the request behind this packet id.
    Cancel(u64),
    /// A cancelled open or dup produced this handle, or a compound call is done with it;
    /// close it in the daemon.
    CloseOrphan(usize),
    /// The next step of a compound call, already registered as pending.
    Packet(Packet),
    /// An event was posted: parked requests may now complete.
    Wake,
    /// The caller side is gone.
    Closed,
}

/// What [`SchemeSocket::next_packets`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// At least one packet was appended.
    Packets,
    /// No packet, but an event was posted since the last call.
    Woken,
    /// The caller side closed the pipe and every packet has been delivered.
    Closed,
}

/// A request the daemon holds: its buffers live here until the daemon replies.
#[derive(Debug)]
struct Pending {
    tag: Tag,
    call: &'static str,
    buffers: Buffers,
    cancelled: bool,
    /// Sent by the socket itself (closing an orphan); the reply goes nowhere.
    internal: bool,
    /// Where the packet stands in its (possibly compound) call.
    step: Step,
}

/// Where a tag is: still in the channel, or delivered as a packet.
#[derive(Debug, Clone, Copy)]
enum TagState {
    Queued,
    Delivered(u64),
}

/// The maps use a fast hash with no defence against chosen keys: packet ids are numbered here,
/// handle ids come from the daemon itself, and tags from the caller side (the kernel on Redox),
/// which this process trusts to run it.
#[derive(Debug, Default)]
struct State {
    next_id: u64,
    pending: FxHashMap<u64, Pending>,
    tags: FxHashMap<Tag, TagState>,
    /// Handle ids the daemon has handed out and not closed, with reference counts.
    handles: FxHashMap<usize, usize>,
    broken: bool,
    /// Bytes of out-buffers (reads, fpaths, getdents) held for delivered packets.
    buffered: usize,
}

impl State {
    /// Counts the out-buffers of packet `name` (for `tag`) as held, or refuses with EAGAIN
    /// (logged) past [`MAX_BUFFERED`] bytes.
    fn hold(&mut self, buffers: &Buffers, name: &str, tag: Tag) -> Result<(), Errno> {
        let size = out_size(buffers);
        if self.buffered + size > MAX_BUFFERED {
            warn!(
                "{MAX_BUFFERED} bytes of read buffers held; {name} (tag {}) answered EAGAIN",
                tag.0
            );
            return Err(Errno::EAGAIN);
        }
        self.buffered += size;
        Ok(())
    }
}

/// State shared by the socket, its event posters and the wire reader thread.
struct Shared {
    state: Mutex<State>,
    /// `None` once the socket is dropped: the caller side then sees end of stream.
    out: Mutex<Option<Writer>>,
    wake: Sender<Inbound>,
    wake_pending: AtomicBool,
    max_payload: usize,
    /// The payload region the caller side handed us, once both hellos agreed on it.
    region: Option<Arc<Region>>,
    /// The thread that reads the wire itself ([`SchemeSocket::read_here`]), if one does, and
    /// the bell [`Shared::wake`] rings for it when an event is posted on another thread.
    server: std::sync::OnceLock<Server>,
}

/// A serving thread that reads the wire itself, and its bell.
#[derive(Debug)]
struct Server {
    thread: std::thread::ThreadId,
    bell: Bell,
}

/// The daemon's end of the bridge: read packets from it, write replies and events to it.
pub struct SchemeSocket {
    shared: Arc<Shared>,
    inbound: Receiver<Inbound>,
    closed: bool,
    nonblocking: bool,
    /// How long [`SchemeSocket::next_packets`] watches for a call before it sleeps.
    busy_poll: std::time::Duration,
    /// The wire until the reader thread (or [`SchemeSocket::serve_inline`]) takes it.
    unread: Option<Unread>,
    /// The wire, read by the thread that takes the packets ([`SchemeSocket::read_here`]).
    here: Option<WireIn>,
    /// An event was posted while packets were taken: the next call reports [`Next::Woken`]
    /// first, so that the loop retries its parked requests even if those packets did not
    /// make it (queries, cancels).
    wake_owed: bool,
}

impl std::fmt::Debug for SchemeSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemeSocket").field("closed", &self.closed).finish_non_exhaustive()
    }
}

impl SchemeSocket {
    /// The socket for a daemon that speaks the wire on its stdin and stdout, as every daemon
    /// spawned by the bridge does. This is the one line that differs from Redox, where the
    /// daemon would `File::create(":name")`. Afterwards fd 1 points at stderr, so a stray
    /// `println!` cannot corrupt the wire.
    pub fn stdio(scheme: &str) -> io::Result<SchemeSocket> {
        let wire_out = File::from(rustix::io::dup(io::stdout())?);
        rustix::stdio::dup2_stdout(io::stderr())?;
        let wire_in = crate::busy_poll::BusyPoll::new(File::from(rustix::io::dup(io::stdin())?));
        let pipe = rustix::io::dup(io::stdin()).ok();
        Self::handshaken(wire_in, pipe, wire_out, scheme, crate::region::from_env())
            .map_err(io::Error::other)
    }

    /// Handshakes over `reader`/`writer` (the caller side must handshake too) and starts the
    /// thread that reads calls.
    pub fn new(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
        scheme: &str,
    ) -> scheme_protocol::Result<SchemeSocket> {
        Self::handshaken(reader, None, writer, scheme, None)
    }

    /// Like [`SchemeSocket::new`] over a pipe (anything `poll` and `read` work on), which
    /// the serving loops of parking schemes then read on their own thread, as they read a
    /// daemon's stdin ([`SchemeSocket::stdio`]), instead of through a reader thread.
    pub fn on_pipe(
        reader: impl Into<OwnedFd>,
        writer: impl Write + Send + 'static,
        scheme: &str,
    ) -> scheme_protocol::Result<SchemeSocket> {
        let reader: OwnedFd = reader.into();
        let pipe = reader.try_clone()?;
        let reader = crate::busy_poll::BusyPoll::new(File::from(reader));
        Self::handshaken(reader, Some(pipe), writer, scheme, None)
    }

    /// Like [`SchemeSocket::new`], also offering the payload `region` if there is one; `pipe`
    /// is the same pipe as `reader`, if it is one (to read it without waiting).
    fn handshaken(
        reader: impl Read + Send + 'static,
        pipe: Option<OwnedFd>,
        writer: impl Write + Send + 'static,
        scheme: &str,
        region: Option<Region>,
    ) -> scheme_protocol::Result<SchemeSocket> {
        let source = Source::new(Box::new(reader), pipe);
        let mut frames_in =
            FrameReader::new(BufReader::with_capacity(READ_BUFFER, source), MAX_FRAME);
        let mut frames_out: Writer = FrameWriter::new(Box::new(writer), MAX_FRAME);
        let mut ours = hello(scheme, MAX_FRAME);
        ours.features |= FEATURE_COMPOUND | FEATURE_PATH_STEPS;
        if region.is_some() {
            ours.features |= FEATURE_REGION;
        }
        let peer = handshake(&mut frames_in, &mut frames_out, &ours)?;
        let region = region.filter(|_| peer.features & FEATURE_REGION != 0).map(Arc::new);
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            state: Mutex::new(State { next_id: 1, ..State::default() }),
            out: Mutex::new(Some(frames_out)),
            wake: tx.clone(),
            wake_pending: AtomicBool::new(false),
            max_payload: peer.max_frame.saturating_sub(MAX_OVERHEAD),
            region,
            server: std::sync::OnceLock::new(),
        });
        Ok(SchemeSocket {
            shared,
            inbound: rx,
            closed: false,
            nonblocking: false,
            busy_poll: crate::busy_poll::window(),
            unread: Some((frames_in, tx, scheme.to_owned())),
            here: None,
            wake_owed: false,
        })
    }

    /// Starts the wire reader thread, once, before the first packet is taken.
    fn start_reader(&mut self) -> io::Result<()> {
        let Some((frames_in, tx, scheme)) = self.unread.take() else { return Ok(()) };
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name(crate::thread_name(&scheme, "wire-in"))
            .spawn(move || read_calls(frames_in, &shared, &tx))?;
        Ok(())
    }

    /// Serves every call on this thread, in order, with `handle` answering each packet at
    /// once (schemes that never park a request): no reader thread and no hand-off between
    /// threads per call. A cancel always finds its call answered already. Returns `false`,
    /// doing nothing, if packets were already taken through the reader thread.
    pub(crate) fn serve_inline(
        &mut self,
        mut handle: impl FnMut(&SchemeSocket, &mut Packet),
    ) -> io::Result<bool> {
        let Some((mut frames, _, _)) = self.unread.take() else { return Ok(false) };
        loop {
            match frames.read_frame() {
                Ok(frame) => {
                    // A cancel finds its call answered: nothing to tell the scheme.
                    let Some(call @ Inbound::Call { .. }) = inbound_of(&self.shared, frame) else {
                        continue;
                    };
                    if let Some(mut packet) = self.shared.to_packet(call) {
                        handle(self, &mut packet);
                        self.write_packet(&packet);
                        self.serve_follow_ups(&mut handle);
                    }
                }
                Err(scheme_protocol::Error::Closed) => break,
                Err(err) => {
                    error!("caller side sent a bad stream, closing: {err}");
                    break;
                }
            }
        }
        self.closed = true;
        Ok(true)
    }

    /// Runs the packets answering a packet made (a compound call's next step, its close)
    /// before the next frame is read, so they keep their place in the call order.
    fn serve_follow_ups(&self, handle: &mut impl FnMut(&SchemeSocket, &mut Packet)) {
        while let Ok(item) = self.inbound.try_recv() {
            if let Some(mut packet) = self.shared.to_packet(item) {
                handle(self, &mut packet);
                self.write_packet(&packet);
            }
        }
    }

    /// A handle for posting events from anywhere (another thread, a timer).
    pub fn event_poster(&self) -> EventPoster {
        EventPoster { shared: Arc::clone(&self.shared) }
    }

    /// Like `O_NONBLOCK` on the Redox socket: `read` fails with `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&mut self, nonblocking: bool) {
        self.nonblocking = nonblocking;
    }

    /// Appends up to `max` packets to `out`, waiting for the first one unless non-blocking.
    /// Reports [`Next::Woken`] when an event was posted and no packet is ready, so loops that
    /// park requests can retry them; an event posted while packets were taken is reported by
    /// the next call, before any more packets.
    pub fn next_packets(&mut self, out: &mut Vec<Packet>, max: usize) -> io::Result<Next> {
        if std::mem::take(&mut self.wake_owed) {
            return Ok(Next::Woken);
        }
        if max == 0 {
            return Ok(Next::Packets);
        }
        if self.here.is_some() {
            return self.next_packets_here(out, max);
        }
        self.start_reader()?;
        let start = out.len();
        while out.len() - start < max {
            let item = if out.len() > start || self.nonblocking {
                match self.inbound.try_recv() {
                    Ok(item) => item,
                    Err(TryRecvError::Empty) if out.len() > start => break,
                    Err(TryRecvError::Empty) => return Err(io::ErrorKind::WouldBlock.into()),
                    Err(TryRecvError::Disconnected) => Inbound::Closed,
                }
            } else if self.closed {
                return Ok(Next::Closed);
            } else {
                self.wait_inbound()
            };
            match item {
                Inbound::Wake => {
                    self.shared.wake_pending.store(false, Ordering::SeqCst);
                    if out.len() == start {
                        return Ok(Next::Woken);
                    }
                    self.wake_owed = true;
                }
                Inbound::Closed => {
                    self.closed = true;
                    if out.len() == start {
                        return Ok(Next::Closed);
                    }
                    break;
                }
                other => out.extend(self.shared.to_packet(other)),
            }
        }
        Ok(Next::Packets)
    }

    /// The next item from the wire reader thread, watched for the busy-poll window (yielding
    /// between looks) before this thread sleeps: a sleeping thread on an idle CPU costs a
    /// wake-up through the hypervisor, as a pipe read does (see `busy_poll`).
    fn wait_inbound(&self) -> Inbound {
        let found = crate::busy_poll::watch(self.busy_poll, || match self.inbound.try_recv() {
            Ok(item) => Some(item),
            Err(TryRecvError::Disconnected) => Some(Inbound::Closed),
            Err(TryRecvError::Empty) => None,
        });
        found.unwrap_or_else(|| self.inbound.recv().unwrap_or(Inbound::Closed))
    }

    /// Makes the thread that takes the packets read the wire itself from now on, instead of a
    /// reader thread handing it each call (a thread switch less per call): for a loop in which
    /// one thread takes every packet and never blocks in the scheme, as [`crate::serve_block`]'s.
    /// A cancel is then answered when that thread reads it, not at once (the caller side answers
    /// `EINTR` itself after its grace period if the thread is stuck). Returns `false`, changing
    /// nothing, if the wire is not a pipe this thread can wait on beside a bell (a socket made
    /// with [`SchemeSocket::new`]), if no bell could be made, or if packets were already taken.
    pub(crate) fn read_here(&mut self) -> bool {
        let on_pipe =
            self.unread.as_ref().is_some_and(|(frames, _, _)| wire_pipe(frames).is_some());
        if !on_pipe {
            return false;
        }
        let Some(bell) = Bell::new("waking a parking daemon; it keeps a reader thread") else {
            return false;
        };
        let _ = self.shared.server.set(Server { thread: std::thread::current().id(), bell });
        // Pairs with the fence in `Shared::wake`: a post that raced this either finds the
        // server (and rings) or put its wake in the channel before this thread's first look.
        fence(Ordering::SeqCst);
        self.here = self.unread.take().map(|(frames, _, _)| frames);
        true
    }

    /// [`SchemeSocket::next_packets`] for a socket whose serving thread reads the wire itself:
    /// takes what the channel and the pipe hold, watches both for the busy-poll window, then
    /// sleeps in `poll` on the pipe and the bell.
    fn next_packets_here(&mut self, out: &mut Vec<Packet>, max: usize) -> io::Result<Next> {
        let (start, limit) = (out.len(), out.len() + max);
        let mut woken = false;
        loop {
            if self.take_here(out, limit, &mut woken) {
                break;
            }
            if self.nonblocking {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let window = self.busy_poll;
            let took = crate::busy_poll::watch(window, || {
                self.take_here(out, limit, &mut woken).then_some(())
            });
            if took.is_none() {
                self.sleep_here();
            } else {
                break;
            }
        }
        if out.len() > start {
            self.wake_owed = woken;
            Ok(Next::Packets)
        } else if woken {
            Ok(Next::Woken)
        } else {
            Ok(Next::Closed)
        }
    }

    /// Takes what is there without waiting: follow-up packets, orphans to close and wakes from
    /// the channel, then calls and cancels from the pipe, up to `limit` packets in `out`.
    /// Whether anything came of it: a packet, a wake, or the end of the wire.
    fn take_here(&mut self, out: &mut Vec<Packet>, limit: usize, woken: &mut bool) -> bool {
        let before = out.len();
        while out.len() < limit {
            match self.inbound.try_recv() {
                Ok(Inbound::Wake) => {
                    self.shared.wake_pending.store(false, Ordering::SeqCst);
                    *woken = true;
                }
                Ok(Inbound::Closed) | Err(TryRecvError::Disconnected) => self.closed = true,
                Ok(item) => out.extend(self.shared.to_packet(item)),
                Err(TryRecvError::Empty) => break,
            }
        }
        if !self.closed {
            self.read_frames_now(out, limit);
        }
        out.len() > before || *woken || self.closed
    }

    /// Turns the whole frames the pipe holds now into packets, without waiting.
    fn read_frames_now(&mut self, out: &mut Vec<Packet>, limit: usize) {
        let Some(frames) = self.here.as_mut() else { return };
        frames.get_mut().get_mut().set_nowait(true);
        while out.len() < limit {
            match frames.read_frame() {
                Ok(frame) => {
                    let item = inbound_of(&self.shared, frame);
                    out.extend(item.and_then(|item| self.shared.to_packet(item)));
                }
                Err(scheme_protocol::Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                    break;
                }
                Err(err) => {
                    if !matches!(err, scheme_protocol::Error::Closed) {
                        error!("caller side sent a bad stream, closing: {err}");
                    }
                    self.closed = true;
                    break;
                }
            }
        }
        frames.get_mut().get_mut().set_nowait(false);
    }

    /// Sleeps until the wire is readable (or hung up) or the bell rings.
    fn sleep_here(&self) {
        let (Some(frames), Some(Server { bell, .. })) =
            (self.here.as_ref(), self.shared.server.get())
        else {
            return;
        };
        let Some(pipe) = wire_pipe(frames) else { return };
        let mut fds = [PollFd::new(&pipe, PollFlags::IN), PollFd::new(bell, PollFlags::IN)];
        // EINTR: the caller looks again.
        if poll(&mut fds, None).is_ok() && !fds[1].revents().is_empty() {
            bell.hush();
        }
    }

    /// Runs `fill` on the out-buffer of a pending request (a read, fpath or getdents packet),
    /// the memory its `c`/`d` point at, without raw pointers. `None` if `id` has none.
    pub fn with_out_buffer<T>(&self, id: u64, fill: impl FnOnce(&mut [u8]) -> T) -> Option<T> {
        let mut state = self.shared.state();
        match state.pending.get_mut(&id).map(|pending| &mut pending.buffers) {
            Some(Buffers::Out(buf)) => Some(fill(buf)),
            _ => None,
        }
    }

    /// Takes one reply or event post written by the daemon.
    pub fn write_packet(&self, packet: &Packet) {
        self.shared.accept(packet);
    }

    /// Takes several replies at once and sends them in one write.
    pub fn write_packets(&self, packets: &[Packet]) {
        let frames: Vec<Frame> = packets.iter().filter_map(|p| self.shared.answer(p)).collect();
        self.shared.send(&frames);
    }
}

impl Read for SchemeSocket {
    /// Reads as many whole packets as fit (at least one 56-byte slot is required); 0 = the
    /// caller side closed the pipe (on Redox: the scheme is being unmounted).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let slots = buf.len() / PACKET_SIZE;
        if slots == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer under 56 bytes"));
        }
        let mut packets = Vec::with_capacity(slots);
        loop {
            match self.next_packets(&mut packets, slots)? {
                Next::Packets => break,
                Next::Woken => continue,
                Next::Closed => return Ok(0),
            }
        }
        for (slot, packet) in buf.chunks_exact_mut(PACKET_SIZE).zip(&packets) {
            slot.copy_from_slice(packet);
        }
        Ok(packets.len() * PACKET_SIZE)
    }
}

impl Write for SchemeSocket {
    /// Takes whole packets: replies and `SYS_FEVENT` posts. A trailing partial packet is left.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() < PACKET_SIZE {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer under 56 bytes"));
        }
        let packets: Vec<Packet> = buf.chunks_exact(PACKET_SIZE).map(packet_from_bytes).collect();
        self.write_packets(&packets);
        Ok(packets.len() * PACKET_SIZE)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SchemeSocket {
    /// Closes the wire towards the caller side, which then fails whatever is outstanding,
    /// as it would if the daemon process exited.
    fn drop(&mut self) {
        self.shared.out.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

fn packet_from_bytes(bytes: &[u8]) -> Packet {
    let mut packet = Packet::default();
    packet.copy_from_slice(bytes);
    packet
}

/// Posts events for handles, from any thread. Cheap to clone.
#[derive(Clone)]
pub struct EventPoster {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventPoster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventPoster")
    }
}

impl EventPoster {
    /// Tells the caller side that handle `id` has `flags` (`EVENT_READ`, `EVENT_WRITE`), exactly
    /// like writing `Packet { id: 0, a: SYS_FEVENT, b: id, c: flags }` to the socket.
    pub fn post(&self, id: usize, flags: syscall::EventFlags) {
        if let Some(frame) = self.shared.event(id, flags.bits()) {
            self.shared.send(&[frame]);
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends frames to the caller side; a dead pipe is logged once, the daemon carries on
    /// until its next read reports the close.
    fn send(&self, frames: &[Frame]) {
        if frames.is_empty() {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(writer) = out.as_mut() else { return };
        if let Err(err) = writer.write_frames(frames) {
            drop(out);
            let mut state = self.state();
            if !state.broken {
                state.broken = true;
                error!("cannot write to the caller side: {err}");
            }
        }
    }

    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            let _ = self.wake.send(Inbound::Wake);
            // Pairs with the fence in `SchemeSocket::read_here`. The serving thread posting
            // itself (chan, inside `handle`) looks at the channel before it sleeps anyway.
            fence(Ordering::SeqCst);
            let server = self.server.get();
            if let Some(server) = server.filter(|s| s.thread != std::thread::current().id()) {
                server.bell.ring();
            }
        }
    }

    /// Turns one inbound item into the packet the daemon reads, registering its buffers.
    fn to_packet(&self, item: Inbound) -> Option<Packet> {
        let mut state = self.state();
        let id = state.next_id;
        let (packet, pending) = match item {
            Inbound::Call { tag, caller, call } => {
                if !matches!(state.tags.get(&tag), Some(TagState::Queued)) {
                    return None; // cancelled before the daemon saw it
                }
                let built = compound::start(call, caller).and_then(|(call, step)| {
                    let name = call.name();
                    let region = self.region.as_ref();
                    let (packet, buffers) =
                        packet::from_call(id, caller, call, self.max_payload, region)?;
                    state.hold(&buffers, name, tag)?;
                    Ok((packet, buffers, name, step))
                });
                let (packet, buffers, name, step) = match built {
                    Ok(built) => built,
                    Err(errno) => {
                        state.tags.remove(&tag);
                        drop(state);
                        self.send(&[Frame::Reply { tag, response: Err(errno) }]);
                        return None;
                    }
                };
                state.tags.insert(tag, TagState::Delivered(id));
                let pending =
                    Pending { tag, call: name, buffers, cancelled: false, internal: false, step };
                (packet, pending)
            }
            Inbound::CloseOrphan(fd) => {
                let packet = packet::close(id, fd);
                let pending = Pending {
                    tag: Tag(0),
                    call: "close",
                    buffers: Buffers::None,
                    cancelled: false,
                    internal: true,
                    step: Step::Answer,
                };
                (packet, pending)
            }
            Inbound::Cancel(target) => {
                let still_held = state.pending.get(&target).is_some_and(|p| !p.internal);
                return still_held.then(|| packet::cancel(target));
            }
            Inbound::Packet(packet) => return Some(packet),
            Inbound::Wake | Inbound::Closed => return None,
        };
        state.next_id += 1;
        state.pending.insert(id, pending);
        Some(packet)
    }

    fn accept(&self, packet: &Packet) {
        if let Some(frame) = self.answer(packet) {
            self.send(&[frame]);
        }
    }

    /// Checks one packet written by the daemon and returns the frame it becomes, if any.
    fn answer(&self, packet: &Packet) -> Option<Frame> {
        if packet.id == 0 {
            if packet.a == syscall::number::SYS_FEVENT {
                return self.event(packet.b, packet.c);
            }
            debug!("ignoring id-0 packet with a={:#x} (answer to a kernel message)", packet.a);
            return None;
        }
        let mut state = self.state();
        let Some(pending) = state.pending.remove(&packet.id) else {
            warn!("daemon replied to unknown packet id {} (a={:#x}); dropped", packet.id, packet.a);
            return None;
        };
        state.buffered -= out_size(&pending.buffers);
        let response = match packet::response(pending.call, packet, pending.buffers) {
            // The kernel's rule: EINTR is only an answer to a cancel.
            Err(Errno::EINTR) if !pending.cancelled && !pending.internal => {
                warn!("{}: daemon answered EINTR without a cancel; EIO", pending.call);
                Err(Errno::EIO)
            }
            response => response,
        };
        self.track_handles(&mut state, pending.call, packet.b, &response);
        if pending.internal {
            return None;
        }
        let response = match compound::after(pending.step, response, pending.cancelled) {
            After::Next(next) => return self.follow_up(&mut state, pending.tag, next),
            After::Answer { response, close } => {
                if let Some(fd) = close {
                    let _ = self.wake.send(Inbound::CloseOrphan(fd as usize));
                }
                response
            }
        };
        state.tags.remove(&pending.tag);
        if pending.cancelled {
            if let (true, Ok(Reply::Value(fd))) = (packet::creates_handle(pending.call), &response)
            {
                debug!("closing handle {fd} opened by cancelled tag {}", pending.tag.0);
                let _ = self.wake.send(Inbound::CloseOrphan(*fd as usize));
            }
            return None;
        }
        Some(Frame::Reply { tag: pending.tag, response })
    }

    /// Registers a compound call's next step under the same tag and queues its packet for the
    /// daemon; the caller is answered when the last step is.
    fn follow_up(&self, state: &mut State, tag: Tag, next: NextStep) -> Option<Frame> {
        let id = state.next_id;
        let name = next.call.name();
        let built = packet::from_call(id, next.caller, next.call, self.max_payload, None);
        let built = built.and_then(|(packet, buffers)| {
            state.hold(&buffers, name, tag)?;
            Ok((packet, buffers))
        });
        let (packet, buffers) = match built {
            Ok(built) => built,
            Err(errno) => {
                if let Some(fd) = next.step.handle() {
                    let _ = self.wake.send(Inbound::CloseOrphan(fd as usize));
                }
                state.tags.remove(&tag);
                return Some(Frame::Reply { tag, response: Err(errno) });
            }
        };
        state.next_id += 1;
        let pending = Pending {
            tag,
            call: name,
            buffers,
            cancelled: false,
            internal: false,
            step: next.step,
        };
        state.pending.insert(id, pending);
        state.tags.insert(tag, TagState::Delivered(id));
        let _ = self.wake.send(Inbound::Packet(packet));
        None
    }

    /// Keeps the set of live handle ids, so events for unknown handles can be refused.
    fn track_handles(&self, state: &mut State, call: &str, fd: usize, response: &Response) {
        match (call, response) {
            ("open" | "dup", Ok(Reply::Value(id))) => {
                *state.handles.entry(*id as usize).or_default() += 1;
            }
            ("close", Ok(_)) => {
                if let Some(count) = state.handles.get_mut(&fd) {
                    *count -= 1;
                    if *count == 0 {
                        state.handles.remove(&fd);
                    }
                }
            }
            _ => {}
        }
    }

    /// The frame for an event post, or `None` (logged) if the handle is unknown.
    fn event(&self, id: usize, flags: usize) -> Option<Frame> {
        let known = self.state().handles.contains_key(&id);
        self.wake();
        if !known {
            warn!("daemon posted an event for unknown handle {id}; dropped");
            return None;
        }
        Some(Frame::Event { fd: Fd(id as u64), flags: flags as u64 })
    }

    /// The caller gave up on `tag`: answer EINTR now and keep the buffers until the daemon
    /// replies. Returns the packet id to tell the daemon about, if it already has the packet.
    fn cancel(&self, tag: Tag) -> Option<u64> {
        let mut state = self.state();
        let delivered = match state.tags.get(&tag).copied() {
            None => return None, // already answered
            Some(TagState::Queued) => {
                state.tags.remove(&tag);
                None
            }
            Some(TagState::Delivered(id)) => {
                state.tags.remove(&tag);
                if let Some(pending) = state.pending.get_mut(&id) {
                    pending.cancelled = true;
                }
                Some(id)
            }
        };
        drop(state);
        self.send(&[Frame::Reply { tag, response: Err(Errno::EINTR) }]);
        delivered
    }

    /// Registers a call's tag as queued; refuses a tag that is still outstanding.
    fn queue_tag(&self, tag: Tag) -> Result<(), Errno> {
        let mut state = self.state();
        if state.tags.contains_key(&tag) {
            warn!("caller reused outstanding tag {}; answered EINVAL", tag.0);
            return Err(Errno::EINVAL);
        }
        if state.tags.len() >= MAX_OUTSTANDING {
            warn!(
                "{MAX_OUTSTANDING} calls outstanding in the daemon; tag {} answered EAGAIN",
                tag.0
            );
            return Err(Errno::EAGAIN);
        }
        state.tags.insert(tag, TagState::Queued);
        Ok(())
    }
}

/// The wire reader thread: calls go to the daemon, cancels are answered here at once.
fn read_calls(mut frames: WireIn, shared: &Shared, tx: &Sender<Inbound>) {
    loop {
        let frame = match frames.read_frame() {
            Ok(frame) => frame,
            Err(scheme_protocol::Error::Closed) => break,
            Err(err) => {
                error!("caller side sent a bad stream, closing: {err}");
                break;
            }
        };
        let Some(item) = inbound_of(shared, frame) else { continue };
        if tx.send(item).is_err() {
            return; // the socket is gone
        }
    }
    let _ = tx.send(Inbound::Closed);
}

/// What a frame from the caller side becomes: a call, its tag queued, or the cancel of a
/// packet the daemon holds; `None` when it was answered here (a tag refused, a cancel of a call
/// not yet delivered or already answered) or ignored.
fn inbound_of(shared: &Shared, frame: Frame) -> Option<Inbound> {
    match frame {
        Frame::Call { tag, caller, call } => match shared.queue_tag(tag) {
            Ok(()) => Some(Inbound::Call { tag, caller, call }),
            Err(errno) => {
                shared.send(&[Frame::Reply { tag, response: Err(errno) }]);
                None
            }
        },
        Frame::Cancel { tag } => shared.cancel(tag).map(Inbound::Cancel),
        other => {
            warn!("caller side sent a {} frame; ignored", other.kind());
            None
        }
    }
}

/// The pipe under a wire's frame reader, if it is one.
fn wire_pipe(frames: &WireIn) -> Option<BorrowedFd<'_>> {
    frames.get_ref().get_ref().pipe()
}
