//! The daemon side's books: which calls the daemon holds as packets (and their buffers), which
//! tags are outstanding, which handles exist; turning calls into packets and the daemon's
//! replies back into checked frames ([`Shared`]), shared by the socket, its event posters and
//! the wire reader thread.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::Sender;
use log::{debug, error, warn};
use rustc_hash::FxHashMap;
use scheme_protocol::{Errno, Fd, Frame, Reply, Response, Tag};
use syscall::data::Packet;

use super::{Inbound, Writer};
use crate::bell::Bell;
use crate::compound::{self, After, Next as NextStep, Step};
use crate::packet::{self, Buffers};
use crate::region::Region;

/// Calls queued for or held by the daemon at once; a caller that sends more (ours stops at
/// 16384) gets `EAGAIN` for the excess, so the queue stays bounded.
const MAX_OUTSTANDING: usize = 1 << 16;

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

/// A request the daemon holds: its buffers live here until the daemon replies.
#[derive(Debug)]
pub(super) struct Pending {
    tag: Tag,
    call: &'static str,
    pub(super) buffers: Buffers,
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
pub(super) struct State {
    next_id: u64,
    pub(super) pending: FxHashMap<u64, Pending>,
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
pub(super) struct Shared {
    state: Mutex<State>,
    /// `None` once the socket is dropped: the caller side then sees end of stream.
    pub(super) out: Mutex<Option<Writer>>,
    wake: Sender<Inbound>,
    pub(super) wake_pending: AtomicBool,
    max_payload: usize,
    /// The payload region the caller side handed us, once both hellos agreed on it.
    region: Option<Arc<Region>>,
    /// The thread that reads the wire itself ([`super::SchemeSocket::read_here`]), if one does, and
    /// the bell [`Shared::wake`] rings for it when an event is posted on another thread.
    pub(super) server: std::sync::OnceLock<Server>,
}

/// A serving thread that reads the wire itself, and its bell.
#[derive(Debug)]
pub(super) struct Server {
    pub(super) thread: std::thread::ThreadId,
    pub(super) bell: Bell,
}

impl Shared {
    /// The books of a socket that writes to the caller side with `out`, and hands the daemon
    /// side what it makes itself (follow-up packets, orphans to close, wakes) through `wake`.
    pub(super) fn new(
        out: Writer,
        wake: Sender<Inbound>,
        max_payload: usize,
        region: Option<Arc<Region>>,
    ) -> Shared {
        Shared {
            state: Mutex::new(State { next_id: 1, ..State::default() }),
            out: Mutex::new(Some(out)),
            wake,
            wake_pending: AtomicBool::new(false),
            max_payload,
            region,
            server: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends frames to the caller side; a dead pipe is logged once, the daemon carries on
    /// until its next read reports the close.
    pub(super) fn send(&self, frames: &[Frame]) {
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
    pub(super) fn to_packet(&self, item: Inbound) -> Option<Packet> {
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

    pub(super) fn accept(&self, packet: &Packet) {
        if let Some(frame) = self.answer(packet) {
            self.send(&[frame]);
        }
    }

    /// Checks one packet written by the daemon and returns the frame it becomes, if any.
    pub(super) fn answer(&self, packet: &Packet) -> Option<Frame> {
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
    pub(super) fn event(&self, id: usize, flags: usize) -> Option<Frame> {
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

/// What a frame from the caller side becomes: a call, its tag queued, or the cancel of a
/// packet the daemon holds; `None` when it was answered here (a tag refused, a cancel of a call
/// not yet delivered or already answered) or ignored.
pub(super) fn inbound_of(shared: &Shared, frame: Frame) -> Option<Inbound> {
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
