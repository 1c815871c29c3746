//! The scheme-bridge wire protocol: every Redox scheme call as an owned, serialized message,
//! carried over a pipe in length-prefixed frames after a versioned handshake.
//!
//! - [`message`]: the [`Frame`] enum and the types it carries ([`Call`], [`Reply`], ...).
//! - [`codec`]: bytes <-> frames, with hard size limits (the only file that uses bincode).
//! - [`handshake`](mod@handshake): the [`Hello`] exchange.
//!
//! The byte layout is documented, with worked examples, in `PROTOCOL.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod bytes;
pub mod codec;
mod error;
pub mod handshake;
pub mod message;

pub use bytes::Bytes;
pub use codec::{FrameReader, FrameWriter, MAX_FRAME, MAX_OVERHEAD};
pub use error::{Error, Result};
pub use handshake::{handshake, hello, Peer, MIN_FRAME};
pub use message::{
    Call, Caller, Errno, Fd, Frame, Hello, PathStep, Reply, Response, Stat, StatVfs, Tag, TimeSpec,
    FEATURE_COMPOUND, FEATURE_PATH_STEPS, FEATURE_REGION, FEATURE_RING, MAGIC, MAX_PATH_STEPS,
    VERSION,
};
