//! Redox scheme daemons that run unchanged on the scheme bridge.
//!
//! Each module implements one scheme against redox_syscall 0.5.18's legacy traits only
//! (`SchemeMut` for schemes that never block, `SchemeBlockMut` for `chan:`), with no
//! Linux-specific code, so the same logic would serve real `Packet`s on Redox:
//!
//! - [`chan`]: ipcd's `chan:` local stream sockets (blocking, posts events);
//! - [`time`]: the kernel's `time:` clocks and one-shot deadlines (posts events);
//! - [`zero`]: zerod/nulld's `null:` and `zero:` devices;
//! - [`rand`]: randd's `rand:` ChaCha20 CSPRNG.
//!
//! Schemes that post readiness events take a [`PostEvent`] closure at construction. On Linux
//! the binary passes a closure that hands the event to the bridge; on Redox it would write an
//! `id = 0, a = SYS_FEVENT, b = id, c = flags` packet to the scheme socket.
//!
//! [`run`](fn@run) is the binaries' shared `main` (stdio wire, logging); it is not scheme logic.
#![forbid(unsafe_code)]

pub mod builtin;
pub mod chan;
pub mod ramfs;
pub mod rand;
mod run;
pub mod time;
pub mod zero;

pub use run::run;

use syscall::EventFlags;

/// Posts a readiness event for a handle: `(handle id, flags)`.
pub type PostEvent = Box<dyn Fn(usize, EventFlags) + Send + Sync>;

#[cfg(test)]
pub(crate) mod test_support {
    //! A [`PostEvent`] that records every posted event, for unit tests.
    use super::PostEvent;
    use std::sync::{Arc, Mutex};
    use syscall::EventFlags;

    /// Events posted so far, in order.
    pub type Recorded = Arc<Mutex<Vec<(usize, EventFlags)>>>;

    /// A poster that appends to the returned shared list.
    pub fn recording_poster() -> (PostEvent, Recorded) {
        let recorded: Recorded = Arc::default();
        let sink = Arc::clone(&recorded);
        let post: PostEvent = Box::new(move |id, flags| sink.lock().unwrap().push((id, flags)));
        (post, recorded)
    }

    /// Takes the events recorded so far, leaving the list empty.
    pub fn take(recorded: &Recorded) -> Vec<(usize, EventFlags)> {
        std::mem::take(&mut *recorded.lock().unwrap())
    }
}
