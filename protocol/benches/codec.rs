//! Codec throughput for 1 MiB payloads, against a plain `memcpy` of the same size.
//!
//! `write_request` and `read_reply` each do one `encode_frame` into a reused buffer and one
//! `decode_body` of it per iteration, so they move the payload at least twice (encode copies it
//! in, decode allocates and copies it out); the output buffer's allocation is amortized.
//!
//! Run: `cargo bench -p scheme-protocol --bench codec`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scheme_protocol::codec::{decode_body, encode_frame, LEN_PREFIX};
use scheme_protocol::{Call, Caller, Fd, Frame, Reply, Tag, MAX_FRAME};

const SIZE: usize = 1 << 20;

fn payload() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 31 + 7) as u8).collect()
}

/// One encode into `out` (cleared, capacity kept) and one decode of the result.
fn encode_decode(frame: &Frame, out: &mut Vec<u8>) -> Frame {
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
    let mut out = Vec::with_capacity(SIZE + 64);
    assert_eq!(encode_decode(&write, &mut out), write);
    group.bench_function("write_request", |b| b.iter(|| encode_decode(&write, &mut out)));

    let read = Frame::Reply { tag: Tag(2), response: Ok(Reply::Data(payload().into())) };
    assert_eq!(encode_decode(&read, &mut out), read);
    group.bench_function("read_reply", |b| b.iter(|| encode_decode(&read, &mut out)));

    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
