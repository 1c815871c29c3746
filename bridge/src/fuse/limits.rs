//! Per-mount resource limits: daemon calls in flight for the whole mount (`EAGAIN` beyond), open
//! files per uid (`EMFILE` beyond), and name and path lengths (`ENAMETOOLONG`). Each limit is
//! a counter taken by an RAII slot, so every path that gives a resource back (an answer, a
//! release, a failed open) gives the count back too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use fuser::Errno as LinuxErrno;
use log::warn;

/// The longest file name, as on Linux filesystems (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;
/// The longest scheme path, as Linux's `PATH_MAX` less its terminating NUL.
pub(crate) const PATH_MAX: usize = 4095;

/// Limits on one mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountLimits {
    /// Daemon calls in flight for the whole mount; a request beyond gets `EAGAIN`.
    pub max_requests: usize,
    /// Files (and directories) one uid may have open through the mount; `EMFILE` beyond.
    pub max_handles_per_uid: usize,
}

impl Default for MountLimits {
    fn default() -> Self {
        MountLimits { max_requests: 1 << 15, max_handles_per_uid: 1 << 16 }
    }
}

/// Checks a name and the path it makes.
pub(crate) fn check_path(name: &str, path: &str) -> Result<(), LinuxErrno> {
    if name.len() > NAME_MAX || path.len() > PATH_MAX {
        return Err(LinuxErrno::ENAMETOOLONG);
    }
    Ok(())
}

/// The counters behind [`MountLimits`].
#[derive(Debug)]
pub(crate) struct Counters {
    limits: MountLimits,
    requests: Arc<AtomicUsize>,
    /// Answers the daemon gave that are still being handed to the kernel.
    answering: Arc<AtomicUsize>,
    handles: Arc<Mutex<HashMap<u32, usize>>>,
}

/// One daemon call in flight; dropping it, or [`RequestSlot::answered`], frees the place.
#[derive(Debug)]
pub(crate) struct RequestSlot {
    requests: Arc<AtomicUsize>,
    answering: Arc<AtomicUsize>,
}

impl RequestSlot {
    /// The daemon answered: the place is free at once (the caller may see the answer and call
    /// again before the returned guard is dropped), and the answer counts as being handed on
    /// until then.
    pub(crate) fn answered(self) -> AnswerSlot {
        self.answering.fetch_add(1, Ordering::AcqRel);
        AnswerSlot(Arc::clone(&self.answering))
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer being handed to the kernel.
#[derive(Debug)]
pub(crate) struct AnswerSlot(Arc<AtomicUsize>);

impl Drop for AnswerSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open file of `uid`; dropping it (with the handle, or after a failed open) frees it.
#[derive(Debug)]
pub(crate) struct HandleSlot {
    uid: u32,
    counts: Arc<Mutex<HashMap<u32, usize>>>,
}

impl Drop for HandleSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.uid);
            }
        }
    }
}

impl Counters {
    pub(crate) fn new(limits: MountLimits) -> Counters {
        Counters {
            limits,
            requests: Arc::default(),
            answering: Arc::default(),
            handles: Arc::default(),
        }
    }

    /// A place for one more daemon call, or `EAGAIN`.
    pub(crate) fn request(&self) -> Result<RequestSlot, LinuxErrno> {
        let before = self.requests.fetch_add(1, Ordering::AcqRel);
        let slot = RequestSlot {
            requests: Arc::clone(&self.requests),
            answering: Arc::clone(&self.answering),
        };
        if before >= self.limits.max_requests {
            if before == self.limits.max_requests {
                warn!(
                    "{before} daemon calls in flight, the mount's limit: new requests get EAGAIN"
                );
            }
            return Err(LinuxErrno::EAGAIN);
        }
        Ok(slot)
    }

    /// A place for one more open file of `uid`, or `EMFILE`.
    pub(crate) fn handle(&self, uid: u32) -> Result<HandleSlot, LinuxErrno> {
        let mut counts = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(uid).or_insert(0);
        if *count >= self.limits.max_handles_per_uid {
            warn!("uid {uid} has {count} files open on the mount, the limit: EMFILE");
            return Err(LinuxErrno::EMFILE);
        }
        *count += 1;
        Ok(HandleSlot { uid, counts: Arc::clone(&self.handles) })
    }

    /// Daemon calls in flight now.
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    /// Daemon calls in flight or answered and not yet handed to the kernel.
    pub(crate) fn unanswered(&self) -> usize {
        self.answering.load(Ordering::Acquire) + self.requests()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_past_the_limit_get_eagain_until_one_is_answered() {
        let counters = Counters::new(MountLimits { max_requests: 2, ..MountLimits::default() });
        let first = counters.request().unwrap();
        let _second = counters.request().unwrap();
        assert_eq!(counters.request().unwrap_err(), LinuxErrno::EAGAIN);
        assert_eq!(counters.requests(), 2);
        drop(first);
        assert!(counters.request().is_ok());
        assert_eq!(counters.requests(), 1);
    }

    #[test]
    fn an_answered_call_frees_its_place_before_the_answer_is_handed_on() {
        let counters = Counters::new(MountLimits { max_requests: 1, ..MountLimits::default() });
        let handing_on = counters.request().unwrap().answered();
        assert_eq!((counters.requests(), counters.unanswered()), (0, 1));
        let _next = counters.request().expect("the place is free while the answer goes out");
        drop(handing_on);
        assert_eq!((counters.requests(), counters.unanswered()), (1, 1));
    }

    #[test]
    fn each_uid_has_its_own_handle_quota() {
        let limits = MountLimits { max_handles_per_uid: 1, ..MountLimits::default() };
        let counters = Counters::new(limits);
        let mine = counters.handle(1000).unwrap();
        assert_eq!(counters.handle(1000).unwrap_err(), LinuxErrno::EMFILE);
        let _theirs = counters.handle(1001).unwrap();
        drop(mine);
        assert!(counters.handle(1000).is_ok());
    }

    #[test]
    fn long_names_and_paths_are_refused() {
        assert!(check_path("a", "dir/a").is_ok());
        let long = "x".repeat(NAME_MAX + 1);
        assert_eq!(check_path(&long, &long).unwrap_err(), LinuxErrno::ENAMETOOLONG);
        let deep = "d/".repeat(PATH_MAX / 2 + 1);
        assert_eq!(check_path("d", &deep).unwrap_err(), LinuxErrno::ENAMETOOLONG);
    }
}
