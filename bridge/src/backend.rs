//! What the FUSE front end talks to: a scheme daemon behind the wire ([`Client`]), or a scheme
//! served in this very process ([`InProcess`]: fuser's thread calls the scheme's `handle`
//! directly, no wire, no pipe, no other thread), for comparing and for users who want it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::Receiver;
use scheme_protocol::{Call, Caller, Reply, Tag, MAX_FRAME, MAX_OVERHEAD};
use syscall::error::{Error, EINVAL};
use syscall::number::SYS_GETDENTS;
use syscall::SchemeMut;

use crate::client::{CallError, CallResult, Client, Completion, Event};
use crate::packet::{self, Buffers};
use crate::serve::Getdents;

/// A scheme the mount can send calls to.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Sends `call`; `done` runs with the answer (possibly before this returns).
    fn submit(&self, caller: Caller, call: Call, done: Completion) -> Tag;
    /// Like `submit`, for a scheme whose calls all answer at once: `done` may run in this
    /// thread, which then waits for the answer (see [`Client::submit_and_read`]).
    fn submit_and_read(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        self.submit(caller, call, done)
    }
    /// Like `submit`, but a reader thread it starts stops once no call has been in flight for
    /// a while (see [`Client::submit_for_now`]).
    fn submit_for_now(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        self.submit(caller, call, done)
    }
    /// Like `submit_and_read`, for a call this thread follows at once with another
    /// `submit_and_read`, which reads both answers (see [`Client::submit_ahead`]).
    fn submit_ahead(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        self.submit(caller, call, done)
    }
    /// Gives up on `tag` (its answer becomes EINTR).
    fn cancel(&self, tag: Tag);
    /// Events the scheme posts.
    fn events(&self) -> Receiver<Event>;
    /// Becomes disconnected when the scheme is gone.
    fn closed(&self) -> Receiver<()>;
    /// Stops the scheme.
    fn shutdown(&self);
    /// The scheme's name.
    fn scheme(&self) -> &str;
    /// Whether the scheme takes the compound calls (`StatPath`, `OpenStat`).
    fn compound(&self) -> bool {
        false
    }
    /// Whether the scheme takes the compound call `OnPath`.
    fn path_steps(&self) -> bool {
        false
    }
    /// Slots of a payload region shared with the scheme, for large reads and writes.
    fn payload_slots(&self) -> Option<Arc<crate::region::Slots>> {
        None
    }
}

impl Backend for Client {
    fn submit(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        Client::submit(self, caller, call, done)
    }
    fn submit_and_read(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        Client::submit_and_read(self, caller, call, done)
    }
    fn submit_ahead(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        Client::submit_ahead(self, caller, call, done)
    }
    fn submit_for_now(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        Client::submit_for_now(self, caller, call, done)
    }
    fn payload_slots(&self) -> Option<Arc<crate::region::Slots>> {
        Client::payload_slots(self)
    }
    fn compound(&self) -> bool {
        Client::compound(self)
    }
    fn path_steps(&self) -> bool {
        Client::path_steps(self)
    }
    fn cancel(&self, tag: Tag) {
        Client::cancel(self, tag);
    }
    fn events(&self) -> Receiver<Event> {
        Client::events(self).clone()
    }
    fn closed(&self) -> Receiver<()> {
        Client::closed(self)
    }
    fn shutdown(&self) {
        Client::shutdown(self);
    }
    fn scheme(&self) -> &str {
        Client::scheme(self)
    }
}

/// A filesystem scheme (`SchemeMut` with `getdents`, like ramfs) answered in the caller's
/// thread. Its calls never block, so there is nothing to park, cancel or post.
pub struct InProcess<S> {
    name: String,
    scheme: Mutex<S>,
    next_tag: std::sync::atomic::AtomicU64,
}

impl<S> fmt::Debug for InProcess<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcess").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<S: SchemeMut + Getdents + Send> InProcess<S> {
    /// Serves `scheme` as `name`.
    pub fn new(name: &str, scheme: S) -> InProcess<S> {
        InProcess { name: name.to_owned(), scheme: Mutex::new(scheme), next_tag: 1.into() }
    }

    /// The same packet the wire would carry, built and answered here.
    fn answer(&self, id: u64, caller: Caller, call: Call) -> CallResult<Reply> {
        let name = call.name();
        let (mut packet, mut buffers) =
            packet::from_call(id, caller, call, MAX_FRAME - MAX_OVERHEAD, None)
                .map_err(CallError::Errno)?;
        let mut scheme = self.scheme.lock().unwrap_or_else(PoisonError::into_inner);
        if packet.a == SYS_GETDENTS {
            let opaque = u64::from(packet.uid) | (u64::from(packet.gid) << 32);
            let result = match &mut buffers {
                Buffers::Out(buf) => scheme.getdents(packet.b, buf, opaque),
                _ => Err(Error::new(EINVAL)),
            };
            packet.a = Error::mux(result);
        } else {
            scheme.handle(&mut packet);
        }
        drop(scheme);
        packet::response(name, &packet, buffers).map_err(CallError::Errno)
    }
}

impl<S: SchemeMut + Getdents + Send> Backend for InProcess<S> {
    fn submit(&self, caller: Caller, call: Call, done: Completion) -> Tag {
        let tag = Tag(self.next_tag.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        done(self.answer(tag.0, caller, call));
        tag
    }
    fn cancel(&self, _tag: Tag) {}
    fn events(&self) -> Receiver<Event> {
        crossbeam_channel::never()
    }
    fn closed(&self) -> Receiver<()> {
        crossbeam_channel::never()
    }
    fn shutdown(&self) {}
    fn scheme(&self) -> &str {
        &self.name
    }
}
