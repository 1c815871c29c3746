//! The wire from the daemon -> answers and events, read by whoever needs them. A thread
//! blocked in a call reads the wire itself while nobody else does (the leader), handing other
//! threads' answers on, so a lone blocking call costs what a raw pipe round trip costs: no
//! hand-off to a reader thread and back. Once anything needs the wire read without a caller
//! waiting (completions, events), a reader thread takes it over for good, and blocked callers
//! just wait for their answer (the followers); one started by `Client::submit_for_now` hands
//! it back after [`READER_IDLE`] with no call in flight ([`read_while_needed`]). Until then
//! the watchdog looks for the daemon hanging up ([`notice_hangup`]), so that the end of the
//! stream is seen while no call waits. Calls with completions sent by
//! `Client::submit_and_read` are read the same way: the thread that sent one reads the wire,
//! if nobody does, until no call is in flight ([`lead_until_idle`]). A leader reads without
//! waiting ([`Source`]): it takes what the pipe holds, keeping what arrived of a frame, and
//! only when the pipe holds nothing does it sleep, in a `poll` of the pipe and the bell, so a
//! daemon that stalls in the middle of a frame cannot keep it from hearing the watchdog.

use std::io::{BufReader, ErrorKind, Read};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::Duration;

use log::{error, warn};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use scheme_protocol::{Frame, FrameReader, Reply, Tag};

use super::calls::Calls;
use super::events::Events;
use super::mailbox::{Mailbox, Wake};
use super::{CallError, CallResult, Event};
use crate::source::Source;

/// How long a leader waits for the wire before looking for an answer given by the watchdog,
/// when there is no bell to wake it (`Calls::bell`).
const LEAD_TICK: Duration = Duration::from_millis(100);

/// The daemon's side of the pipe pair, framed.
pub(super) struct WireIn {
    pub(super) frames: FrameReader<BufReader<Source>>,
    /// How long a leader busy-polls the pipe before it blocks.
    pub(super) busy_poll: Duration,
}

/// What reading the wire without waiting came to.
enum Taken {
    /// The answer to the reader's own call.
    Own(CallResult<Reply>),
    /// A frame for someone else, handed on (or dropped).
    Handled,
    /// No whole frame (what arrived of one is kept for the next read).
    Nothing,
}

impl WireIn {
    /// The pipe, for waiting with a timeout; `None`: only a reader thread may read the wire.
    fn pipe(&self) -> Option<BorrowedFd<'_>> {
        self.frames.get_ref().get_ref().pipe()
    }

    /// Gets ready to sleep on the pipe: `false` if the ring holds bytes (or its end) already.
    fn arm(&mut self) -> bool {
        self.frames.get_mut().get_mut().arm()
    }

    /// Whether bytes of the next frame are buffered.
    fn buffered(&self) -> bool {
        !self.frames.get_ref().buffer().is_empty()
    }

    /// Reads a frame without waiting, busy-polling that way for the window while there is
    /// none; `Err` with the reason when the stream is over.
    fn next_frame(
        &mut self,
        calls: &Calls,
        events: &Events,
        own: Option<Tag>,
    ) -> Result<Taken, String> {
        let taken = self.take_frame(calls, events, own)?;
        if !matches!(taken, Taken::Nothing) {
            return Ok(taken);
        }
        let window = self.busy_poll;
        crate::busy_poll::watch(window, || match self.take_frame(calls, events, own) {
            Ok(Taken::Nothing) => None,
            other => Some(other),
        })
        .unwrap_or(Ok(Taken::Nothing))
    }

    /// Reads a frame if the pipe holds the rest of it, without waiting.
    fn take_frame(
        &mut self,
        calls: &Calls,
        events: &Events,
        own: Option<Tag>,
    ) -> Result<Taken, String> {
        if !self.buffered() && !self.frames.get_ref().get_ref().may_have_bytes() {
            return Ok(Taken::Nothing);
        }
        self.frames.get_mut().get_mut().set_nowait(true);
        let taken = read_one(&mut self.frames, calls, events, own);
        self.frames.get_mut().get_mut().set_nowait(false);
        taken
    }
}

/// The wire while nobody has taken it for good; shared with the reader thread.
pub(super) type SharedWire = Arc<Mutex<Option<WireIn>>>;

/// Reads the wire for the answer to `tag`, which `own` receives, if nobody else is reading
/// it; `None` if somebody is. Afterwards wakes another blocked caller to take over.
pub(super) fn try_lead(
    wire: &SharedWire,
    calls: &Calls,
    events: &Events,
    (tag, own): (Tag, &Mailbox),
) -> Option<CallResult<Reply>> {
    let mut guard = match wire.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    let wire_in = guard.as_mut().filter(|w| w.pipe().is_some())?;
    let answer = lead(wire_in, calls, events, tag, own);
    drop(guard);
    match calls.a_thread_waiter() {
        // A thread that found the wire held now waits for its answer: it reads in turn.
        Some(next) => {
            if next.is_empty() {
                let _ = next.try_send(Wake::Lead);
            }
        }
        // Calls sent with `submit_and_read` while the wire was held wait for a reader.
        None => lead_until_idle(wire, calls, events),
    }
    Some(answer)
}

/// Reads frames until `own` has the answer to `tag` (every call is answered: by the daemon,
/// the watchdog, or the stream's failure).
fn lead(
    wire: &mut WireIn,
    calls: &Calls,
    events: &Events,
    tag: Tag,
    own: &Mailbox,
) -> CallResult<Reply> {
    loop {
        if let Some(answer) = own.try_answer(tag) {
            return answer;
        }
        match wire.next_frame(calls, events, Some(tag)) {
            Ok(Taken::Own(answer)) => return answer,
            Ok(Taken::Handled) => {}
            Ok(Taken::Nothing) => wait_for_wire(wire, calls),
            Err(why) => calls.fail_all(&why),
        }
    }
}

/// Sleeps until the pipe is readable or the bell rings (the watchdog answered a call). Without
/// a bell it sleeps at most [`LEAD_TICK`]. With one it sets no timeout: arming a timer for
/// every round trip cost 0.4 µs of a 5 µs pinned one on a virtual machine.
fn wait_for_wire(wire: &mut WireIn, calls: &Calls) {
    if !wire.arm() {
        return;
    }
    let Some(fd) = wire.pipe() else { return };
    let Some(bell) = calls.bell() else {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let _ = poll(&mut fds, Timespec::try_from(LEAD_TICK).ok().as_ref());
        return;
    };
    let mut fds = [PollFd::new(&fd, PollFlags::IN), PollFd::new(&bell, PollFlags::IN)];
    // EINTR: the caller looks at its answer, then waits again.
    if poll(&mut fds, None).is_ok() && !fds[1].revents().is_empty() {
        calls.hush();
    }
}

/// Reads one frame and hands it on, except the answer to `own` (the reading thread's own
/// call), which it returns; [`Taken::Nothing`] if the stream would block (only when read
/// without waiting); `Err` with the reason when the stream is over.
fn read_one<R: Read>(
    frames: &mut FrameReader<R>,
    calls: &Calls,
    events: &Events,
    own: Option<Tag>,
) -> Result<Taken, String> {
    match frames.read_frame() {
        Ok(Frame::Reply { tag, response }) if Some(tag) == own => {
            let answer = calls.finish_own(tag, response.map_err(CallError::Errno));
            Ok(answer.map_or(Taken::Handled, Taken::Own))
        }
        Ok(Frame::Reply { tag, response }) => {
            calls.finish(tag, response.map_err(CallError::Errno));
            Ok(Taken::Handled)
        }
        Ok(Frame::Event { fd, flags }) => {
            events.post(Event { fd, flags });
            Ok(Taken::Handled)
        }
        Ok(other) => {
            warn!("daemon sent a {} frame; ignored", other.kind());
            Ok(Taken::Handled)
        }
        Err(scheme_protocol::Error::Io(err)) if err.kind() == ErrorKind::WouldBlock => {
            Ok(Taken::Nothing)
        }
        Err(scheme_protocol::Error::Closed) => Err("daemon closed its end".to_owned()),
        Err(err) => {
            error!("daemon sent a bad stream: {err}");
            Err(format!("bad stream from daemon: {err}"))
        }
    }
}

/// How long a reader thread not needed for good waits for a frame, with no call in flight,
/// before it hands the wire back (`Client::submit_for_now`).
pub(super) const READER_IDLE: Duration = Duration::from_millis(50);

/// The reader thread's state, shared with it.
#[derive(Default)]
pub(super) struct ReaderState {
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
    /// Something needs the wire read at all times (events, `Client::submit`): never stop.
    pub(super) for_good: bool,
    /// The thread has the wire (false once it handed it back, or before it started).
    pub(super) running: bool,
}

/// The reader thread: takes the wire (after any leader is done with it), answers waiters by
/// tag and forwards events; on any stream failure it fails every outstanding call. Unless
/// needed for good, it hands the wire back once no call has been in flight for
/// [`READER_IDLE`]; deciding that under the state's lock, against `start_reader_for`, leaves no
/// call sent meanwhile unread (its sender waits for the lock, then starts a new reader).
pub(super) fn read_while_needed(
    wire: &SharedWire,
    calls: &Calls,
    events: &Events,
    state: &Mutex<ReaderState>,
) {
    let taken = wire.lock().unwrap_or_else(PoisonError::into_inner).take();
    let Some(mut wire_in) = taken else {
        state.lock().unwrap_or_else(PoisonError::into_inner).running = false;
        return;
    };
    let mut for_good = state.lock().unwrap_or_else(PoisonError::into_inner).for_good;
    let why = loop {
        if for_good || wire_in.buffered() || !idle_for_a_while(&mut wire_in) {
            if let Err(why) = read_one(&mut wire_in.frames, calls, events, None) {
                break why;
            }
            continue;
        }
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        for_good = state.for_good;
        if !for_good && !calls.any_waiting() {
            *wire.lock().unwrap_or_else(PoisonError::into_inner) = Some(wire_in);
            state.running = false;
            return;
        }
    };
    calls.fail_all(&why);
}

/// Whether nothing came on the wire for [`READER_IDLE`] (never, for a wire it cannot poll).
fn idle_for_a_while(wire: &mut WireIn) -> bool {
    if !wire.arm() {
        return false;
    }
    let Some(fd) = wire.pipe() else { return false };
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = Timespec::try_from(READER_IDLE).ok();
    matches!(poll(&mut fds, timeout.as_ref()), Ok(0))
}

/// Ends the stream if the daemon closed its end of the pipe while nobody reads the wire (no
/// reader thread, no call waiting): reads what it left, answering the calls it answered, then
/// fails the rest. Looks without holding the wire, so a thread that wants to read it never
/// finds it held by this.
pub(super) fn notice_hangup(pipe: &OwnedFd, wire: &SharedWire, calls: &Calls, events: &Events) {
    // No events asked for: only a hang-up or an error is reported, never the daemon's frames.
    let mut fds = [PollFd::new(pipe, PollFlags::empty())];
    if !matches!(poll(&mut fds, Some(&Timespec::default())), Ok(n) if n > 0) {
        return;
    }
    // A leader or the reader thread reads to the end itself; then the wire is free again.
    let mut guard = wire.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(wire_in) = guard.as_mut() else { return };
    if calls.is_dead() {
        return;
    }
    let why = loop {
        if let Err(why) = read_one(&mut wire_in.frames, calls, events, None) {
            break why;
        }
    };
    calls.fail_all(&why);
}

/// Reads the wire, if nobody else does, until no call is in flight, answering every call and
/// running completions in this thread. Looks again after letting the wire go: a call sent
/// meanwhile by a thread that found the wire held must not be left unread.
pub(super) fn lead_until_idle(wire: &SharedWire, calls: &Calls, events: &Events) {
    while calls.any_waiting() {
        let mut guard = match wire.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return, // its holder looks again when done
        };
        let Some(wire_in) = guard.as_mut().filter(|w| w.pipe().is_some()) else { return };
        while calls.any_waiting() {
            match wire_in.next_frame(calls, events, None) {
                Ok(Taken::Nothing) => wait_for_wire(wire_in, calls),
                Ok(Taken::Own(_) | Taken::Handled) => {}
                Err(why) => calls.fail_all(&why),
            }
        }
        #[cfg(test)]
        tests::before_letting_go();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::fs::File;
    use std::io;
    use std::sync::mpsc::{channel, Receiver};

    use scheme_protocol::{Call, Fd, FrameWriter, MAX_FRAME};

    use super::super::calls::Waiter;
    use super::*;

    const PATIENCE: Duration = Duration::from_secs(5);

    thread_local! {
        /// Runs once, on this thread, when `lead_until_idle` next finds no call in flight,
        /// while it still holds the wire.
        static BEFORE_LETTING_GO: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    pub(super) fn before_letting_go() {
        if let Some(hook) = BEFORE_LETTING_GO.with(|hook| hook.borrow_mut().take()) {
            hook();
        }
    }

    /// A wire whose daemon end is the returned pipe end.
    fn wire_over_a_pipe() -> (SharedWire, File) {
        let (read, write) = io::pipe().unwrap();
        let read = OwnedFd::from(read);
        let source = Source::new(Box::new(File::from(read.try_clone().unwrap())), Some(read));
        let frames = FrameReader::new(BufReader::new(source), MAX_FRAME);
        let wire_in = WireIn { frames, busy_poll: Duration::ZERO };
        (Arc::new(Mutex::new(Some(wire_in))), File::from(OwnedFd::from(write)))
    }

    /// Registers a call with tag `tag` whose completion sends its answer to the receiver.
    fn register(calls: &Calls, tag: u64) -> Receiver<CallResult<Reply>> {
        let (tx, rx) = channel();
        let waiter = Waiter::Completion(Box::new(move |answer| drop(tx.send(answer))));
        assert!(calls.register(Tag(tag), &Call::Close { fd: Fd(1) }, waiter).is_ok());
        rx
    }

    fn answer(daemon: &mut File, tag: u64) {
        let frame = Frame::Reply { tag: Tag(tag), response: Ok(Reply::Value(0)) };
        FrameWriter::new(daemon, MAX_FRAME).write_frame(&frame).unwrap();
    }

    #[test]
    fn a_call_sent_while_the_leader_lets_go_of_the_wire_is_still_read() {
        let (wire, mut daemon) = wire_over_a_pipe();
        let calls = Arc::new(Calls::new());
        let events = Arc::new(Events::new().0);
        let first = register(&calls, 1);
        answer(&mut daemon, 1);
        let (in_window, leader_in_window) = channel();
        let (go_on, go) = channel::<()>();
        let leader = {
            let (wire, calls, events) =
                (Arc::clone(&wire), Arc::clone(&calls), Arc::clone(&events));
            std::thread::spawn(move || {
                let pause = move || {
                    in_window.send(()).unwrap();
                    go.recv().unwrap();
                };
                BEFORE_LETTING_GO.with(|hook| *hook.borrow_mut() = Some(Box::new(pause)));
                lead_until_idle(&wire, &calls, &events);
            })
        };
        leader_in_window.recv_timeout(PATIENCE).expect("the leader never ran out of calls");
        assert!(matches!(first.try_recv(), Ok(Ok(Reply::Value(0)))));
        // A call sent now finds the wire held: its sender leaves the reading to the leader.
        let second = register(&calls, 2);
        answer(&mut daemon, 2);
        lead_until_idle(&wire, &calls, &events);
        assert!(second.try_recv().is_err(), "read by a thread that found the wire held");
        go_on.send(()).unwrap();
        let got = second.recv_timeout(PATIENCE);
        assert!(matches!(got, Ok(Ok(Reply::Value(0)))), "left unread: {got:?}");
        leader.join().unwrap();
    }
}
