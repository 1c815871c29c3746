//! wire -> Packet: [`SchemeSocket`], a file that behaves like the Redox kernel's `:name` scheme
//! socket. Reading it yields whole 56-byte `Packet`s whose `b`/`c`/`d` point at buffers in this
//! process that stay valid until the reply for that packet id is written; writing it takes
//! replies (result in `a`, any order) and event posts (`id = 0, a = SYS_FEVENT`). Everything the
//! daemon writes is checked before it becomes a wire reply.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::mem::size_of;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::error;
use scheme_protocol::{
    handshake, hello, Call, Frame, FrameReader, FrameWriter, Tag, FEATURE_COMPOUND,
    FEATURE_PATH_STEPS, FEATURE_REGION, FEATURE_RING, MAX_FRAME, MAX_OVERHEAD,
};
use syscall::data::Packet;

use crate::packet::Buffers;
use crate::region::Region;
use crate::source::Source;

mod here;
mod shared;

use shared::{inbound_of, Shared};

/// Bytes read from the wire at once: several small frames arrive in one `read(2)`.
const READ_BUFFER: usize = 64 << 10;

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
        let wire_out = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        let ring_pipe = io::stdout().as_fd().try_clone_to_owned().ok();
        rustix::stdio::dup2_stdout(io::stderr())?;
        let wire_in =
            crate::busy_poll::BusyPoll::new(File::from(io::stdin().as_fd().try_clone_to_owned()?));
        let pipe = io::stdin().as_fd().try_clone_to_owned().ok();
        let region = crate::region::from_env().map(|region| (region, ring_pipe));
        Self::handshaken(wire_in, pipe, wire_out, scheme, region).map_err(io::Error::other)
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

    /// Like [`SchemeSocket::new`], also offering the payload `region` if there is one, with
    /// the frame rings at its end if it has them and the caller's pipe to wake it is given;
    /// `pipe` is the same pipe as `reader`, if it is one (to read it without waiting).
    fn handshaken(
        reader: impl Read + Send + 'static,
        pipe: Option<OwnedFd>,
        writer: impl Write + Send + 'static,
        scheme: &str,
        region: Option<(Region, Option<OwnedFd>)>,
    ) -> scheme_protocol::Result<SchemeSocket> {
        let source = Source::new(Box::new(reader), pipe);
        let mut frames_in =
            FrameReader::new(BufReader::with_capacity(READ_BUFFER, source), MAX_FRAME);
        let mut frames_out: Writer = FrameWriter::new(Box::new(writer), MAX_FRAME);
        let mut ours = hello(scheme, MAX_FRAME);
        ours.features |= FEATURE_COMPOUND | FEATURE_PATH_STEPS;
        if let Some((region, ring_pipe)) = &region {
            ours.features |= FEATURE_REGION;
            let can_sleep = frames_in.get_ref().get_ref().pipe().is_some();
            if crate::ring::offered(region.len(), ring_pipe.is_some(), can_sleep) {
                ours.features |= FEATURE_RING;
            }
        }
        let peer = handshake(&mut frames_in, &mut frames_out, &ours)?;
        let (region, ring_pipe) = match region {
            Some((region, pipe)) if peer.features & FEATURE_REGION != 0 => {
                (Some(Arc::new(region)), pipe)
            }
            _ => (None, None),
        };
        let busy_poll = match (&region, ring_pipe) {
            (Some(region), Some(pipe)) => {
                let to = crate::ring::Direction::ToCaller;
                crate::ring::agree(
                    peer.features,
                    &mut frames_in,
                    &mut frames_out,
                    region,
                    to,
                    pipe,
                    false,
                )?
            }
            _ => crate::busy_poll::window(),
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let max_payload = peer.max_frame.saturating_sub(MAX_OVERHEAD);
        let shared = Arc::new(Shared::new(frames_out, tx.clone(), max_payload, region));
        Ok(SchemeSocket {
            shared,
            inbound: rx,
            closed: false,
            nonblocking: false,
            busy_poll,
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
