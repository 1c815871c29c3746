//! Property tests for the codec: every frame round-trips, and no input (random bytes, or valid
//! frames with bytes flipped, inserted, deleted or overwritten) makes the decoder, the frame
//! reader or the handshake panic. Decoding is also checked to be canonical: whatever decodes
//! re-encodes to exactly the bytes it came from, and decoding a large payload in place agrees
//! with decoding a copy.
//!
//! `PROPTEST_CASES` overrides the number of cases of every test here.

use proptest::collection::vec;
use proptest::prelude::*;
use scheme_protocol::codec::{decode_body, decode_body_in, encode_frame, LEN_PREFIX};
use scheme_protocol::handshake::{handshake, hello, read_hello};
use scheme_protocol::{
    Bytes, Call, Caller, Errno, Error, Fd, Frame, FrameReader, FrameWriter, Hello, PathStep, Reply,
    Response, Stat, StatVfs, Tag, TimeSpec, MAGIC, MAX_FRAME, MAX_PATH_STEPS, VERSION,
};

/// Cases per test: `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig::with_cases(cases(default))
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// `n` pseudo-random bytes from `seed` (cheap enough for KiB-sized payloads in debug builds).
fn filled(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Payloads: mostly small (including empty), sometimes up to 4 KiB.
fn arb_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..=64),
        1 => Just(Vec::new()),
        1 => (0..=4096usize, any::<u64>()).prop_map(|(n, seed)| filled(n, seed)),
    ]
}

fn arb_bytes() -> impl Strategy<Value = Bytes> {
    arb_payload().prop_map(Bytes::from)
}

/// Strings: any Unicode (including empty), sometimes a few KiB.
fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,24}",
        1 => Just(String::new()),
        1 => (".{1,3}", 0..=1024usize).prop_map(|(s, n)| s.repeat(n)),
    ]
}

fn arb_tag() -> impl Strategy<Value = Tag> {
    any::<u64>().prop_map(Tag)
}

fn arb_fd() -> impl Strategy<Value = Fd> {
    prop_oneof![0..16u64, any::<u64>()].prop_map(Fd)
}

fn arb_caller() -> impl Strategy<Value = Caller> {
    (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(pid, uid, gid)| Caller { pid, uid, gid })
}

fn arb_timespec() -> impl Strategy<Value = TimeSpec> {
    (any::<i64>(), any::<i32>()).prop_map(|(tv_sec, tv_nsec)| TimeSpec { tv_sec, tv_nsec })
}

fn arb_stat() -> impl Strategy<Value = Stat> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
        ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (st_dev, st_ino, st_mode, st_nlink, st_uid, st_gid, st_size, st_blksize),
                (
                    st_blocks,
                    st_mtime,
                    st_mtime_nsec,
                    st_atime,
                    st_atime_nsec,
                    st_ctime,
                    st_ctime_nsec,
                ),
            )| Stat {
                st_dev,
                st_ino,
                st_mode,
                st_nlink,
                st_uid,
                st_gid,
                st_size,
                st_blksize,
                st_blocks,
                st_mtime,
                st_mtime_nsec,
                st_atime,
                st_atime_nsec,
                st_ctime,
                st_ctime_nsec,
            },
        )
}

fn arb_statvfs() -> impl Strategy<Value = StatVfs> {
    (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(f_bsize, f_blocks, f_bfree, f_bavail)| StatVfs { f_bsize, f_blocks, f_bfree, f_bavail },
    )
}

/// Every `Call` variant.
fn arb_call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (arb_string(), any::<u64>()).prop_map(|(path, flags)| Call::Open { path, flags }),
        arb_string().prop_map(|path| Call::Rmdir { path }),
        arb_string().prop_map(|path| Call::Unlink { path }),
        (arb_fd(), arb_bytes()).prop_map(|(fd, buf)| Call::Dup { fd, buf }),
        (arb_fd(), any::<u64>()).prop_map(|(fd, len)| Call::Read { fd, len }),
        (arb_fd(), arb_bytes()).prop_map(|(fd, data)| Call::Write { fd, data }),
        (arb_fd(), any::<i64>(), any::<u64>()).prop_map(|(fd, offset, whence)| Call::Lseek {
            fd,
            offset,
            whence
        }),
        (arb_fd(), any::<u16>()).prop_map(|(fd, mode)| Call::Fchmod { fd, mode }),
        (arb_fd(), any::<u32>(), any::<u32>()).prop_map(|(fd, uid, gid)| Call::Fchown {
            fd,
            uid,
            gid
        }),
        (arb_fd(), any::<u64>(), any::<u64>()).prop_map(|(fd, cmd, arg)| Call::Fcntl {
            fd,
            cmd,
            arg
        }),
        (arb_fd(), any::<u64>()).prop_map(|(fd, flags)| Call::Fevent { fd, flags }),
        (arb_fd(), arb_string()).prop_map(|(fd, path)| Call::Flink { fd, path }),
        (arb_fd(), any::<u64>()).prop_map(|(fd, len)| Call::Fpath { fd, len }),
        (arb_fd(), arb_string()).prop_map(|(fd, path)| Call::Frename { fd, path }),
        arb_fd().prop_map(|fd| Call::Fstat { fd }),
        arb_fd().prop_map(|fd| Call::Fstatvfs { fd }),
        arb_fd().prop_map(|fd| Call::Fsync { fd }),
        (arb_fd(), any::<u64>()).prop_map(|(fd, len)| Call::Ftruncate { fd, len }),
        (arb_fd(), vec(arb_timespec(), 0..4)).prop_map(|(fd, times)| Call::Futimens { fd, times }),
        arb_fd().prop_map(|fd| Call::Close { fd }),
        (arb_fd(), any::<u64>(), any::<u64>()).prop_map(|(fd, len, opaque)| Call::Getdents {
            fd,
            len,
            opaque
        }),
        (arb_fd(), any::<u64>(), any::<u64>()).prop_map(|(fd, len, at)| Call::ReadRegion {
            fd,
            len,
            at
        }),
        (arb_fd(), any::<u64>(), any::<u64>()).prop_map(|(fd, len, at)| Call::WriteRegion {
            fd,
            len,
            at
        }),
        arb_string().prop_map(|path| Call::StatPath { path }),
        (arb_string(), any::<u64>()).prop_map(|(path, flags)| Call::OpenStat { path, flags }),
        (arb_string(), any::<u64>(), vec(arb_path_step(), 0..=MAX_PATH_STEPS))
            .prop_map(|(path, flags, steps)| Call::OnPath { path, flags, steps }),
    ]
}

/// Every `PathStep` variant.
fn arb_path_step() -> impl Strategy<Value = PathStep> {
    prop_oneof![
        any::<u64>().prop_map(|len| PathStep::Read { len }),
        arb_bytes().prop_map(|data| PathStep::Write { data }),
        any::<u16>().prop_map(|mode| PathStep::Fchmod { mode }),
        (any::<u32>(), any::<u32>()).prop_map(|(uid, gid)| PathStep::Fchown { uid, gid }),
        arb_string().prop_map(|path| PathStep::Flink { path }),
        arb_string().prop_map(|path| PathStep::Frename { path }),
        Just(PathStep::Fstat),
        Just(PathStep::Fstatvfs),
        any::<u64>().prop_map(|len| PathStep::Ftruncate { len }),
        vec(arb_timespec(), 0..4).prop_map(|times| PathStep::Futimens { times }),
    ]
}

/// Every `Reply` variant.
fn arb_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        any::<u64>().prop_map(Reply::Value),
        arb_bytes().prop_map(Reply::Data),
        arb_stat().prop_map(Reply::Stat),
        arb_statvfs().prop_map(Reply::StatVfs),
        (arb_fd(), arb_stat()).prop_map(|(fd, stat)| Reply::Opened { fd, stat }),
    ]
}

fn arb_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        3 => arb_reply().prop_map(Ok),
        1 => any::<i32>().prop_map(|e| Err(Errno(e))),
    ]
}

fn arb_hello() -> impl Strategy<Value = Hello> {
    (
        prop_oneof![Just(MAGIC), any::<[u8; 8]>()],
        prop_oneof![Just(VERSION), any::<u32>()],
        arb_string(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(magic, version, scheme, max_frame, features)| Hello {
            magic,
            version,
            scheme,
            max_frame,
            features,
        })
}

/// Every `Frame` variant, calls weighted up since they have the most shapes.
fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        1 => arb_hello().prop_map(Frame::Hello),
        6 => (arb_tag(), arb_caller(), arb_call())
            .prop_map(|(tag, caller, call)| Frame::Call { tag, caller, call }),
        1 => arb_tag().prop_map(|tag| Frame::Cancel { tag }),
        3 => (arb_tag(), arb_response()).prop_map(|(tag, response)| Frame::Reply { tag, response }),
        1 => (arb_fd(), any::<u64>()).prop_map(|(fd, flags)| Frame::Event { fd, flags }),
    ]
}

/// One damage done to an encoded frame. Positions are taken modulo the length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    Delete {
        at: usize,
    },
    Truncate {
        at: usize,
    },
    /// Overwrite 4 bytes (a length prefix or a variant index) with an interesting `u32`.
    SetU32 {
        at: usize,
        value: u32,
    },
    /// Overwrite 8 bytes (a string or vector length) with an interesting `u64`.
    SetU64 {
        at: usize,
        value: u64,
    },
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    let u32s = prop_oneof![
        0..32u32,
        Just(u32::MAX),
        Just(MAX_FRAME as u32),
        Just(MAX_FRAME as u32 + 1),
        any::<u32>(),
    ];
    let u64s = prop_oneof![
        0..64u64,
        Just(u64::MAX),
        Just(u64::MAX / 16 + 1), // overflows when multiplied by a 16-byte element size
        Just(MAX_FRAME as u64 - 1),
        Just(MAX_FRAME as u64),
        Just(MAX_FRAME as u64 + 1),
        Just(u32::MAX as u64),
        any::<u64>(),
    ];
    prop_oneof![
        3 => (at, 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        1 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => at.prop_map(|at| Mutation::Delete { at }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => (at, u32s).prop_map(|(at, value)| Mutation::SetU32 { at, value }),
        1 => (at, u64s).prop_map(|(at, value)| Mutation::SetU64 { at, value }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    match *mutation {
        Mutation::FlipBit { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
        Mutation::SetByte { at, byte } if len > 0 => bytes[at % len] = byte,
        Mutation::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
        Mutation::Delete { at } if len > 0 => {
            bytes.remove(at % len);
        }
        Mutation::Truncate { at } => bytes.truncate(at % (len + 1)),
        Mutation::SetU32 { at, value } if len >= 4 => {
            let at = at % (len - 3);
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        Mutation::SetU64 { at, value } if len >= 8 => {
            let at = at % (len - 7);
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        _ => {}
    }
}

/// Bodies that get past the first variant check: a frame variant index (mostly valid), for
/// calls also a call variant index at its offset, then random bytes.
fn arb_plausible_body() -> impl Strategy<Value = Vec<u8>> {
    (0..6u32, 0..23u32, vec(any::<u8>(), 0..160)).prop_map(|(variant, call, mut rest)| {
        let mut body = variant.to_le_bytes().to_vec();
        if variant == 1 && rest.len() >= 28 {
            rest[24..28].copy_from_slice(&call.to_le_bytes());
        }
        body.append(&mut rest);
        body
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(frame, MAX_FRAME, &mut out).expect("every generated frame fits in MAX_FRAME");
    out
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Decodes `body`; whatever decodes must re-encode to exactly `body` (the encoding is
/// canonical: fixed-width integers, validated UTF-8, two-valued Result tags).
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(frame) = decode_body(body) {
        let again = encode(&frame);
        prop_assert_eq!(&again[LEN_PREFIX..], body, "{:?} is not canonical", frame);
    }
    Ok(())
}

/// A non-blocking reader of `bytes`: each read alternately fails with `WouldBlock` and
/// returns at most the next of `pieces` bytes (cycling through them).
struct Choppy<'a> {
    bytes: &'a [u8],
    pieces: Vec<usize>,
    next: usize,
    blocked: bool,
}

impl<'a> Choppy<'a> {
    fn new(bytes: &'a [u8], pieces: Vec<usize>) -> Self {
        Choppy { bytes, pieces, next: 0, blocked: false }
    }
}

impl std::io::Read for Choppy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.blocked = !self.blocked;
        if self.blocked {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let piece = self.pieces[self.next % self.pieces.len()];
        self.next += 1;
        let n = piece.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// Reads frames from `stream` until the first error; must not panic, and must stop.
fn drain(stream: &[u8], max: usize) -> Result<(), TestCaseError> {
    let mut reader = FrameReader::new(stream, max);
    for _ in 0..=stream.len() / LEN_PREFIX {
        match reader.read_frame() {
            Ok(frame) => {
                let mut again = Vec::new();
                // A frame read under `max` re-encodes under `max`.
                prop_assert!(encode_frame(&frame, max, &mut again).is_ok());
            }
            Err(_) => return Ok(()),
        }
    }
    prop_assert!(false, "the reader did not stop");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (a) Round trips
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn every_frame_round_trips(frame in arb_frame()) {
        let bytes = encode(&frame);
        prop_assert_eq!(bytes.len() - LEN_PREFIX, u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize);
        let mut reader = FrameReader::new(&bytes[..], MAX_FRAME);
        prop_assert_eq!(&reader.read_frame().unwrap(), &frame);
        prop_assert!(matches!(reader.read_frame(), Err(Error::Closed)));
        prop_assert_eq!(decode_body(&bytes[LEN_PREFIX..]).unwrap(), frame);
    }

    #[test]
    fn streams_of_frames_round_trip(frames in vec(arb_frame(), 0..6)) {
        let mut writer = FrameWriter::new(Vec::new(), MAX_FRAME);
        writer.write_frames(&frames).unwrap();
        let stream = std::mem::take(writer.get_mut());
        let mut reader = FrameReader::new(&stream[..], MAX_FRAME);
        for frame in &frames {
            prop_assert_eq!(&reader.read_frame().unwrap(), frame);
        }
        prop_assert!(matches!(reader.read_frame(), Err(Error::Closed)));
    }

    /// A non-blocking stream that hands out the bytes in random pieces, with `WouldBlock`
    /// between them, yields the same frames: what arrived of a frame is kept across reads.
    #[test]
    fn frames_read_in_pieces_with_would_block_between_them_round_trip(
        frames in vec(arb_frame(), 1..5),
        pieces in vec(1..64usize, 1..32),
    ) {
        let mut writer = FrameWriter::new(Vec::new(), MAX_FRAME);
        writer.write_frames(&frames).unwrap();
        let stream = std::mem::take(writer.get_mut());
        let mut reader = FrameReader::new(Choppy::new(&stream, pieces), MAX_FRAME);
        let mut read = Vec::new();
        let mut would_block = 0;
        while read.len() < frames.len() {
            match reader.read_frame() {
                Ok(frame) => read.push(frame),
                Err(Error::Io(err)) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    would_block += 1;
                    prop_assert!(would_block <= stream.len() + 1, "no progress");
                }
                Err(err) => prop_assert!(false, "{err}"),
            }
        }
        prop_assert_eq!(&read, &frames);
        loop {
            match reader.read_frame() {
                Err(Error::Closed) => break,
                Err(Error::Io(err)) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                other => prop_assert!(false, "{other:?} after the last frame"),
            }
        }
    }

    /// A frame is refused by a reader whose limit is below its body, accepted at the limit,
    /// and the encoder enforces the same limit.
    #[test]
    fn limits_are_exact(frame in arb_frame()) {
        let bytes = encode(&frame);
        let body = bytes.len() - LEN_PREFIX;
        prop_assert!(FrameReader::new(&bytes[..], body).read_frame().is_ok());
        let small = FrameReader::new(&bytes[..], body - 1).read_frame();
        prop_assert!(matches!(small, Err(Error::FrameTooLarge { .. })), "{:?}", small);
        let mut out = vec![7];
        prop_assert!(encode_frame(&frame, body, &mut out).is_ok());
        out.truncate(1);
        prop_assert!(matches!(encode_frame(&frame, body - 1, &mut out), Err(Error::Encode(_))));
        prop_assert_eq!(out, vec![7]);
    }
}

// ---------------------------------------------------------------------------------------------
// (a') Large payloads decoded in place
// ---------------------------------------------------------------------------------------------

/// A write call or a data reply with a payload around the size from which it is decoded in
/// place (16 KiB), either side of it.
fn arb_large_payload_frame() -> impl Strategy<Value = Frame> {
    let payload = (16_000..17_000usize, any::<u64>()).prop_map(|(n, seed)| filled(n, seed));
    (any::<bool>(), any::<u64>(), payload).prop_map(|(write, tag, data)| {
        let caller = Caller { pid: tag, uid: tag as u32, gid: (tag >> 32) as u32 };
        match write {
            true => Frame::Call {
                tag: Tag(tag),
                caller,
                call: Call::Write { fd: Fd(tag), data: data.into() },
            },
            false => Frame::Reply { tag: Tag(tag), response: Ok(Reply::Data(data.into())) },
        }
    })
}

proptest! {
    #![proptest_config(config(300))]

    /// Decoding in place agrees with decoding a copy, on valid frames and on frames whose
    /// head (where the in-place decoder looks) has bytes overwritten or the body a byte more
    /// or less.
    #[test]
    fn decoding_in_place_agrees_with_decoding_a_copy(
        frame in arb_large_payload_frame(),
        overwrite in vec((0..64usize, any::<u8>()), 0..3),
        resize in prop_oneof![Just(0i8), Just(1), Just(-1)],
    ) {
        let mut bytes = encode(&frame);
        for (at, byte) in overwrite {
            bytes[LEN_PREFIX + at] = byte;
        }
        match resize {
            1 => bytes.push(7),
            -1 => { bytes.pop(); }
            _ => {}
        }
        let copied = decode_body(&bytes[LEN_PREFIX..]);
        let in_place = decode_body_in(bytes.clone(), LEN_PREFIX);
        match (&copied, &in_place) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "copied {:?}, in place {:?}", copied, in_place),
        }
        let stream = framed(&bytes[LEN_PREFIX..]);
        let mut reader = FrameReader::new(&stream[..], MAX_FRAME);
        let read = reader.read_frame();
        prop_assert_eq!(read.is_ok(), copied.is_ok());
        if let (Ok(a), Ok(b)) = (&read, &copied) {
            prop_assert_eq!(a, b);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b), (c) Hostile input never panics
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(10_000))]

    #[test]
    fn random_streams_never_panic_the_reader(
        bytes in vec(any::<u8>(), 0..512),
        max in prop_oneof![Just(MAX_FRAME), 0..1024usize],
    ) {
        drain(&bytes, max)?;
    }

    #[test]
    fn random_bodies_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..512)) {
        check_body(&bytes)?;
        drain(&framed(&bytes), MAX_FRAME)?;
    }

    #[test]
    fn plausible_bodies_never_panic_the_decoder(body in arb_plausible_body()) {
        check_body(&body)?;
        drain(&framed(&body), MAX_FRAME)?;
    }

    #[test]
    fn mutated_frames_never_panic(
        frames in vec(arb_frame(), 1..3),
        mutations in vec(arb_mutation(), 1..6),
    ) {
        let mut stream = Vec::new();
        for frame in &frames {
            encode_frame(frame, MAX_FRAME, &mut stream).unwrap();
        }
        for mutation in &mutations {
            mutate(&mut stream, mutation);
        }
        drain(&stream, MAX_FRAME)?;
        if stream.len() >= LEN_PREFIX {
            check_body(&stream[LEN_PREFIX..])?;
        }
    }

    #[test]
    fn random_bytes_never_panic_read_hello(
        bytes in vec(any::<u8>(), 0..256),
        max in prop_oneof![Just(MAX_FRAME), 0..1024usize],
    ) {
        let _ = read_hello(&mut FrameReader::new(&bytes[..], max));
    }

    #[test]
    fn mutated_hellos_never_panic_read_hello(
        hello in arb_hello(),
        mutations in vec(arb_mutation(), 0..4),
    ) {
        let mut stream = encode(&Frame::Hello(hello.clone()));
        for mutation in &mutations {
            mutate(&mut stream, mutation);
        }
        let result = read_hello(&mut FrameReader::new(&stream[..], MAX_FRAME));
        if mutations.is_empty() {
            // Unmutated: accepted exactly when magic and version are ours.
            match result {
                Ok(got) => prop_assert_eq!(got, hello),
                Err(Error::Version { theirs, .. }) => {
                    prop_assert_eq!(hello.magic, MAGIC);
                    prop_assert_eq!(theirs, hello.version);
                    prop_assert_ne!(hello.version, VERSION);
                }
                Err(Error::NotAPeer { .. }) => prop_assert_ne!(hello.magic, MAGIC),
                Err(err) => prop_assert!(false, "unexpected error {:?}", err),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_the_handshake(bytes in vec(any::<u8>(), 0..256)) {
        let mut reader = FrameReader::new(&bytes[..], MAX_FRAME);
        let mut writer = FrameWriter::new(Vec::new(), MAX_FRAME);
        let _ = handshake(&mut reader, &mut writer, &hello("chan", 4096));
    }
}
