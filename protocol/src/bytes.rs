//! [`Bytes`]: a byte buffer that serde encodes as one byte string (length, then the bytes in a
//! single copy) instead of a sequence of `u8` elements, so a 1 MiB payload costs one `memcpy`
//! to encode. Its bytes may be shared with the buffer a frame arrived in (the `bytes` crate's
//! reference-counted [`::bytes::Bytes`]), so that decoding a large payload copies nothing
//! ([`crate::codec::decode_body_in`]).

use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A payload (write data, read data, dup buffers). Immutable: build it from a `Vec<u8>` (no
/// copy), and take it back with [`Bytes::into_vec`].
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(::bytes::Bytes);

impl Bytes {
    /// The contents as text with invalid UTF-8 replaced, for logs.
    pub fn lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The bytes as a vector: no copy if this buffer is the only owner of an allocation it
    /// starts, a copy otherwise (a payload decoded in place shares its frame's buffer).
    pub fn into_vec(self) -> Vec<u8> {
        self.0.into()
    }

    /// The bytes `range` of `buffer`, sharing it.
    pub(crate) fn shared(buffer: &::bytes::Bytes, range: std::ops::RangeFrom<usize>) -> Bytes {
        Bytes(buffer.slice(range))
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        write!(f, "Bytes({}:", self.0.len())?;
        for byte in self.0.iter().take(SHOWN) {
            write!(f, "{byte:02x}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, "..")?;
        }
        write!(f, ")")
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v.into())
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(::bytes::Bytes::copy_from_slice(v))
    }
}

impl From<&str> for Bytes {
    fn from(v: &str) -> Self {
        Bytes::from(v.as_bytes())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_bytes` lets a slice decoder hand over the payload in place, so decoding
        // copies it exactly once, into a buffer of exactly its length.
        deserializer.deserialize_bytes(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    // Self-describing formats (used only in tests and tools) may hand over a sequence.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element::<u8>()? {
            out.push(byte);
        }
        Ok(Bytes::from(out))
    }
}
