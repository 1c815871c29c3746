//! [`Error`]: what can go wrong with the byte stream itself (as opposed to an [`Errno`] a
//! daemon answered). Every malformed, truncated or oversized input ends here, never in a panic.
//!
//! [`Errno`]: crate::Errno

use std::{fmt, io};

/// A transport or framing failure. After any variant but [`Error::Io`] with
/// `ErrorKind::Interrupted` or `ErrorKind::WouldBlock` (a non-blocking stream: the reader keeps
/// what arrived of the frame), the stream is no longer in sync and should be dropped.
#[derive(Debug)]
pub enum Error {
    /// The underlying pipe failed.
    Io(io::Error),
    /// The peer closed the stream cleanly between two frames.
    Closed,
    /// The stream ended inside a frame: `got` of `expected` bytes arrived.
    Truncated {
        /// Bytes the frame needed.
        expected: usize,
        /// Bytes that arrived before end of stream.
        got: usize,
    },
    /// A length prefix larger than the limit; nothing was allocated for it.
    FrameTooLarge {
        /// The announced body length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The body does not decode as a frame.
    Decode(String),
    /// The body decoded but `extra` bytes were left over.
    TrailingBytes {
        /// Bytes after the frame.
        extra: usize,
    },
    /// A frame could not be encoded (larger than the peer accepts, for instance).
    Encode(String),
    /// The peer speaks another protocol version.
    Version {
        /// Our [`VERSION`](crate::VERSION).
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The peer's first bytes are not a scheme-bridge hello.
    NotAPeer {
        /// The first bytes received, for the error message.
        first_bytes: Vec<u8>,
    },
    /// The peer announced a `max_frame` too small to carry any call.
    FrameLimitTooSmall {
        /// What the peer announced.
        theirs: usize,
        /// The smallest limit accepted.
        min: usize,
    },
    /// The peer serves (or wants) another scheme.
    SchemeMismatch {
        /// The scheme we serve or want.
        ours: String,
        /// The scheme the peer named.
        theirs: String,
    },
    /// A frame that is valid but not allowed here (a `Reply` sent to a daemon, a second `Hello`).
    Unexpected {
        /// The frame kind received.
        got: &'static str,
        /// What was allowed.
        expected: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(err) => write!(f, "pipe error: {err}"),
            Error::Closed => write!(f, "peer closed the connection"),
            Error::Truncated { expected, got } => {
                write!(f, "stream ended inside a frame ({got} of {expected} bytes)")
            }
            Error::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            Error::Decode(msg) => write!(f, "malformed frame: {msg}"),
            Error::TrailingBytes { extra } => write!(f, "malformed frame: {extra} trailing bytes"),
            Error::Encode(msg) => write!(f, "cannot encode frame: {msg}"),
            Error::Version { ours, theirs } => write!(
                f,
                "protocol version mismatch: we speak version {ours}, the peer speaks version {theirs}"
            ),
            Error::NotAPeer { first_bytes } => write!(
                f,
                "peer does not speak the scheme-bridge protocol (first bytes {:?})",
                String::from_utf8_lossy(first_bytes)
            ),
            Error::FrameLimitTooSmall { theirs, min } => {
                write!(f, "peer accepts frames of only {theirs} bytes (at least {min} needed)")
            }
            Error::SchemeMismatch { ours, theirs } => {
                write!(f, "scheme mismatch: expected {ours:?}, peer serves {theirs:?}")
            }
            Error::Unexpected { got, expected } => {
                write!(f, "unexpected {got} frame (expected {expected})")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Io(err)
    }
}

/// Result with a protocol [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
