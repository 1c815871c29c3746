//! Bridge (caller) side: the input is what a daemon wrote to its stdout. It goes (1) to
//! `decode_body` and through a `FrameReader` as `client.rs` reads replies and events;
//! (2) to `handshake`, the hello parser and checks; (3) as a whole stream to
//! `Client::connect`: after the daemon's hello, three calls are submitted (tags 1, 2, 3), then
//! the rest of the stream is let through, and each call must be finished exactly once (by a
//! reply or by the stream's end), with nothing panicking or hanging.

#![no_main]

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use scheme_bridge::Client;
use scheme_bridge_fuzz as _; // the bounded allocator
use scheme_protocol::codec::decode_body;
use scheme_protocol::{
    handshake, hello, Call, Caller, Fd, FrameReader, FrameWriter, MAX_FRAME,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_body(data);
    let mut frames = FrameReader::new(data, MAX_FRAME);
    while frames.read_frame().is_ok() {}
    let mut writer = FrameWriter::new(io::sink(), MAX_FRAME);
    let _ = handshake(&mut FrameReader::new(data, MAX_FRAME), &mut writer, &hello("", MAX_FRAME));
    connect(data);
});

fn connect(data: &[u8]) {
    // The gate sits after the hello; with nothing after it (or no whole prefix) there is none,
    // so the handshake never waits on it.
    let hello_len = match data.get(..4) {
        Some(prefix) => 4 + u32::from_le_bytes(prefix.try_into().unwrap()) as usize,
        None => data.len(),
    };
    let (open, gate) = mpsc::sync_channel(1);
    let gate = (hello_len < data.len()).then_some(gate);
    let stream = Gated { data: data.to_vec(), at: 0, gate_at: hello_len, gate };
    let Ok(client) = Client::connect(stream, io::sink(), "") else { return };
    let finished = Arc::new(Mutex::new([0u32; 4]));
    for n in 1..=3u64 {
        let finished = Arc::clone(&finished);
        let call = Call::Read { fd: Fd(n), len: 16 };
        let tag = client.submit(
            Caller::default(),
            call,
            Box::new(move |_| finished.lock().unwrap()[n as usize] += 1),
        );
        assert_eq!(tag.0, n);
    }
    let closed = client.closed();
    let _ = open.send(());
    let _ = closed.recv();
    drop(client); // joins the reply reader, which runs every completion
    assert_eq!(*finished.lock().unwrap(), [0, 1, 1, 1], "every call finishes exactly once");
}

/// The daemon's stdout: the hello at once, the rest once the calls have been sent.
struct Gated {
    data: Vec<u8>,
    at: usize,
    gate_at: usize,
    gate: Option<Receiver<()>>,
}

impl Read for Gated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.gate_at {
            if let Some(gate) = self.gate.take() {
                let _ = gate.recv();
            }
        }
        let end = if self.gate.is_some() { self.gate_at } else { self.data.len() };
        let end = end.min(self.data.len()).min(self.at + buf.len());
        let n = end.saturating_sub(self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
