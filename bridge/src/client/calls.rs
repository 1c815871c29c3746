//! The client's outstanding calls, by tag, and the limits on them: how many may be outstanding,
//! how long a call that should answer at once may take, and how long a cancelled call may stay
//! unanswered. A daemon that breaks these gets `EAGAIN` (too many calls) or, for the calls it
//! stalls, `EIO` and `EINTR`; the stream and every other call carry on.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{error, warn};
use rustc_hash::FxHashMap;
use scheme_protocol::{Call, Errno, PathStep, Reply, Tag};

use super::mailbox::Wake;
use super::{CallError, CallResult};
use crate::bell::Bell;
use crate::trace::Trace;

/// Limits on one client's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls outstanding at once; one more fails with `EAGAIN` without being sent.
    pub max_outstanding: usize,
    /// How long a call that never waits for anything (a stat, a close, a getdents; not an
    /// open, read, write, dup or fsync, which may block by design) may go unanswered before it
    /// fails with `EIO`. `None`: forever.
    pub call_timeout: Option<Duration>,
    /// How long a cancelled call may go unanswered (a daemon that ignores cancels) before it
    /// fails with `EINTR` locally.
    pub cancel_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_outstanding: 1 << 14,
            call_timeout: Some(Duration::from_secs(30)),
            cancel_grace: Duration::from_secs(1),
        }
    }
}

/// Whether a daemon may legitimately keep `call` waiting (for data, a peer, or a disk).
fn may_block(call: &Call) -> bool {
    matches!(
        call,
        Call::Open { .. }
            | Call::StatPath { .. }
            | Call::OpenStat { .. }
            | Call::OnPath { .. }
            | Call::Dup { .. }
            | Call::Read { .. }
            | Call::Write { .. }
            | Call::ReadRegion { .. }
            | Call::WriteRegion { .. }
            | Call::Fsync { .. }
    )
}

/// The most a well-behaved daemon can answer to a call.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Data of at most this many bytes (read, fpath, getdents).
    Data(u64),
    /// A count of at most this many bytes (write, and reads and writes in the region).
    Count(u64),
    Any,
}

impl Bound {
    fn of(call: &Call) -> Bound {
        match call {
            Call::Read { len, .. } | Call::Fpath { len, .. } | Call::Getdents { len, .. } => {
                Bound::Data(*len)
            }
            Call::Write { data, .. } => Bound::Count(data.len() as u64),
            Call::ReadRegion { len, .. } | Call::WriteRegion { len, .. } => Bound::Count(*len),
            // The answer is the last step's.
            Call::OnPath { steps, .. } => match steps.last() {
                Some(PathStep::Read { len }) => Bound::Data(*len),
                Some(PathStep::Write { data }) => Bound::Count(data.len() as u64),
                _ => Bound::Any,
            },
            _ => Bound::Any,
        }
    }

    /// `result`, or a protocol error if the daemon answered more than was asked.
    fn check(self, name: &str, result: CallResult<Reply>) -> CallResult<Reply> {
        let (got, max) = match (&result, self) {
            (Ok(Reply::Data(data)), Bound::Data(max)) => (data.len() as u64, max),
            (Ok(Reply::Value(count)), Bound::Count(max)) => (*count, max),
            _ => return result,
        };
        if got <= max {
            return result;
        }
        let what = format!("daemon answered {got} bytes to a {name} of {max}; answered EIO");
        error!("{what}");
        Err(CallError::Protocol(what))
    }
}

/// A completion run on the reply reader thread; it must not block.
pub type Completion = Box<dyn FnOnce(CallResult<Reply>) + Send>;

/// Who is waiting for a tag: a thread blocked in `PendingCall::wait`, or a completion.
pub(super) enum Waiter {
    Thread(Sender<Wake>),
    Completion(Completion),
}

impl Waiter {
    /// Hands the answer to the call with `tag` to its waiter.
    pub(super) fn finish(self, tag: Tag, result: CallResult<Reply>) {
        match self {
            Waiter::Thread(tx) => {
                let _ = tx.send(Wake::Answer(tag, result));
            }
            Waiter::Completion(done) => done(result),
        }
    }
}

/// One call sent and not answered.
struct Outstanding {
    waiter: Waiter,
    name: &'static str,
    bound: Bound,
    /// When it fails with `EIO` if still unanswered.
    deadline: Option<Instant>,
    /// When it fails with `EINTR` if still unanswered (set by a cancel).
    cancel_deadline: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Table {
    /// Keyed by tags this client numbered itself, so a fast hash with no defence against
    /// chosen keys is safe (a daemon's tags are only looked up, never inserted).
    waiting: FxHashMap<Tag, Outstanding>,
    /// Set once the stream is gone; later calls fail with it at once.
    pub(super) dead: Option<Arc<str>>,
    /// Dropped when the stream dies, which wakes every `Client::closed` receiver.
    alive: Option<Sender<()>>,
    /// Whether the `EAGAIN` of a full table was logged since it last had room.
    full_logged: bool,
}

/// Outstanding calls, shared by every clone of a client, its reader and its watchdog.
pub(super) struct Calls {
    table: Mutex<Table>,
    limits: Mutex<Limits>,
    pub(super) closed: Receiver<()>,
    pub(super) trace: OnceLock<Arc<Trace>>,
    /// Rung when a blocked thread's call is answered other than from the wire (a timeout, an
    /// ignored cancel, a broken stream), so that a leader asleep on the wire wakes up to see
    /// it. `None` if no eventfd could be made: leaders then look every `LEAD_TICK`.
    bell: Option<Bell>,
}

impl Calls {
    pub(super) fn new() -> Calls {
        let (alive, closed) = crossbeam_channel::bounded(0);
        let table = Table { alive: Some(alive), ..Table::default() };
        Calls {
            table: Mutex::new(table),
            limits: Mutex::new(Limits::default()),
            closed,
            trace: OnceLock::new(),
            bell: Bell::new("waking blocked callers; they poll instead"),
        }
    }

    /// The bell's descriptor, readable once rung, to wait on beside the wire.
    pub(super) fn bell(&self) -> Option<BorrowedFd<'_>> {
        self.bell.as_ref().map(AsFd::as_fd)
    }

    /// Wakes a leader waiting on the wire and the bell (see `bell`).
    fn ring(&self) {
        if let Some(bell) = &self.bell {
            bell.ring();
        }
    }

    /// Silences the bell after a leader woke on it.
    pub(super) fn hush(&self) {
        if let Some(bell) = &self.bell {
            bell.hush();
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn limits(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_limits(&self, limits: Limits) {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner) = limits;
    }

    /// Registers `waiter` for `tag`, or gives it back with why it cannot be sent.
    pub(super) fn register(
        &self,
        tag: Tag,
        call: &Call,
        waiter: Waiter,
    ) -> Result<(), (CallError, Waiter)> {
        let limits = self.limits();
        let mut table = self.lock();
        if let Some(why) = &table.dead {
            return Err((CallError::Disconnected(why.clone()), waiter));
        }
        if table.waiting.len() >= limits.max_outstanding {
            if !table.full_logged {
                table.full_logged = true;
                warn!("{} calls outstanding, the limit: new calls get EAGAIN", table.waiting.len());
            }
            return Err((CallError::Errno(Errno::EAGAIN), waiter));
        }
        table.full_logged = false;
        let deadline = limits.call_timeout.filter(|_| !may_block(call)).map(|t| Instant::now() + t);
        let entry = Outstanding {
            waiter,
            name: call.name(),
            bound: Bound::of(call),
            deadline,
            cancel_deadline: None,
        };
        table.waiting.insert(tag, entry);
        Ok(())
    }

    /// Takes `tag` back after its call could not be sent.
    pub(super) fn unregister(&self, tag: Tag) -> Option<Waiter> {
        self.lock().waiting.remove(&tag).map(|entry| entry.waiter)
    }

    /// Whether any call is waiting for its answer.
    pub(super) fn any_waiting(&self) -> bool {
        !self.lock().waiting.is_empty()
    }

    /// The wake-up channel of some thread blocked in a call, if any.
    pub(super) fn a_thread_waiter(&self) -> Option<Sender<Wake>> {
        self.lock().waiting.values().find_map(|entry| match &entry.waiter {
            Waiter::Thread(tx) => Some(tx.clone()),
            Waiter::Completion(_) => None,
        })
    }

    /// Starts the grace period of a cancelled call.
    pub(super) fn cancelled(&self, tag: Tag) {
        let grace = self.limits().cancel_grace;
        if let Some(entry) = self.lock().waiting.get_mut(&tag) {
            entry.cancel_deadline.get_or_insert(Instant::now() + grace);
        }
    }

    /// Hands `result` to whoever waits for `tag`.
    pub(super) fn finish(&self, tag: Tag, result: CallResult<Reply>) {
        if let Some((waiter, result)) = self.settle(tag, result) {
            waiter.finish(tag, result);
        }
    }

    /// The answer to `tag` for the thread reading it off the wire itself, which is the one
    /// waiting for it (no hand-off through its mailbox); `None` if the call was answered
    /// already (by the watchdog: that answer is in the mailbox).
    pub(super) fn finish_own(
        &self,
        tag: Tag,
        result: CallResult<Reply>,
    ) -> Option<CallResult<Reply>> {
        self.settle(tag, result).map(|(_, result)| result)
    }

    /// Takes `tag` out of the table with its checked (and traced) answer.
    fn settle(&self, tag: Tag, result: CallResult<Reply>) -> Option<(Waiter, CallResult<Reply>)> {
        let Some(entry) = self.lock().waiting.remove(&tag) else {
            warn!(
                "daemon answered unknown tag {} (answered already, or given up on); dropped",
                tag.0
            );
            return None;
        };
        let result = entry.bound.check(entry.name, result);
        if let Some(trace) = self.trace.get() {
            trace.finished(tag, &result);
        }
        Some((entry.waiter, result))
    }

    /// Fails every call past its deadline: `EIO` for a timeout, `EINTR` for an ignored cancel.
    /// Returns the timed-out tags, to cancel in the daemon.
    pub(super) fn expire(&self, now: Instant) -> Vec<Tag> {
        let mut overdue = Vec::new();
        {
            let mut table = self.lock();
            let tags: Vec<Tag> = table
                .waiting
                .iter()
                .filter(|(_, e)| e.cancel_deadline.or(e.deadline).is_some_and(|at| at <= now))
                .map(|(&tag, _)| tag)
                .collect();
            for tag in tags {
                if let Some(entry) = table.waiting.remove(&tag) {
                    overdue.push((tag, entry));
                }
            }
        }
        let mut timed_out = Vec::new();
        let overdue_is_empty = overdue.is_empty();
        for (tag, entry) in overdue {
            let errno = if entry.cancel_deadline.is_some() {
                Errno::EINTR
            } else {
                timed_out.push(tag);
                Errno::EIO
            };
            error!(
                "daemon left {} (tag {}) unanswered too long; answered {errno}",
                entry.name, tag.0
            );
            let result = Err(CallError::Errno(errno));
            if let Some(trace) = self.trace.get() {
                trace.finished(tag, &result);
            }
            entry.waiter.finish(tag, result);
        }
        if !overdue_is_empty {
            self.ring();
        }
        timed_out
    }

    /// Marks the stream dead and fails every outstanding call.
    pub(super) fn fail_all(&self, why: &str) {
        let (waiters, why, alive) = {
            let mut table = self.lock();
            let why: Arc<str> = table.dead.clone().unwrap_or_else(|| why.into());
            table.dead = Some(why.clone());
            (std::mem::take(&mut table.waiting), why, table.alive.take())
        };
        for (tag, entry) in waiters {
            if let Some(trace) = self.trace.get() {
                trace.finished(tag, &Err(CallError::Disconnected(why.clone())));
            }
            entry.waiter.finish(tag, Err(CallError::Disconnected(why.clone())));
        }
        self.ring();
        // Only now tell `closed()` watchers, so that every failed call is answered before
        // anyone reacts to the close (a mount aborting its connection, say).
        drop(alive);
    }

    /// Whether the stream is gone.
    pub(super) fn is_dead(&self) -> bool {
        self.lock().dead.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_call() -> Call {
        Call::Fstat { fd: scheme_protocol::Fd(1) }
    }

    fn completion() -> (Waiter, Receiver<CallResult<Reply>>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (Waiter::Completion(Box::new(move |r| drop(tx.send(r)))), rx)
    }

    #[test]
    fn an_on_path_answer_is_bounded_by_its_last_step() {
        let on_path = |steps| Call::OnPath { path: "l".into(), flags: 0, steps };
        let readlink = Bound::of(&on_path(vec![PathStep::Read { len: 4 }]));
        let data = |n: usize| Ok(Reply::Data(scheme_protocol::Bytes::from(vec![b'x'; n])));
        assert!(readlink.check("on_path", data(4)).is_ok());
        assert!(matches!(readlink.check("on_path", data(5)), Err(CallError::Protocol(_))));
        let write = Bound::of(&on_path(vec![PathStep::Write { data: vec![0; 3].into() }]));
        assert!(matches!(write.check("on_path", Ok(Reply::Value(4))), Err(CallError::Protocol(_))));
        // A read that is not last bounds nothing: the answer is the fstat's.
        let steps = vec![PathStep::Read { len: 0 }, PathStep::Fstat];
        assert!(matches!(Bound::of(&on_path(steps)), Bound::Any));
    }

    #[test]
    fn a_full_table_refuses_with_eagain_and_has_room_again_after_an_answer() {
        let calls = Calls::new();
        calls.set_limits(Limits { max_outstanding: 2, ..Limits::default() });
        for tag in 1..=2 {
            assert!(calls.register(Tag(tag), &stat_call(), completion().0).is_ok());
        }
        let refused = calls.register(Tag(3), &stat_call(), completion().0);
        assert!(matches!(refused, Err((CallError::Errno(Errno::EAGAIN), _))));
        calls.finish(Tag(1), Ok(Reply::Value(0)));
        assert!(calls.register(Tag(3), &stat_call(), completion().0).is_ok());
    }

    #[test]
    fn a_stalled_stat_times_out_with_eio_but_a_read_may_wait() {
        let calls = Calls::new();
        let timeout = Duration::from_secs(5);
        calls.set_limits(Limits { call_timeout: Some(timeout), ..Limits::default() });
        let (stat, stat_rx) = completion();
        let (read, read_rx) = completion();
        assert!(calls.register(Tag(1), &stat_call(), stat).is_ok());
        let read_call = Call::Read { fd: scheme_protocol::Fd(1), len: 1 };
        assert!(calls.register(Tag(2), &read_call, read).is_ok());
        assert!(calls.expire(Instant::now()).is_empty());
        let later = Instant::now() + timeout * 2;
        assert_eq!(calls.expire(later), vec![Tag(1)]);
        assert_eq!(stat_rx.try_recv().unwrap(), Err(CallError::Errno(Errno::EIO)));
        assert!(read_rx.try_recv().is_err());
    }

    #[test]
    fn more_data_or_a_larger_count_than_asked_is_eio() {
        let calls = Calls::new();
        let (read, read_rx) = completion();
        let read_call = Call::Read { fd: scheme_protocol::Fd(1), len: 16 };
        assert!(calls.register(Tag(1), &read_call, read).is_ok());
        calls.finish(Tag(1), Ok(Reply::Data(vec![0; 32].into())));
        assert!(matches!(read_rx.try_recv().unwrap(), Err(CallError::Protocol(_))));
        let (write, write_rx) = completion();
        let write_call = Call::Write { fd: scheme_protocol::Fd(1), data: vec![0; 5].into() };
        assert!(calls.register(Tag(2), &write_call, write).is_ok());
        calls.finish(Tag(2), Ok(Reply::Value(4101)));
        assert!(matches!(write_rx.try_recv().unwrap(), Err(CallError::Protocol(_))));
        let (exact, exact_rx) = completion();
        assert!(calls.register(Tag(3), &read_call, exact).is_ok());
        calls.finish(Tag(3), Ok(Reply::Data(vec![0; 16].into())));
        assert!(exact_rx.try_recv().unwrap().is_ok());
        let fd = scheme_protocol::Fd(1);
        for (tag, call) in [
            (Tag(4), Call::ReadRegion { fd, len: 4096, at: 0 }),
            (Tag(5), Call::WriteRegion { fd, len: 4096, at: 0 }),
        ] {
            let (region, region_rx) = completion();
            assert!(calls.register(tag, &call, region).is_ok());
            calls.finish(tag, Ok(Reply::Value(4097)));
            assert!(matches!(region_rx.try_recv().unwrap(), Err(CallError::Protocol(_))), "{call}");
        }
    }

    #[test]
    fn an_ignored_cancel_ends_in_eintr_after_the_grace_period() {
        let calls = Calls::new();
        let (read, rx) = completion();
        let read_call = Call::Read { fd: scheme_protocol::Fd(1), len: 1 };
        assert!(calls.register(Tag(1), &read_call, read).is_ok());
        calls.cancelled(Tag(1));
        assert!(calls.expire(Instant::now()).is_empty());
        let later = Instant::now() + Limits::default().cancel_grace * 2;
        assert!(calls.expire(later).is_empty()); // not a timeout: nothing to cancel again
        assert_eq!(rx.try_recv().unwrap(), Err(CallError::Errno(Errno::EINTR)));
        calls.finish(Tag(1), Ok(Reply::Value(1))); // the late answer is dropped
    }
}
