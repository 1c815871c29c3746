//! scheme-bridge: runs Redox scheme daemons on Linux.
//!
//! - [`SchemeSocket`] (wire -> `Packet`): the daemon side. A daemon written against
//!   redox_syscall 0.5.18's scheme traits reads `Packet`s from it and writes replies, exactly as
//!   it would on the Redox kernel's `:name` socket; [`serve`] has the main loops.
//! - [`Client`]: the caller side. Speaks the wire to a daemon (a spawned child or any pair of
//!   pipes), many calls outstanding at once.

#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod backend;
mod bell;
pub mod busy_poll;
pub mod client;
mod compound;
pub mod fuse;
mod locate;
mod packet;
pub mod redox;
pub mod region;
pub mod ring;
pub mod serve;
mod socket;
mod source;
pub mod trace;

pub use backend::{Backend, InProcess};
pub use client::{CallError, CallResult, Client, Completion, Event, Limits, PendingCall};
pub use locate::find_daemon;
#[doc(hidden)]
pub use packet::translate_offline;
pub use serve::{serve_block, serve_block_mut, serve_fs, serve_scheme, serve_scheme_mut, Getdents};
pub use socket::{EventPoster, Next, SchemeSocket, PACKET_SIZE};
pub use trace::Trace;

/// A thread name for `scheme`'s `role` thread. Scheme names come from the peer, and a thread
/// name with a NUL byte panics, so anything but printable ASCII becomes `?`.
pub(crate) fn thread_name(scheme: &str, role: &str) -> String {
    let scheme: String =
        scheme.chars().map(|c| if c.is_ascii_graphic() { c } else { '?' }).take(32).collect();
    format!("{scheme}-{role}")
}
