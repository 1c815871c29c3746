//! Events from the daemon -> [`Client::events`](super::Client::events), with bounded memory and
//! no lost wake-up: when the channel is full, an event is merged into a per-handle overflow
//! (flags OR-ed, as a level-triggered poller would see them) and delivered once there is room.
//! Only a daemon posting for more distinct handles than [`OVERFLOW_HANDLES`] loses events, with
//! a warning at most once a second.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::warn;
use scheme_protocol::Fd;

use super::Event;

/// Events buffered in the channel.
pub(super) const BACKLOG: usize = 1 << 16;
/// Handles with merged events waiting for room in the channel.
const OVERFLOW_HANDLES: usize = 1 << 16;

#[derive(Default)]
struct Overflow {
    /// Handle -> flags not yet delivered, and the order they came in.
    flags: HashMap<Fd, u64>,
    order: Vec<Fd>,
    dropped_since_warning: u64,
    last_warning: Option<Instant>,
}

/// The event path of one client.
pub(super) struct Events {
    tx: Sender<Event>,
    overflow: Mutex<Overflow>,
}

impl Events {
    pub(super) fn new() -> (Events, Receiver<Event>) {
        let (tx, rx) = crossbeam_channel::bounded(BACKLOG);
        (Events { tx, overflow: Mutex::default() }, rx)
    }

    fn overflow(&self) -> MutexGuard<'_, Overflow> {
        self.overflow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers `event`, or keeps it (merged) until there is room.
    pub(super) fn post(&self, event: Event) {
        let mut overflow = self.overflow();
        if overflow.flags.is_empty() {
            match self.tx.try_send(event) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(_)) => {}
            }
        }
        overflow.keep(event);
    }

    /// Moves kept events into the channel while it has room (called on a timer).
    pub(super) fn flush(&self) {
        let mut overflow = self.overflow();
        while let Some(&fd) = overflow.order.first() {
            let flags = overflow.flags[&fd];
            match self.tx.try_send(Event { fd, flags }) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {
                    overflow.flags.remove(&fd);
                    overflow.order.remove(0);
                }
                Err(TrySendError::Full(_)) => return,
            }
        }
    }
}

impl Overflow {
    fn keep(&mut self, event: Event) {
        if let Some(flags) = self.flags.get_mut(&event.fd) {
            *flags |= event.flags;
            return;
        }
        if self.flags.len() < OVERFLOW_HANDLES {
            self.flags.insert(event.fd, event.flags);
            self.order.push(event.fd);
            return;
        }
        self.dropped_since_warning += 1;
        if self.last_warning.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        warn!(
            "events pending for {OVERFLOW_HANDLES} handles: dropped {} event(s), the latest \
             fd={} flags={:#x}",
            self.dropped_since_warning, event.fd.0, event.flags
        );
        self.dropped_since_warning = 0;
        self.last_warning = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_past_the_backlog_are_merged_per_handle_and_delivered_when_there_is_room() {
        let (events, rx) = Events::new();
        for i in 0..BACKLOG as u64 {
            events.post(Event { fd: Fd(i % 7), flags: 1 });
        }
        events.post(Event { fd: Fd(99), flags: 1 });
        events.post(Event { fd: Fd(99), flags: 2 });
        events.post(Event { fd: Fd(5), flags: 1 });
        assert_eq!(rx.len(), BACKLOG);
        events.flush(); // still full: nothing moves, nothing is lost
        rx.try_iter().take(BACKLOG).for_each(drop);
        events.flush();
        let late: Vec<Event> = rx.try_iter().collect();
        assert_eq!(late, vec![Event { fd: Fd(99), flags: 3 }, Event { fd: Fd(5), flags: 1 }]);
    }
}
