//! FUSE_INTERRUPT -> wire cancel. Every daemon call made for a FUSE request is registered under
//! the request's unique id; an interrupt for that id cancels the call (the daemon side answers
//! EINTR at once). An interrupt can overtake its request (the relay reads /dev/fuse while fuser
//! is still dispatching it); it is remembered briefly and applied when the call is registered.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustc_hash::FxHashMap;
use scheme_protocol::Tag;

/// Interrupts that arrived before their request, remembered at most this many.
const EARLY_LIMIT: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// The call for this request is in flight with this tag.
    Running { scheme: usize, tag: Tag },
    /// The call already finished before it was registered (a very fast answer).
    Finished,
}

/// What to cancel: (scheme, tag).
pub(crate) type Target = (usize, Tag);

#[derive(Debug, Default)]
struct State {
    /// Keyed by the kernel's request ids: FxHash, no need for a keyed hash.
    calls: FxHashMap<u64, Entry>,
    early: VecDeque<u64>,
}

/// The registry.
#[derive(Debug, Default)]
pub(crate) struct Interrupts {
    state: Mutex<State>,
}

impl Interrupts {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The call for request `unique` was sent with `tag`. Returns the call to cancel at once
    /// if its interrupt already came.
    pub(crate) fn started(&self, unique: u64, scheme: usize, tag: Tag) -> Option<Target> {
        let mut state = self.state();
        if state.calls.remove(&unique) == Some(Entry::Finished) {
            return None;
        }
        if let Some(at) = state.early.iter().position(|&u| u == unique) {
            state.early.remove(at);
            return Some((scheme, tag));
        }
        state.calls.insert(unique, Entry::Running { scheme, tag });
        None
    }

    /// The call for request `unique` was answered.
    pub(crate) fn finished(&self, unique: u64) {
        let mut state = self.state();
        if state.calls.remove(&unique).is_none() {
            state.calls.insert(unique, Entry::Finished); // answered before `started`
        }
    }

    /// The kernel interrupted request `unique`: the call to cancel, if it is running.
    pub(crate) fn interrupted(&self, unique: u64) -> Option<Target> {
        let mut state = self.state();
        match state.calls.get(&unique).copied() {
            Some(Entry::Running { scheme, tag }) => Some((scheme, tag)),
            Some(Entry::Finished) => None,
            None => {
                if state.early.len() == EARLY_LIMIT {
                    state.early.pop_front();
                }
                state.early.push_back(unique);
                None
            }
        }
    }

    /// Calls in flight.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.state().calls.values().filter(|e| matches!(e, Entry::Running { .. })).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupt_cancels_the_running_call() {
        let reg = Interrupts::default();
        assert_eq!(reg.started(7, 0, Tag(3)), None);
        assert_eq!(reg.interrupted(7), Some((0, Tag(3))));
        reg.finished(7);
        assert_eq!(reg.interrupted(7), None);
        assert_eq!(reg.running(), 0);
    }

    #[test]
    fn an_interrupt_that_overtakes_its_request_applies_on_start() {
        let reg = Interrupts::default();
        assert_eq!(reg.interrupted(9), None);
        assert_eq!(reg.started(9, 1, Tag(4)), Some((1, Tag(4))));
    }

    #[test]
    fn a_call_answered_before_registration_leaves_nothing_behind() {
        let reg = Interrupts::default();
        reg.finished(5);
        assert_eq!(reg.started(5, 0, Tag(1)), None);
        assert_eq!(reg.interrupted(5), None);
        assert_eq!(reg.state().calls.len(), 0);
    }
}
