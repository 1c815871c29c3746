//! The handshake: each side first sends a [`Hello`] (magic, version, scheme name, largest frame
//! it accepts) and checks the other's. Both sides send before reading, so neither waits on
//! the other. The version is checked before the rest of the hello is decoded, so a peer of
//! another version gets "version mismatch", not "malformed frame".

use std::io::{Read, Write};

use crate::codec::{decode_body, FrameReader, FrameWriter, MAX_FRAME};
use crate::error::{Error, Result};
use crate::message::{Frame, Hello, MAGIC, VERSION};

/// The smallest `max_frame` a side may announce: room for any header and a useful payload.
pub const MIN_FRAME: usize = 4096;

/// The frame variant index of `Hello`, as it starts a body.
const HELLO_VARIANT: [u8; 4] = [0; 4];

/// What the peer announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The scheme the peer serves or wants ("" = any).
    pub scheme: String,
    /// The largest frame body the peer accepts (already capped at [`MAX_FRAME`]).
    pub max_frame: usize,
    /// The `FEATURE_*` bits both hellos have.
    pub features: u64,
}

/// Our hello for `scheme`, accepting bodies of up to `max_frame` bytes (clamped to
/// [`MIN_FRAME`]..=[`MAX_FRAME`]).
pub fn hello(scheme: &str, max_frame: usize) -> Hello {
    Hello {
        magic: MAGIC,
        version: VERSION,
        scheme: scheme.to_owned(),
        max_frame: max_frame.clamp(MIN_FRAME, MAX_FRAME) as u32,
        features: 0,
    }
}

/// Sends `ours`, reads the peer's hello and checks it. On success the reader and writer use the
/// negotiated limits (ours for reading, the peer's for writing).
pub fn handshake<R: Read, W: Write>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    ours: &Hello,
) -> Result<Peer> {
    let sent = writer.write_frame(&Frame::Hello(ours.clone()));
    reader.set_max(ours.max_frame as usize);
    // What the peer said explains more than a broken pipe (it may have exited after talking).
    let theirs = read_hello(reader)?;
    sent?;
    if !ours.scheme.is_empty() && !theirs.scheme.is_empty() && ours.scheme != theirs.scheme {
        return Err(Error::SchemeMismatch { ours: ours.scheme.clone(), theirs: theirs.scheme });
    }
    let max_frame = (theirs.max_frame as usize).min(MAX_FRAME);
    if max_frame < MIN_FRAME {
        return Err(Error::FrameLimitTooSmall { theirs: max_frame, min: MIN_FRAME });
    }
    writer.set_max(max_frame);
    Ok(Peer { scheme: theirs.scheme, max_frame, features: ours.features & theirs.features })
}

/// Reads the first frame and insists that it is a hello of our version.
pub fn read_hello<R: Read>(reader: &mut FrameReader<R>) -> Result<Hello> {
    let body = match reader.read_body() {
        Ok(body) => body,
        Err(Error::FrameTooLarge { .. }) => return Err(not_a_peer(reader.last_bytes())),
        Err(err) => return Err(err),
    };
    if body.len() >= 4 && body[..4] != HELLO_VARIANT {
        // Another frame first is a confused peer; anything else is not a peer at all.
        return match decode_body(body) {
            Ok(other) => Err(Error::Unexpected { got: other.kind(), expected: "Hello" }),
            Err(_) => Err(not_a_peer(body)),
        };
    }
    check_prefix(body)?;
    match decode_body(body)? {
        Frame::Hello(hello) => Ok(hello),
        other => Err(Error::Unexpected { got: other.kind(), expected: "Hello" }),
    }
}

/// Checks magic and version at their fixed offsets (PROTOCOL.md, "Handshake").
fn check_prefix(body: &[u8]) -> Result<()> {
    if body.len() < 16 || body[4..12] != MAGIC {
        return Err(not_a_peer(body));
    }
    let theirs = u32::from_le_bytes([body[12], body[13], body[14], body[15]]);
    if theirs != VERSION {
        return Err(Error::Version { ours: VERSION, theirs });
    }
    Ok(())
}

fn not_a_peer(first_bytes: &[u8]) -> Error {
    Error::NotAPeer { first_bytes: first_bytes[..first_bytes.len().min(16)].to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_frame;

    /// Runs our side of the handshake against the bytes a peer would send.
    fn against(peer_sends: &[u8], ours: &Hello) -> Result<Peer> {
        let mut reader = FrameReader::new(peer_sends, MAX_FRAME);
        let mut writer = FrameWriter::new(Vec::new(), MAX_FRAME);
        handshake(&mut reader, &mut writer, ours)
    }

    fn bytes_of(hello: Hello) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_frame(&Frame::Hello(hello), MAX_FRAME, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn agrees_on_the_smaller_frame_limit_and_learns_the_scheme() {
        let peer = against(&bytes_of(hello("chan", 4096)), &hello("", MAX_FRAME)).unwrap();
        assert_eq!(peer, Peer { scheme: "chan".into(), max_frame: 4096, features: 0 });
    }

    #[test]
    fn a_feature_is_agreed_only_when_both_hellos_have_it() {
        let region = Hello { features: crate::FEATURE_REGION, ..hello("chan", 4096) };
        let both = against(&bytes_of(region.clone()), &region).unwrap();
        assert_eq!(both.features, crate::FEATURE_REGION);
        let only_theirs = against(&bytes_of(region.clone()), &hello("", MAX_FRAME)).unwrap();
        assert_eq!(only_theirs.features, 0);
        let only_ours = against(&bytes_of(hello("chan", 4096)), &region).unwrap();
        assert_eq!(only_ours.features, 0);
    }

    #[test]
    fn another_version_is_refused_with_both_versions_named() {
        // A future hello may have other fields after the version; only the prefix is read.
        let mut future = bytes_of(Hello { version: 3, ..hello("chan", 4096) });
        future.extend_from_slice(&[0xee; 9]);
        let len = (future.len() - 4) as u32;
        future[..4].copy_from_slice(&len.to_le_bytes());
        let err = against(&future, &hello("chan", MAX_FRAME)).unwrap_err();
        assert!(matches!(err, Error::Version { ours: 2, theirs: 3 }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "protocol version mismatch: we speak version 2, the peer speaks version 3"
        );
    }

    #[test]
    fn text_on_the_pipe_is_not_a_peer() {
        let err = against(b"hello from a shell script\n", &hello("", MAX_FRAME)).unwrap_err();
        assert!(matches!(err, Error::NotAPeer { .. }), "{err:?}");
        assert!(err.to_string().contains("hell"), "{err}");
    }

    #[test]
    fn a_peer_serving_another_scheme_is_refused() {
        let err = against(&bytes_of(hello("time", 4096)), &hello("chan", MAX_FRAME)).unwrap_err();
        assert!(matches!(err, Error::SchemeMismatch { .. }), "{err:?}");
    }

    #[test]
    fn a_silent_peer_is_a_closed_stream_not_a_hang() {
        assert!(matches!(against(b"", &hello("", MAX_FRAME)), Err(Error::Closed)));
    }

    #[test]
    fn a_call_before_the_hello_is_refused() {
        let mut bytes = Vec::new();
        let frame = Frame::Cancel { tag: crate::Tag(1) };
        encode_frame(&frame, MAX_FRAME, &mut bytes).unwrap();
        let err = against(&bytes, &hello("", MAX_FRAME)).unwrap_err();
        assert!(matches!(err, Error::Unexpected { got: "Cancel", expected: "Hello" }), "{err:?}");
    }

    #[test]
    fn a_peer_announcing_a_uselessly_small_frame_limit_is_refused() {
        let tiny = Hello { max_frame: 100, ..hello("chan", MAX_FRAME) };
        let err = against(&bytes_of(tiny), &hello("", MAX_FRAME)).unwrap_err();
        assert!(matches!(err, Error::FrameLimitTooSmall { theirs: 100, min: 4096 }), "{err:?}");
    }
}
