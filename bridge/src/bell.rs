//! A bell: an eventfd that one thread rings so that another, asleep in `poll` on a pipe and the
//! bell, wakes up. The client's leader waits on one beside the daemon's pipe (the watchdog
//! rings it), a parking daemon's serving thread beside the caller's (event posts ring it).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use log::warn;
use rustix::event::{eventfd, EventfdFlags};

/// An eventfd, non-blocking: ringing never waits, and neither does hushing an unrung bell.
#[derive(Debug)]
pub(crate) struct Bell(OwnedFd);

impl Bell {
    /// A new bell, or `None` (logged with `purpose`) if no eventfd could be made.
    pub(crate) fn new(purpose: &str) -> Option<Bell> {
        eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map(Bell)
            .map_err(|err| warn!("no eventfd for {purpose} ({err})"))
            .ok()
    }

    /// Makes the bell readable until it is hushed.
    pub(crate) fn ring(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Silences the bell after a thread woke on it.
    pub(crate) fn hush(&self) {
        let _ = rustix::io::read(&self.0, &mut [0u8; 8]);
    }
}

impl AsFd for Bell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::{poll, PollFd, PollFlags, Timespec};

    fn rung(bell: &Bell) -> bool {
        let mut fds = [PollFd::new(bell, PollFlags::IN)];
        matches!(poll(&mut fds, Some(&Timespec::default())), Ok(1))
    }

    #[test]
    fn a_bell_is_readable_from_ring_to_hush() {
        let bell = Bell::new("a test").unwrap();
        assert!(!rung(&bell));
        bell.ring();
        bell.ring();
        assert!(rung(&bell));
        bell.hush();
        assert!(!rung(&bell), "one hush silences every ring so far");
        bell.hush(); // an unrung bell: returns at once
    }
}
