//! Inputs the fuzz targets (`fuzz/`) found crashing the bridge, replayed through the same
//! entry points, so a fixed bug stays fixed. Each constant is the minimized input as the
//! target got it; the test name says what must hold instead.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use scheme_bridge::{Client, Next, SchemeSocket};
use scheme_protocol::codec::encode_frame;
use scheme_protocol::{hello, Call, Caller, Fd, Frame, Tag, MAX_FRAME};

/// bridge_decode: a daemon's hello naming the scheme "\0Hi\n". `Client::connect` named its
/// reply reader thread `"{scheme}-wire-replies"` after the peer's scheme, and
/// `std::thread::Builder::name` panics on a NUL byte ("thread name may not contain interior
/// null bytes"). The same name pattern is used for the client's watchdog thread and for
/// `redox::kernel`'s event pump (`client.scheme()`).
const NUL_IN_PEER_SCHEME: &[u8] = &[
    0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x52, 0x44, 0x58, 0x53, 0x43, 0x48, 0x4d, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x48, 0x69, 0x0a,
    0x00, 0x00, 0x03, 0x00,
];

#[test]
fn a_nul_byte_in_the_peers_scheme_is_an_error_or_accepted_not_a_panic() {
    let connect = || Client::connect(NUL_IN_PEER_SCHEME, io::sink(), "").map(drop);
    let outcome = catch_unwind(AssertUnwindSafe(connect));
    assert!(outcome.is_ok(), "Client::connect panicked on a NUL byte in the peer's scheme");
}

/// daemon_decode: a caller announcing 16 MiB frames, then 30 `Read { len: 2^40 }` calls
/// (1.6 KB on the wire) that the daemon parks, as chan parks reads. Each packet delivered
/// gets a zeroed out-buffer of `min(len, max_payload)` bytes (`packet.rs`, `handle_output`)
/// held until the reply, and nothing bounds their sum (only the count of calls in flight):
/// 30 reads hold 480 MiB; 4 KiB of input, 1.3 GiB.
fn parked_reads() -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_frame(&Frame::Hello(hello("", MAX_FRAME)), MAX_FRAME, &mut bytes).unwrap();
    for tag in 1..=30 {
        let caller = Caller { pid: 42, uid: 8, gid: 1000 };
        let call = Call::Read { fd: Fd(3), len: 1 << 40 };
        encode_frame(&Frame::Call { tag: Tag(tag), caller, call }, MAX_FRAME, &mut bytes).unwrap();
    }
    bytes
}

#[test]
fn parked_reads_hold_a_bounded_number_of_buffer_bytes() {
    let mut socket = SchemeSocket::new(io::Cursor::new(parked_reads()), io::sink(), "").unwrap();
    let (mut packets, mut held) = (Vec::new(), 0);
    while let Ok(Next::Packets | Next::Woken) = socket.next_packets(&mut packets, 64) {}
    for packet in &packets {
        held += socket.with_out_buffer(packet.id, |buf| buf.len()).unwrap_or(0);
    }
    assert!(held <= 256 << 20, "{} parked packets hold {held} buffer bytes", packets.len());
}
