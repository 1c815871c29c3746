//! Codec throughput for 1 MiB payloads, against a plain `memcpy` of the same size.
//!
//! `write_request` and `read_reply` each do one `encode_frame` into a new buffer (the payload
//! is copied in) and one `decode_body_in` that takes the buffer (the payload is left where it
//! is and shared), as a frame reader does with a large payload: one copy of the payload per
//! iteration. `read_reply_from_slice` decodes with `decode_body` from a borrowed buffer
//! instead, which copies the payload out again: two copies.
//!
//! Run: `cargo bench -p scheme-protocol --bench codec`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scheme_protocol::codec::{decode_body, decode_body_in, encode_frame, LEN_PREFIX};
use scheme_protocol::{Call, Caller, Fd, Frame, Reply, Tag, MAX_FRAME};

const SIZE: usize = 1 << 20;

fn payload() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 31 + 7) as u8).collect()
}

/// One encode into a new buffer and one decode that takes it.
fn encode_decode(frame: &Frame) -> Frame {
    let mut out = Vec::with_capacity(SIZE + 64);
    encode_frame(black_box(frame), MAX_FRAME, &mut out).unwrap();
    decode_body_in(black_box(out), LEN_PREFIX).unwrap()
}

/// One encode into `out` (cleared, capacity kept) and one decode that copies out of it.
fn encode_decode_from_slice(frame: &Frame, out: &mut Vec<u8>) -> Frame {
    out.clear();
    encode_frame(black_box(frame), MAX_FRAME, out).unwrap();
    decode_body(black_box(&out[LEN_PREFIX..])).unwrap()
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("1MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));

    let src = payload();
    let mut dst = vec![0u8; SIZE];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });

    let write = Frame::Call {
        tag: Tag(1),
        caller: Caller { pid: 42, uid: 1000, gid: 1000 },
        call: Call::Write { fd: Fd(3), data: payload().into() },
    };
    assert_eq!(encode_decode(&write), write);
    group.bench_function("write_request", |b| b.iter(|| encode_decode(&write)));

    let read = Frame::Reply { tag: Tag(2), response: Ok(Reply::Data(payload().into())) };
    assert_eq!(encode_decode(&read), read);
    group.bench_function("read_reply", |b| b.iter(|| encode_decode(&read)));

    let mut out = Vec::with_capacity(SIZE + 64);
    assert_eq!(encode_decode_from_slice(&read, &mut out), read);
    group.bench_function("read_reply_from_slice", |b| {
        b.iter(|| encode_decode_from_slice(&read, &mut out))
    });

    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
