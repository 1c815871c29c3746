//! The codec: [`Frame`] <-> bytes. This is the only file that names bincode, so replacing it is
//! a one-file change. A frame is a little-endian `u32` body length followed by the body, which
//! is bincode 2 with fixed-width little-endian integers (layout in PROTOCOL.md). Bodies are
//! limited to [`MAX_FRAME`] bytes on both encode and decode; bincode is configured with the same
//! limit so no length claimed inside a body can allocate past it.

use std::io::{self, IoSlice, Read, Write};
use std::sync::OnceLock;

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use smallvec::SmallVec;

use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::message::{Call, Caller, Fd, Frame, Reply, Tag};

/// The hard upper bound on a frame body, in bytes. A peer may announce a smaller limit.
pub const MAX_FRAME: usize = 16 << 20;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// The most bytes any frame spends around a payload; a payload of `max_frame - MAX_OVERHEAD`
/// bytes always fits.
pub const MAX_OVERHEAD: usize = 64;

/// Buffers larger than this are released after use instead of kept for the next frame.
const RETAINED_BUFFER: usize = 4 << 20;

type Config = Configuration<LittleEndian, Fixint, Limit<MAX_FRAME>>;

fn config() -> Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_FRAME>()
}

/// Appends `frame` to `out` as a length-prefixed frame. Fails, leaving `out` as it was, if
/// the body would exceed `max` bytes.
pub fn encode_frame(frame: &Frame, max: usize, out: &mut Vec<u8>) -> Result<()> {
    encode_followed_by(frame, 0, max, out)
}

/// Appends `frame` with a length prefix that also counts `extra` bytes the caller writes
/// right after it; fails, leaving `out` as it was, if the whole would exceed `max`.
fn encode_followed_by(frame: &Frame, extra: usize, max: usize, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    if let Err(err) = bincode::serde::encode_into_std_write(frame, out, config()) {
        out.truncate(start);
        return Err(Error::Encode(err.to_string()));
    }
    let len = out.len() - start - LEN_PREFIX + extra;
    let max = max.min(MAX_FRAME);
    if len > max {
        out.truncate(start);
        return Err(Error::Encode(format!(
            "{} frame of {len} bytes exceeds the peer's limit of {max} bytes",
            frame.kind()
        )));
    }
    out[start..start + LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Payloads at least this large are written straight from the frame instead of being copied
/// into the frame buffer first.
const SPLIT_PAYLOAD: usize = 16 << 10;

/// For a frame that ends with a large payload (a write call or a data reply), the same frame
/// with an empty payload, and the payload. The payload is the frame's last field, encoded as a
/// `u64` length and the bytes, so the frame's encoding is the head's with that length patched,
/// followed by the payload.
fn split_payload(frame: &Frame) -> Option<(Frame, &[u8])> {
    let empty = Bytes::default;
    let (head, payload) = match frame {
        Frame::Call { tag, caller, call: Call::Write { fd, data } } => {
            let call = Call::Write { fd: *fd, data: empty() };
            (Frame::Call { tag: *tag, caller: *caller, call }, data)
        }
        Frame::Reply { tag, response: Ok(Reply::Data(data)) } => {
            (Frame::Reply { tag: *tag, response: Ok(Reply::Data(empty())) }, data)
        }
        _ => return None,
    };
    (payload.len() >= SPLIT_PAYLOAD).then_some((head, &payload[..]))
}

/// Appends the encoding of `head` (from [`split_payload`]) with its payload length set to
/// `payload` bytes; the payload itself must follow it on the wire.
fn encode_head(head: &Frame, payload: usize, max: usize, out: &mut Vec<u8>) -> Result<()> {
    encode_followed_by(head, payload, max, out)?;
    let at = out.len() - 8;
    out[at..].copy_from_slice(&(payload as u64).to_le_bytes());
    Ok(())
}

/// `write_all` for several buffers: retries short writes and `EINTR`. A single buffer goes
/// out with plain `write`, which the kernel takes measurably faster than a one-piece `writev`
/// (about 0.15 µs a call on a pipe, a few percent of a pinned round trip).
fn write_all_vectored(writer: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    if let [only] = slices {
        return writer.write_all(only);
    }
    while !slices.is_empty() {
        match writer.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// The frames [`split_payload`] splits (a write call, a data reply) as they begin: the encoding
/// of each with an empty payload, whose last 8 bytes are the payload's length. With fixed-width
/// integers a head's length does not depend on its fields' values.
fn payload_heads() -> &'static [usize; 2] {
    static LENS: OnceLock<[usize; 2]> = OnceLock::new();
    LENS.get_or_init(|| {
        let caller = Caller { pid: 0, uid: 0, gid: 0 };
        let write = Frame::Call {
            tag: Tag(0),
            caller,
            call: Call::Write { fd: Fd(0), data: Bytes::default() },
        };
        let data = Frame::Reply { tag: Tag(0), response: Ok(Reply::Data(Bytes::default())) };
        [write, data].map(|head| {
            let mut out = Vec::new();
            encode_frame(&head, MAX_FRAME, &mut out).expect("a head encodes");
            out.len() - LEN_PREFIX
        })
    })
}

/// If `body` is a frame [`split_payload`] would split, the frame with an empty payload and
/// where its payload starts in `body`: the inverse of the split, found by decoding the body's
/// head with its payload length set to 0.
fn find_payload(body: &[u8]) -> Option<(Frame, usize)> {
    payload_heads().iter().find_map(|&head_len| {
        let payload_len = body.len().checked_sub(head_len).filter(|&n| n >= SPLIT_PAYLOAD)?;
        let (head, claimed) = body[..head_len].split_at(head_len - 8);
        if u64::from_le_bytes(claimed.try_into().ok()?) != payload_len as u64 {
            return None;
        }
        let mut empty = [0u8; MAX_OVERHEAD];
        empty[..head.len()].copy_from_slice(head);
        let mut frame = decode_body(&empty[..head_len]).ok()?;
        trailing_payload(&mut frame).is_some().then_some((frame, head_len))
    })
}

/// The payload of a frame of a kind [`split_payload`] splits.
fn trailing_payload(frame: &mut Frame) -> Option<&mut Bytes> {
    match frame {
        Frame::Call { call: Call::Write { data, .. }, .. }
        | Frame::Reply { response: Ok(Reply::Data(data)), .. } => Some(data),
        _ => None,
    }
}

/// `frame` (from [`find_payload`]) with the bytes of `buffer` from `at` on as its payload,
/// sharing the buffer.
fn with_payload_in(mut frame: Frame, buffer: Vec<u8>, at: usize) -> Frame {
    if let Some(payload) = trailing_payload(&mut frame) {
        *payload = Bytes::shared(&::bytes::Bytes::from(buffer), at..);
    }
    frame
}

/// Decodes the frame body `buffer[start..]`, taking the buffer: a large payload at the body's
/// end (write data, read data, as [`FrameWriter`] writes them straight from the frame) is not
/// copied but shares the buffer. Anything else decodes as with [`decode_body`].
pub fn decode_body_in(buffer: Vec<u8>, start: usize) -> Result<Frame> {
    let body = buffer.get(start..).unwrap_or_default();
    match find_payload(body) {
        Some((frame, head_len)) => Ok(with_payload_in(frame, buffer, start + head_len)),
        None => decode_body(body),
    }
}

/// Decodes one frame body (without its length prefix). The whole body must be consumed.
/// Payloads are copied straight out of `body`, so a length claimed inside it can never
/// allocate more than the body holds.
pub fn decode_body(body: &[u8]) -> Result<Frame> {
    let (frame, used) = bincode::serde::borrow_decode_from_slice::<Frame, _>(body, config())
        .map_err(|err| Error::Decode(err.to_string()))?;
    match body.len() - used {
        0 => Ok(frame),
        extra => Err(Error::TrailingBytes { extra }),
    }
}

/// Reads length-prefixed frames from a byte stream, refusing bodies over a limit before
/// allocating for them.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    /// Bytes are read into this; it keeps its largest length (up to [`RETAINED_BUFFER`]), so
    /// a read never zero-fills memory a previous frame already initialised.
    buffer: Vec<u8>,
    /// Bytes of `buffer` that belong to the last frame (or to the one being read).
    filled: usize,
    /// The length prefix of the frame being read, and how much of it arrived.
    prefix: [u8; LEN_PREFIX],
    prefix_got: usize,
    /// The body length of the frame being read, once its prefix is complete.
    body_len: Option<usize>,
}

impl<R: Read> FrameReader<R> {
    /// Reads frames of at most `max` body bytes (capped at [`MAX_FRAME`]).
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            max: max.min(MAX_FRAME),
            buffer: Vec::new(),
            filled: 0,
            prefix: [0; LEN_PREFIX],
            prefix_got: 0,
            body_len: None,
        }
    }

    /// Reads and decodes the next frame. [`Error::Closed`] at a clean end of stream.
    /// A large payload at the end of a frame (write data, read data) is not copied again: the
    /// frame takes the buffer it was read into ([`decode_body_in`]), and the next frame gets a
    /// new one.
    pub fn read_frame(&mut self) -> Result<Frame> {
        self.read_body()?;
        let body = &self.buffer[..self.filled];
        match find_payload(body) {
            None => decode_body(body),
            Some((frame, head_len)) => {
                let mut buffer = std::mem::take(&mut self.buffer);
                buffer.truncate(std::mem::take(&mut self.filled));
                Ok(with_payload_in(frame, buffer, head_len))
            }
        }
    }

    /// Reads the next frame body into an internal buffer and returns it undecoded. If the
    /// stream is non-blocking and a read fails with `WouldBlock` in the middle of a frame, the
    /// error is returned and what arrived is kept: the next call goes on with the same frame.
    pub fn read_body(&mut self) -> Result<&[u8]> {
        let len = match self.body_len {
            Some(len) => len,
            None => self.read_prefix()?,
        };
        while self.filled < len {
            // A peer that announces a large frame and stalls costs at most what it sent (or
            // RETAINED_BUFFER) up front: the buffer grows as the bytes arrive.
            let want = len.min(self.filled.max(RETAINED_BUFFER / 4) * 2);
            if self.buffer.len() < want {
                self.buffer.resize(want, 0);
            }
            match read_some(&mut self.inner, &mut self.buffer[self.filled..want])? {
                0 => {
                    self.body_len = None;
                    let got = LEN_PREFIX + self.filled;
                    return Err(Error::Truncated { expected: LEN_PREFIX + len, got });
                }
                got => self.filled += got,
            }
        }
        self.body_len = None;
        Ok(&self.buffer[..self.filled])
    }

    /// Reads the rest of a frame's length prefix; the body length, checked against the limit.
    fn read_prefix(&mut self) -> Result<usize> {
        if self.prefix_got == 0 {
            self.filled = 0;
            if self.buffer.len() > RETAINED_BUFFER {
                self.buffer = Vec::new();
            }
        }
        while self.prefix_got < LEN_PREFIX {
            match read_some(&mut self.inner, &mut self.prefix[self.prefix_got..])? {
                0 if self.prefix_got == 0 => return Err(Error::Closed),
                0 => {
                    let got = std::mem::take(&mut self.prefix_got);
                    return Err(Error::Truncated { expected: LEN_PREFIX, got });
                }
                got => self.prefix_got += got,
            }
        }
        self.prefix_got = 0;
        let len = u32::from_le_bytes(self.prefix) as usize;
        if len > self.max {
            let prefix = self.prefix;
            self.keep(&prefix);
            return Err(Error::FrameTooLarge { len, max: self.max });
        }
        self.body_len = Some(len);
        Ok(len)
    }

    /// Makes `bytes` the last frame's bytes.
    fn keep(&mut self, bytes: &[u8]) {
        if self.buffer.len() < bytes.len() {
            self.buffer.resize(bytes.len(), 0);
        }
        self.buffer[..bytes.len()].copy_from_slice(bytes);
        self.filled = bytes.len();
    }

    /// The limit in force.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Changes the limit (after the handshake).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.min(MAX_FRAME);
    }

    /// The stream frames are read from (to see whether it has buffered bytes, say).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The stream frames are read from, to change how it reads (whether it waits, say);
    /// bytes read from it directly are lost to the frames.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The bytes of the last body read, or the length prefix of a refused frame.
    pub fn last_bytes(&self) -> &[u8] {
        &self.buffer[..self.filled]
    }
}

/// Writes length-prefixed frames, one `write_all` per frame (or per batch).
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    max: usize,
    buf: Vec<u8>,
    /// Frames encoded by [`FrameWriter::queue_frame`], written ahead of the next frame.
    queued: Vec<u8>,
    /// Writes made so far.
    writes: u64,
}

impl<W: Write> FrameWriter<W> {
    /// Writes frames of at most `max` body bytes (the peer's limit).
    pub fn new(inner: W, max: usize) -> Self {
        FrameWriter {
            inner,
            max: max.min(MAX_FRAME),
            buf: Vec::new(),
            queued: Vec::new(),
            writes: 0,
        }
    }

    /// Encodes one frame to go out with the next write, in the same system call (so that a
    /// peer reading the stream wakes once for both). An encoding error leaves nothing queued.
    pub fn queue_frame(&mut self, frame: &Frame) -> Result<()> {
        let start = self.queued.len();
        encode_frame(frame, self.max, &mut self.queued).inspect_err(|_| {
            self.queued.truncate(start);
        })
    }

    /// Whether frames wait for the next write.
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// How many writes were made so far (each of one or more frames).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Writes the queued frames now, if any.
    pub fn write_queued(&mut self) -> Result<()> {
        self.write_frames(&[])
    }

    /// Encodes and writes one frame, then flushes.
    pub fn write_frame(&mut self, frame: &Frame) -> Result<()> {
        self.write_frames(std::slice::from_ref(frame))
    }

    /// Encodes several frames and writes them, after any queued ones, with one vectored write
    /// (more if the pipe takes less), then flushes. Nothing is written if any frame fails to
    /// encode. Large payloads are not copied into the frame buffer: they are written from the
    /// frame itself.
    pub fn write_frames(&mut self, frames: &[Frame]) -> Result<()> {
        self.buf.clear();
        // On the stack for the usual one or two frames: a heap list per write showed up in
        // the pinned round trip's profile (an allocation on each side of every call).
        let mut pieces: SmallVec<[(usize, &[u8]); 2]> = SmallVec::new();
        for frame in frames {
            match split_payload(frame) {
                Some((head, payload)) => {
                    encode_head(&head, payload.len(), self.max, &mut self.buf)?;
                    pieces.push((self.buf.len(), payload));
                }
                None => encode_frame(frame, self.max, &mut self.buf)?,
            }
        }
        let mut slices: SmallVec<[IoSlice<'_>; 6]> = SmallVec::new();
        slices.push(IoSlice::new(&self.queued));
        let mut start = 0;
        for (end, payload) in pieces {
            slices.push(IoSlice::new(&self.buf[start..end]));
            slices.push(IoSlice::new(payload));
            start = end;
        }
        slices.push(IoSlice::new(&self.buf[start..]));
        slices.retain(|slice| !slice.is_empty());
        write_all_vectored(&mut self.inner, &mut slices)?;
        drop(slices);
        self.queued.clear();
        self.writes += 1;
        self.inner.flush()?;
        if self.buf.capacity() > RETAINED_BUFFER {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Changes the limit (after the handshake).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.min(MAX_FRAME);
    }

    /// The limit in force.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The underlying writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

/// One read, retried if interrupted; 0 at end of stream.
fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;

    fn sample() -> Frame {
        Frame::Call {
            tag: Tag(7),
            caller: Caller { pid: 1, uid: 2, gid: 3 },
            call: Call::Write { fd: Fd(4), data: vec![1, 2, 3].into() },
        }
    }

    /// Frames with large payloads go out in pieces (head, payload) that must add up to
    /// exactly what `encode_frame` makes, in a batch with small frames around them.
    #[test]
    fn split_payload_frames_encode_byte_for_byte_like_whole_ones() {
        let big: Vec<u8> = (0..SPLIT_PAYLOAD + 3).map(|i| i as u8).collect();
        let frames = [
            Frame::Call {
                tag: Tag(9),
                caller: Caller { pid: 1, uid: 2, gid: 3 },
                call: Call::Write { fd: Fd(4), data: big.clone().into() },
            },
            sample(),
            Frame::Reply { tag: Tag(10), response: Ok(Reply::Data(big.into())) },
        ];
        let mut expected = Vec::new();
        for frame in &frames {
            encode_frame(frame, MAX_FRAME, &mut expected).unwrap();
        }
        let mut writer = FrameWriter::new(Vec::new(), MAX_FRAME);
        writer.write_frames(&frames).unwrap();
        assert_eq!(writer.get_mut(), &expected);
    }

    /// Counts the write system calls a `FrameWriter` makes.
    #[derive(Default)]
    struct Writes {
        bytes: Vec<u8>,
        calls: usize,
    }

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            bufs.iter().for_each(|b| self.bytes.extend_from_slice(b));
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Queued frames go out ahead of the next frame, in order, in the same write; a frame that
    /// fails to encode queues nothing.
    #[test]
    fn queued_frames_go_out_with_the_next_frame_in_one_write() {
        let seek = Frame::Call {
            tag: Tag(1),
            caller: Caller { pid: 1, uid: 2, gid: 3 },
            call: Call::Lseek { fd: Fd(4), offset: 9, whence: 0 },
        };
        let too_big = Frame::Call {
            tag: Tag(2),
            caller: Caller { pid: 1, uid: 2, gid: 3 },
            call: Call::Write { fd: Fd(4), data: vec![0; 100].into() },
        };
        let mut writer = FrameWriter::new(Writes::default(), 64);
        writer.queue_frame(&seek).unwrap();
        assert!(writer.queue_frame(&too_big).is_err());
        assert!(writer.has_queued());
        assert_eq!(writer.get_mut().calls, 0, "queueing writes nothing");
        writer.write_frame(&sample()).unwrap();
        let mut expected = Vec::new();
        encode_frame(&seek, 64, &mut expected).unwrap();
        encode_frame(&sample(), 64, &mut expected).unwrap();
        assert_eq!(writer.get_mut().bytes, expected);
        assert_eq!(writer.get_mut().calls, 1);
        assert!(!writer.has_queued());
        writer.queue_frame(&seek).unwrap();
        writer.write_queued().unwrap();
        assert_eq!(writer.get_mut().calls, 2);
        writer.write_queued().unwrap();
        assert_eq!(writer.get_mut().calls, 2, "nothing queued: nothing written");
    }

    #[test]
    fn a_split_payload_over_the_limit_is_refused_and_nothing_is_written() {
        let data = vec![0u8; SPLIT_PAYLOAD * 2];
        let frame = Frame::Reply { tag: Tag(1), response: Ok(Reply::Data(data.into())) };
        let mut writer = FrameWriter::new(Vec::new(), SPLIT_PAYLOAD);
        assert!(matches!(writer.write_frame(&frame), Err(Error::Encode(_))));
        assert!(writer.get_mut().is_empty());
    }

    #[test]
    fn round_trips_through_a_stream() {
        let mut bytes = Vec::new();
        encode_frame(&sample(), MAX_FRAME, &mut bytes).unwrap();
        encode_frame(&sample(), MAX_FRAME, &mut bytes).unwrap();
        let mut reader = FrameReader::new(&bytes[..], MAX_FRAME);
        assert_eq!(reader.read_frame().unwrap(), sample());
        assert_eq!(reader.read_frame().unwrap(), sample());
        assert!(matches!(reader.read_frame(), Err(Error::Closed)));
    }

    /// A write call and a data reply whose payloads go out straight from the frame.
    fn big_frames() -> [Frame; 2] {
        let big =
            |seed: usize| (0..SPLIT_PAYLOAD + 5).map(|i| (i * seed) as u8).collect::<Vec<_>>();
        let caller = Caller { pid: 1, uid: 2, gid: 3 };
        [
            Frame::Call {
                tag: Tag(5),
                caller,
                call: Call::Write { fd: Fd(4), data: big(3).into() },
            },
            Frame::Reply { tag: Tag(6), response: Ok(Reply::Data(big(7).into())) },
        ]
    }

    fn payload_of(frame: &Frame) -> &Bytes {
        match frame {
            Frame::Call { call: Call::Write { data, .. }, .. }
            | Frame::Reply { response: Ok(Reply::Data(data)), .. } => data,
            other => panic!("no payload: {other:?}"),
        }
    }

    #[test]
    fn large_payloads_are_decoded_in_place_sharing_the_buffer() {
        for frame in big_frames() {
            let mut bytes = Vec::new();
            encode_frame(&frame, MAX_FRAME, &mut bytes).unwrap();
            let buffer = bytes.as_ptr_range();
            let decoded = decode_body_in(bytes, LEN_PREFIX).unwrap();
            assert_eq!(decoded, frame);
            assert!(buffer.contains(&payload_of(&decoded).as_ptr()), "shares the buffer");
        }
        // A small payload is copied out as before.
        let mut bytes = Vec::new();
        encode_frame(&sample(), MAX_FRAME, &mut bytes).unwrap();
        assert_eq!(decode_body_in(bytes, LEN_PREFIX).unwrap(), sample());
        assert!(decode_body_in(vec![1, 2], 5).is_err(), "a body past the buffer's end");
    }

    #[test]
    fn a_reader_hands_large_payloads_over_and_reads_on() {
        let [write, data] = big_frames();
        let frames = [write.clone(), sample(), data, write, sample()];
        let mut writer = FrameWriter::new(Vec::new(), MAX_FRAME);
        writer.write_frames(&frames).unwrap();
        let bytes = std::mem::take(writer.get_mut());
        let mut reader = FrameReader::new(&bytes[..], MAX_FRAME);
        let decoded: Vec<Frame> = frames.iter().map(|_| reader.read_frame().unwrap()).collect();
        assert_eq!(decoded, frames);
        assert!(matches!(reader.read_frame(), Err(Error::Closed)));
    }

    /// A body longer than its head's payload length says is decoded the ordinary way, and
    /// refused for its trailing bytes, not taken in place.
    #[test]
    fn a_payload_length_that_does_not_match_the_body_is_refused() {
        let [write, data] = big_frames();
        for frame in [write, data] {
            let mut bytes = Vec::new();
            encode_frame(&frame, MAX_FRAME, &mut bytes).unwrap();
            bytes.push(0);
            let len = (bytes.len() - LEN_PREFIX) as u32;
            bytes[..LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
            let refused = decode_body_in(bytes.clone(), LEN_PREFIX);
            assert!(matches!(refused, Err(Error::TrailingBytes { extra: 1 })), "{refused:?}");
            let mut reader = FrameReader::new(&bytes[..], MAX_FRAME);
            assert!(matches!(reader.read_frame(), Err(Error::TrailingBytes { extra: 1 })));
        }
    }

    #[test]
    fn a_payload_head_is_as_long_whatever_its_values() {
        let caller = Caller { pid: u64::MAX, uid: u32::MAX, gid: u32::MAX };
        let empty = Bytes::default;
        let write = Call::Write { fd: Fd(u64::MAX), data: empty() };
        let heads = [
            Frame::Call { tag: Tag(u64::MAX), caller, call: write },
            Frame::Reply { tag: Tag(u64::MAX), response: Ok(Reply::Data(empty())) },
        ];
        for (head, &len) in heads.iter().zip(payload_heads()) {
            let mut bytes = Vec::new();
            encode_frame(head, MAX_FRAME, &mut bytes).unwrap();
            assert_eq!(bytes.len() - LEN_PREFIX, len, "{head:?}");
        }
    }

    #[test]
    fn payload_is_one_byte_string() {
        let mut bytes = Vec::new();
        encode_frame(&sample(), MAX_FRAME, &mut bytes).unwrap();
        // prefix, frame variant, tag, caller, call variant, fd, length, then the raw bytes.
        assert_eq!(bytes.len(), 4 + 4 + 8 + 16 + 4 + 8 + 8 + 3);
        assert_eq!(&bytes[bytes.len() - 3..], &[1, 2, 3]);
    }

    #[test]
    fn truncated_and_oversized_frames_are_typed_errors() {
        let mut bytes = Vec::new();
        encode_frame(&sample(), MAX_FRAME, &mut bytes).unwrap();
        for cut in 1..bytes.len() {
            let mut reader = FrameReader::new(&bytes[..cut], MAX_FRAME);
            assert!(matches!(reader.read_frame(), Err(Error::Truncated { .. })), "cut {cut}");
        }
        let mut reader = FrameReader::new(&bytes[..], 10);
        assert!(matches!(reader.read_frame(), Err(Error::FrameTooLarge { len: 51, max: 10 })));
    }

    #[test]
    fn a_huge_length_claim_inside_a_small_frame_is_refused() {
        let mut bytes = Vec::new();
        encode_frame(&sample(), MAX_FRAME, &mut bytes).unwrap();
        let at = bytes.len() - 3 - 8;
        bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut reader = FrameReader::new(&bytes[..], MAX_FRAME);
        assert!(matches!(reader.read_frame(), Err(Error::Decode(_))));
    }

    #[test]
    fn encoding_past_the_peer_limit_fails_and_writes_nothing() {
        let mut bytes = vec![9];
        let err = encode_frame(&sample(), 8, &mut bytes).unwrap_err();
        assert!(matches!(err, Error::Encode(_)));
        assert_eq!(bytes, vec![9]);
    }
}
