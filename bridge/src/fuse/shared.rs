//! The state behind the FUSE op table and the call sequences it uses. Every FUSE request is
//! sent to the daemon and answered from the completion that runs when the reply arrives: on
//! the client's reader thread, so the fuser loop never waits, or, for a scheme whose calls
//! never block, on one CPU, on the fuser thread that reads the wire itself (see
//! [`Scheme::answers_here`]). A sequence (open, fstat, close) is a chain of completions, with
//! later calls pipelined behind earlier ones where the daemon's in-order handling allows it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use fuser::Errno as LinuxErrno;
use log::debug;
use scheme_protocol::{Call, Caller, Fd, PathStep, Reply, Stat};
use syscall::flag::{O_NOFOLLOW, O_STAT};

use super::attr::Owner;
use super::dup::Tokens;
use super::errno;
use super::handles::Handles;
use super::inodes::{Inodes, Node, NAMESPACE};
use super::interrupts::Interrupts;
use super::limits::{Counters, MountLimits};
use crate::backend::Backend;
use crate::client::{CallError, CallResult};

/// One daemon served by the mount.
#[derive(Debug)]
pub(crate) struct Scheme {
    pub(crate) name: String,
    pub(crate) backend: std::sync::Arc<dyn Backend>,
    /// Every call answers at once (`MountConfig::calls_never_block`).
    pub(crate) never_blocks: bool,
    /// The fuser thread that sends a call reads the answers itself, until no call is in flight
    /// (`Client::submit_and_read`), instead of a reader thread taking each answer and running
    /// its completion: only for a scheme that never blocks, and only where busy polling is off
    /// (one CPU), since there each hand-off costs a context switch. Pinned to one CPU this
    /// took a 4 KiB O_DIRECT pread from 4.5 to 3.4 context switches in the bridge's processes
    /// and from 21.9 to 18.9 µs. While requests keep queuing up, a reader thread takes the
    /// answers after all (`Shared::load_is_sustained`).
    pub(crate) answers_here: bool,
    /// Calls sent in a row while more FUSE requests waited (see `Shared::load_is_sustained`).
    pub(crate) queued_streak: AtomicU32,
    /// Calls sent since the FUSE device was last looked at while the streak was 0.
    pub(crate) unlooked: AtomicU32,
}

/// Everything the op table shares with completions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) schemes: Vec<Scheme>,
    pub(crate) inodes: Mutex<Inodes>,
    pub(crate) handles: Handles,
    pub(crate) interrupts: Interrupts,
    pub(crate) tokens: Tokens,
    pub(crate) owner: Owner,
    pub(crate) ttl: Ttl,
    pub(crate) counters: Counters,
    /// (parent node, name) pairs the kernel should drop from its cache.
    pub(crate) forget_names: std::sync::OnceLock<crossbeam_channel::Sender<(u64, String)>>,
    /// What fuser reads requests from (a copy), to see whether more are waiting.
    pub(crate) requests: std::sync::OnceLock<std::os::fd::OwnedFd>,
}

/// How long the kernel may cache names and attributes (`-o entry_timeout=,attr_timeout=`).
/// Zero by default: scheme names come and go (chan listeners) and daemons change behind the
/// mount. Stream files never have their attributes cached.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ttl {
    /// Name -> inode.
    pub entry: std::time::Duration,
    /// Attributes of directories, regular files and symlinks.
    pub attr: std::time::Duration,
}

impl Ttl {
    /// The attribute time-to-live for a node of `kind`.
    pub(crate) fn attr_for(&self, kind: super::inodes::Kind) -> std::time::Duration {
        if kind == super::inodes::Kind::Stream {
            std::time::Duration::ZERO
        } else {
            self.attr
        }
    }
}

/// When the fuser thread reads a call's answer, where it does (`Scheme::answers_here`).
#[derive(Debug, Clone, Copy)]
enum Read {
    /// Before the call returns.
    Now,
    /// With the answer of the next call this thread sends.
    WithNext,
}

/// Calls in a row that found more FUSE requests waiting, after which a scheme's answers go to
/// a reader thread until the load is gone (`Scheme::answers_here`).
const SUSTAINED_LOAD: u32 = 32;

/// While no FUSE request has been seen waiting, the device is looked at on one call in this
/// many: each look is a system call (pinned, looking at every call cost 2% of a 4 KiB pread
/// and 5% of create+stat+unlink). Once one look finds requests, every call looks.
const LOOK_EVERY: u32 = 8;

/// How often a stat that raced a rename or unlink is made again.
const STABLE_STAT_TRIES: u32 = 5;

/// A Linux errno result.
pub(crate) type FsResult<T> = Result<T, LinuxErrno>;

impl Shared {
    pub(crate) fn new(
        schemes: Vec<Scheme>,
        namespace: bool,
        owner: Owner,
        ttl: Ttl,
        limits: MountLimits,
    ) -> Shared {
        let root_scheme = if namespace { NAMESPACE } else { 0 };
        Shared {
            schemes,
            inodes: Mutex::new(Inodes::new(root_scheme)),
            handles: Handles::default(),
            interrupts: Interrupts::default(),
            tokens: Tokens::default(),
            owner,
            ttl,
            counters: Counters::new(limits),
            forget_names: std::sync::OnceLock::new(),
            requests: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn node(&self, ino: u64) -> FsResult<Node> {
        let inodes = self.inodes.lock().unwrap_or_else(PoisonError::into_inner);
        inodes.get(ino).cloned().ok_or_else(|| {
            log::debug!("inode {ino} is not in the table");
            LinuxErrno::ESTALE
        })
    }

    pub(crate) fn inodes(&self) -> std::sync::MutexGuard<'_, Inodes> {
        self.inodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `call` to `scheme`; `done` gets the answer.
    pub(crate) fn call(
        &self,
        scheme: usize,
        caller: Caller,
        call: Call,
        done: impl FnOnce(CallResult<Reply>) + Send + 'static,
    ) {
        self.submit(scheme, caller, call, done, Read::Now);
    }

    /// Like [`Shared::call`], for a call this thread follows at once with another call to the
    /// same scheme: where the fuser thread reads the answers, the next call reads both, so
    /// that the two cost one round trip.
    pub(crate) fn call_ahead(
        &self,
        scheme: usize,
        caller: Caller,
        call: Call,
        done: impl FnOnce(CallResult<Reply>) + Send + 'static,
    ) {
        self.submit(scheme, caller, call, done, Read::WithNext);
    }

    /// Sends `call` within the mount's limit on calls in flight (`EAGAIN` beyond, without
    /// sending); `None` if it was refused.
    fn submit(
        &self,
        scheme: usize,
        caller: Caller,
        call: Call,
        done: impl FnOnce(CallResult<Reply>) + Send + 'static,
        read: Read,
    ) -> Option<scheme_protocol::Tag> {
        let slot = match self.counters.request() {
            Ok(slot) => slot,
            Err(_) => {
                done(Err(CallError::Errno(scheme_protocol::Errno::EAGAIN)));
                return None;
            }
        };
        // The one box of the call's completion (the layers above pass theirs unboxed).
        let done: crate::Completion = Box::new(move |result| {
            // The caller may see the answer and call again before `done` returns.
            let handing_on = slot.answered();
            done(result);
            drop(handing_on);
        });
        let scheme = &self.schemes[scheme];
        Some(match (scheme.answers_here, read) {
            (false, _) => scheme.backend.submit(caller, call, done),
            (true, Read::WithNext) => scheme.backend.submit_ahead(caller, call, done),
            // Requests keep queuing up: a reader thread takes the answers while they do, so
            // that this thread goes on reading requests while the daemon works.
            (true, Read::Now) if self.load_is_sustained(scheme) => {
                scheme.backend.submit_for_now(caller, call, done)
            }
            (true, Read::Now) => scheme.backend.submit_and_read(caller, call, done),
        })
    }

    /// Whether more FUSE requests waited to be read at each of the last [`SUSTAINED_LOAD`]
    /// calls sent to `scheme` (one program's requests come one at a time, but the kernel's own
    /// may overlap them now and then: a release, a readahead). Until a look finds requests
    /// waiting, only one call in [`LOOK_EVERY`] looks.
    fn load_is_sustained(&self, scheme: &Scheme) -> bool {
        let Some(requests) = self.requests.get() else { return false };
        let streak = scheme.queued_streak.load(Ordering::Relaxed);
        let looks_now = streak > 0
            || scheme.unlooked.fetch_add(1, Ordering::Relaxed).is_multiple_of(LOOK_EVERY);
        if !looks_now {
            return false;
        }
        if !requests_wait(requests) {
            scheme.queued_streak.store(0, Ordering::Relaxed);
            return false;
        }
        scheme.queued_streak.fetch_add(1, Ordering::Relaxed) + 1 >= SUSTAINED_LOAD
    }

    /// Closes `fd`, a handle the kernel released. The kernel does not wait for a release's
    /// answer, so where the fuser thread reads the answers and another FUSE request already
    /// waits, the close goes out with that request's call and costs no round trip of its own
    /// (pinned to one CPU: create+stat+unlink 1.05-1.10x files/s); otherwise it goes now.
    /// Should the waiting request make no call to this scheme, the client's watchdog sends the
    /// close within its tick.
    pub(crate) fn close_released(&self, scheme: usize, caller: Caller, fd: Fd) {
        let close = Call::Close { fd };
        let next_is_waiting =
            self.schemes[scheme].answers_here && self.requests.get().is_some_and(requests_wait);
        let read = if next_is_waiting { Read::WithNext } else { Read::Now };
        self.submit(scheme, caller, close, |_| {}, read);
    }

    /// Like [`Shared::call`], for a call that may block: FUSE request `unique` can interrupt it.
    pub(crate) fn call_interruptible(
        self: &Arc<Self>,
        unique: u64,
        scheme: usize,
        caller: Caller,
        call: Call,
        done: impl FnOnce(CallResult<Reply>) + Send + 'static,
    ) {
        let this = Arc::clone(self);
        let done = move |result| {
            this.interrupts.finished(unique);
            done(result);
        };
        let Some(tag) = self.submit(scheme, caller, call, done, Read::Now) else { return };
        if let Some((scheme, tag)) = self.interrupts.started(unique, scheme, tag) {
            self.cancel(scheme, tag);
        }
    }

    /// The kernel interrupted request `unique`.
    pub(crate) fn interrupt(&self, unique: u64) {
        if let Some((scheme, tag)) = self.interrupts.interrupted(unique) {
            self.cancel(scheme, tag);
        }
    }

    fn cancel(&self, scheme: usize, tag: scheme_protocol::Tag) {
        debug!("interrupt: cancelling tag {} of {}", tag.0, self.schemes[scheme].name);
        self.schemes[scheme].backend.cancel(tag);
    }

    /// Asks the kernel to drop `name` in directory node `parent` from its cache (best effort).
    pub(crate) fn forget_name(&self, parent: u64, name: &str) {
        if let Some(names) = self.forget_names.get() {
            let _ = names.try_send((parent, name.to_owned()));
        }
    }

    /// Closes a daemon handle the bridge opened for itself; the answer does not matter.
    pub(crate) fn close_quietly(&self, scheme: usize, caller: Caller, fd: Fd) {
        self.call(scheme, caller, Call::Close { fd }, |_| {});
    }

    /// Opens `path`, runs `then` with the handle, and closes it right behind `then`'s calls.
    pub(crate) fn with_open(
        self: &Arc<Self>,
        scheme: usize,
        caller: Caller,
        path: &str,
        flags: usize,
        then: impl FnOnce(FsResult<Fd>) + Send + 'static,
    ) {
        let this = Arc::clone(self);
        let open = Call::Open { path: path.to_owned(), flags: flags as u64 };
        self.call(scheme, caller, open, move |result| match fd_of(result) {
            Ok(fd) => {
                then(Ok(fd));
                this.close_quietly(scheme, caller, fd);
            }
            Err(err) => then(Err(err)),
        });
    }

    /// Opens `path` with `flags`, makes each of `steps` on the new handle, one after the other,
    /// and closes it; `done` gets the last step's answer or the first error (the steps after a
    /// failed one are not made). One `OnPath` round trip where the daemon runs it.
    pub(crate) fn on_path(
        self: &Arc<Self>,
        scheme: usize,
        caller: Caller,
        path: &str,
        flags: usize,
        steps: Vec<PathStep>,
        done: impl FnOnce(CallResult<Reply>) + Send + 'static,
    ) {
        if self.schemes[scheme].backend.path_steps() {
            let call = Call::OnPath { path: path.to_owned(), flags: flags as u64, steps };
            return self.call(scheme, caller, call, done);
        }
        let this = Arc::clone(self);
        let open = Call::Open { path: path.to_owned(), flags: flags as u64 };
        self.call(scheme, caller, open, move |result| match result {
            Ok(Reply::Value(fd)) => this.steps_on(scheme, caller, Fd(fd), steps, Box::new(done)),
            Ok(other) => {
                let what = format!("daemon answered {} to an open", other.kind());
                done(Err(CallError::Protocol(what)));
            }
            Err(err) => done(Err(err)),
        });
    }

    /// `on_path` without the compound: the first of `steps` on `fd`, the rest once it is
    /// answered, then the close.
    fn steps_on(
        self: &Arc<Self>,
        scheme: usize,
        caller: Caller,
        fd: Fd,
        mut steps: Vec<PathStep>,
        done: crate::Completion,
    ) {
        if steps.is_empty() {
            self.close_quietly(scheme, caller, fd);
            return done(Err(CallError::Errno(scheme_protocol::Errno::EINVAL)));
        }
        let step = steps.remove(0).on(fd);
        let this = Arc::clone(self);
        self.call(scheme, caller, step, move |result| {
            if result.is_ok() && !steps.is_empty() {
                return this.steps_on(scheme, caller, fd, steps, done);
            }
            this.close_quietly(scheme, caller, fd);
            done(result);
        });
    }

    /// Whether `scheme`'s daemon runs compound calls (`StatPath`, `OpenStat`).
    fn compound(&self, scheme: usize) -> bool {
        self.schemes[scheme].backend.compound()
    }

    /// Stats `path` without side effects: an `O_STAT | O_NOFOLLOW` open, fstat, close (one
    /// `StatPath` round trip where the daemon runs compounds).
    pub(crate) fn stat_path(
        self: &Arc<Self>,
        scheme: usize,
        caller: Caller,
        path: &str,
        done: impl FnOnce(FsResult<Stat>) + Send + 'static,
    ) {
        if self.compound(scheme) {
            let call = Call::StatPath { path: path.to_owned() };
            return self.call(scheme, caller, call, move |r| done(stat_of(r)));
        }
        let this = Arc::clone(self);
        self.with_open(scheme, caller, path, O_STAT | O_NOFOLLOW, move |fd| match fd {
            Ok(fd) => this.call(scheme, caller, Call::Fstat { fd }, move |r| done(stat_of(r))),
            Err(err) => done(Err(err)),
        });
    }

    /// Like [`Shared::stat_path`], but a stat that raced a rename or unlink (which may
    /// describe the file that was at `path` before) is made again, a few times at most, so
    /// that one file's attributes are never given to another.
    pub(crate) fn stat_path_stable(
        self: &Arc<Self>,
        scheme: usize,
        caller: Caller,
        path: String,
        done: impl FnOnce(FsResult<Stat>) + Send + 'static,
    ) {
        self.stat_path_tries(scheme, caller, path, STABLE_STAT_TRIES, Box::new(done));
    }

    fn stat_path_tries(
        self: &Arc<Self>,
        scheme: usize,
        caller: Caller,
        path: String,
        tries: u32,
        done: Box<dyn FnOnce(FsResult<Stat>) + Send>,
    ) {
        let epoch = self.inodes().epoch();
        let this = Arc::clone(self);
        self.stat_path(scheme, caller, &path.clone(), move |stat| {
            if tries > 1 && this.inodes().epoch() != epoch {
                return this.stat_path_tries(scheme, caller, path, tries - 1, done);
            }
            done(stat)
        });
    }

    /// Opens `path` with `flags` and fstats the new handle (one `OpenStat` round trip where
    /// the daemon runs compounds); a handle whose fstat fails is closed. FUSE request `unique`
    /// can interrupt the open.
    pub(crate) fn open_stat(
        self: &Arc<Self>,
        unique: u64,
        (scheme, caller): (usize, Caller),
        path: String,
        flags: usize,
        done: impl FnOnce(FsResult<(Fd, Stat)>) + Send + 'static,
    ) {
        if self.compound(scheme) {
            let call = Call::OpenStat { path, flags: flags as u64 };
            return self.call_interruptible(unique, scheme, caller, call, move |r| {
                done(opened_of(r));
            });
        }
        let this = Arc::clone(self);
        let open = Call::Open { path, flags: flags as u64 };
        self.call_interruptible(unique, scheme, caller, open, move |r| match fd_of(r) {
            Ok(fd) => {
                let inner = Arc::clone(&this);
                this.fstat(scheme, caller, fd, move |stat| match stat {
                    Ok(stat) => done(Ok((fd, stat))),
                    Err(err) => {
                        inner.close_quietly(scheme, caller, fd);
                        done(Err(err));
                    }
                });
            }
            Err(err) => done(Err(err)),
        });
    }

    /// fstat of an open daemon handle.
    pub(crate) fn fstat(
        &self,
        scheme: usize,
        caller: Caller,
        fd: Fd,
        done: impl FnOnce(FsResult<Stat>) + Send + 'static,
    ) {
        self.call(scheme, caller, Call::Fstat { fd }, move |r| done(stat_of(r)));
    }
}

/// A handle id from an open or dup answer.
pub(crate) fn fd_of(result: CallResult<Reply>) -> FsResult<Fd> {
    value_of(result).map(Fd)
}

/// A number from an answer.
pub(crate) fn value_of(result: CallResult<Reply>) -> FsResult<u64> {
    match result {
        Ok(Reply::Value(value)) => Ok(value),
        Ok(other) => Err(wrong_kind("a value", &other)),
        Err(err) => Err(errno::of(&err)),
    }
}

/// Bytes from an answer (sharing the buffer its frame arrived in, if large).
pub(crate) fn data_of(result: CallResult<Reply>) -> FsResult<scheme_protocol::Bytes> {
    match result {
        Ok(Reply::Data(bytes)) => Ok(bytes),
        Ok(other) => Err(wrong_kind("data", &other)),
        Err(err) => Err(errno::of(&err)),
    }
}

/// A stat from an answer.
pub(crate) fn stat_of(result: CallResult<Reply>) -> FsResult<Stat> {
    match result {
        Ok(Reply::Stat(stat)) => Ok(stat),
        Ok(other) => Err(wrong_kind("a stat", &other)),
        Err(err) => Err(errno::of(&err)),
    }
}

/// The handle and stat from an `OpenStat` answer.
pub(crate) fn opened_of(result: CallResult<Reply>) -> FsResult<(Fd, Stat)> {
    match result {
        Ok(Reply::Opened { fd, stat }) => Ok((fd, stat)),
        Ok(other) => Err(wrong_kind("an opened handle", &other)),
        Err(err) => Err(errno::of(&err)),
    }
}

/// A well-formed answer of the wrong kind (a hostile or broken daemon): logged, EIO.
fn wrong_kind(expected: &str, got: &Reply) -> LinuxErrno {
    log::warn!("daemon answered {} where {expected} was due; EIO", got.kind());
    LinuxErrno::EIO
}

/// Collects the answers of several pipelined calls and finishes once all are in, with the
/// first error or the value the last step produced.
pub(crate) struct Gather<T> {
    state: Mutex<GatherState<T>>,
}

struct GatherState<T> {
    left: usize,
    error: Option<LinuxErrno>,
    value: Option<T>,
    finish: Option<Box<dyn FnOnce(FsResult<T>) + Send>>,
}

impl<T: Send + 'static> Gather<T> {
    /// Waits for `calls` answers, then runs `finish`.
    pub(crate) fn new(
        calls: usize,
        finish: impl FnOnce(FsResult<T>) + Send + 'static,
    ) -> Arc<Self> {
        let state =
            GatherState { left: calls, error: None, value: None, finish: Some(Box::new(finish)) };
        Arc::new(Gather { state: Mutex::new(state) })
    }

    /// One answer: an error (the first one wins), or the value (or `None` for "ok").
    pub(crate) fn arrive(&self, result: FsResult<Option<T>>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(Some(value)) => state.value = Some(value),
            Ok(None) => {}
            Err(err) => {
                state.error.get_or_insert(err);
            }
        }
        state.left -= 1;
        if state.left > 0 {
            return;
        }
        let finish = state.finish.take().expect("finished once");
        let outcome = match (state.error, state.value.take()) {
            (Some(err), _) => Err(err),
            (None, Some(value)) => Ok(value),
            (None, None) => Err(LinuxErrno::EIO),
        };
        drop(state);
        finish(outcome);
    }
}

impl<T> std::fmt::Debug for Gather<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gather")
    }
}

/// Whether the FUSE device (or the relay's socket) holds a request not read yet: one system
/// call that does not wait.
fn requests_wait(requests: &std::os::fd::OwnedFd) -> bool {
    let mut fds = [PollFd::new(requests, PollFlags::IN)];
    matches!(poll(&mut fds, Some(&Timespec::default())), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use scheme_protocol::Tag;

    use super::*;
    use crate::client::{Completion, Event};

    /// A backend that answers every call at once and records which way each was sent.
    #[derive(Debug, Default)]
    struct Recorder {
        sent: Mutex<Vec<(&'static str, Call)>>,
    }

    impl Recorder {
        fn answer(&self, how: &'static str, call: Call, done: Completion) -> Tag {
            self.sent.lock().unwrap().push((how, call));
            done(Ok(Reply::Value(0)));
            Tag(0)
        }
    }

    impl Backend for Recorder {
        fn submit(&self, _: Caller, call: Call, done: Completion) -> Tag {
            self.answer("submit", call, done)
        }
        fn submit_and_read(&self, _: Caller, call: Call, done: Completion) -> Tag {
            self.answer("read", call, done)
        }
        fn submit_ahead(&self, _: Caller, call: Call, done: Completion) -> Tag {
            self.answer("ahead", call, done)
        }
        fn cancel(&self, _: Tag) {}
        fn events(&self) -> crossbeam_channel::Receiver<Event> {
            crossbeam_channel::never()
        }
        fn closed(&self) -> crossbeam_channel::Receiver<()> {
            crossbeam_channel::never()
        }
        fn shutdown(&self) {}
        fn scheme(&self) -> &str {
            "rec"
        }
    }

    /// A mount of one scheme served by a [`Recorder`]; the fuser thread reads its answers
    /// where `answers_here`.
    fn shared(answers_here: bool) -> (Shared, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let scheme = Scheme {
            name: "rec".into(),
            backend: Arc::clone(&recorder) as Arc<dyn Backend>,
            never_blocks: true,
            answers_here,
            queued_streak: 0.into(),
            unlooked: 0.into(),
        };
        let owner = Owner { uid: None, gid: None };
        let ttl = Ttl { entry: Duration::from_secs(1), attr: Duration::from_secs(1) };
        (Shared::new(vec![scheme], false, owner, ttl, MountLimits::default()), recorder)
    }

    fn caller() -> Caller {
        Caller { pid: 1, uid: 0, gid: 0 }
    }

    #[test]
    fn a_released_handle_is_closed_with_the_next_call_only_while_a_request_waits() {
        let (shared, recorder) = shared(true);
        let (requests, mut kernel) = std::io::pipe().unwrap();
        shared.requests.set(requests.into()).unwrap();
        shared.close_released(0, caller(), Fd(3));
        kernel.write_all(b"a request").unwrap();
        shared.close_released(0, caller(), Fd(4));
        let sent = recorder.sent.lock().unwrap().clone();
        assert_eq!(
            sent,
            [("read", Call::Close { fd: Fd(3) }), ("ahead", Call::Close { fd: Fd(4) })]
        );
    }

    #[test]
    fn a_released_handle_is_closed_at_once_where_a_reader_thread_takes_the_answers() {
        let (shared, recorder) = shared(false);
        shared.close_released(0, caller(), Fd(5));
        assert_eq!(recorder.sent.lock().unwrap().clone(), [("submit", Call::Close { fd: Fd(5) })]);
    }
}
