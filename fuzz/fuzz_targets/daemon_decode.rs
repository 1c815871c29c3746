//! Daemon side: the input is what a caller wrote to a daemon's stdin. It goes (1) to
//! `decode_body` as one frame body and through a `FrameReader` until error or end, as calls,
//! cancels and hellos are decoded; (2) to `read_hello`, the handshake parser; (3) as a whole
//! stream to a `SchemeSocket`, which handshakes and turns calls into `Packet`s, answered by a
//! scripted daemon (the caller's uid picks the answer: values, data, errnos, EINTR without a
//! cancel, too many bytes, `ESKMSG`, events, up to 8 parked packets) until the stream ends.
//! Nothing may panic, hang, or keep more than `LIVE_LIMIT` bytes live.

#![no_main]

use std::io::{self, Cursor};

use libfuzzer_sys::fuzz_target;
use scheme_bridge::{Next, SchemeSocket};
use scheme_bridge_fuzz as _; // the bounded allocator
use scheme_protocol::codec::decode_body;
use scheme_protocol::handshake::read_hello;
use scheme_protocol::{FrameReader, MAX_FRAME};
use syscall::data::Packet;
use syscall::error::{Error, EINTR, ENOENT, ESKMSG};
use syscall::flag::EVENT_READ;
use syscall::number::SYS_FEVENT;

fuzz_target!(|data: &[u8]| {
    let _ = decode_body(data);
    let mut frames = FrameReader::new(data, MAX_FRAME);
    while frames.read_frame().is_ok() {}
    let _ = read_hello(&mut FrameReader::new(data, MAX_FRAME));
    serve(data);
});

/// Runs a `SchemeSocket` over `data` until the caller side's stream ends.
fn serve(data: &[u8]) {
    let Ok(mut socket) = SchemeSocket::new(Cursor::new(data.to_vec()), io::sink(), "") else {
        return;
    };
    let (mut packets, mut parked) = (Vec::new(), Vec::new());
    loop {
        packets.clear();
        match socket.next_packets(&mut packets, 4) {
            Ok(Next::Closed) | Err(_) => break,
            Ok(Next::Packets | Next::Woken) => {}
        }
        for packet in &packets {
            answer(&socket, packet, &mut parked);
        }
    }
    // A parked request is answered late, after the stream is gone.
    for packet in parked.drain(..) {
        reply(&socket, &packet, Ok(0));
    }
}

fn answer(socket: &SchemeSocket, packet: &Packet, parked: &mut Vec<Packet>) {
    if packet.id == 0 {
        // KSMSG_CANCEL: answer the target EINTR, as a daemon that knows cancels does.
        let target = Packet { id: packet.b as u64, ..Packet::default() };
        return reply(socket, &target, Err(EINTR));
    }
    let filled = socket.with_out_buffer(packet.id, |buf| {
        buf.iter_mut().take(4096).enumerate().for_each(|(i, b)| *b = i as u8);
        buf.len()
    });
    let size = filled.unwrap_or(packet.d);
    match packet.uid % 9 {
        0 => reply(socket, packet, Ok(0)),
        1 => reply(socket, packet, Ok(size)),
        2 => reply(socket, packet, Ok(size.wrapping_add(1))),
        3 => reply(socket, packet, Err(ENOENT)),
        4 => reply(socket, packet, Err(EINTR)),
        5 => reply(socket, packet, Err(ESKMSG)),
        6 => reply(socket, packet, Err(packet.gid as i32)),
        7 => {
            reply(socket, packet, Ok(packet.b));
            let event =
                Packet { a: SYS_FEVENT, b: packet.b, c: EVENT_READ.bits(), ..Packet::default() };
            socket.write_packet(&event);
        }
        _ => {
            // At most 8 parked (each read may hold a 16 MiB buffer): more is the known
            // unbounded case replayed (ignored) in bridge/tests/fuzz_regressions.rs.
            if parked.len() == 8 {
                reply(socket, &parked.remove(0), Ok(0));
            }
            parked.push(*packet);
        }
    }
}

fn reply(socket: &SchemeSocket, packet: &Packet, result: Result<usize, i32>) {
    let a = Error::mux(result.map_err(Error::new));
    socket.write_packet(&Packet { a, ..*packet });
}
