//! The translators, fed a sequence of steps built from the input with `arbitrary`, over one
//! buffer of arbitrary "caller memory": (1) a 56-byte legacy `Packet` (any `a`, any fields,
//! pointer fields aimed inside that memory, at null, or wrapping the address space) through
//! the Redox kernel side (`redox::legacy`), its wire call answered with an arbitrary reply;
//! (2) a v2 `Sqe` likewise (`redox::v2`, handle state kept across steps); (3) an arbitrary wire
//! `Call` through the daemon side's `Packet` translation (`packet.rs`) and an arbitrary daemon
//! answer back. Checked: the kernel gets exactly one well-formed answer carrying the request's
//! id, results are never errno-like values, caller memory is written only inside the
//! request's buffer and only with the reply's bytes, and what crosses the wire is exactly the
//! caller's bytes, never more than a frame's worth.

#![no_main]

use std::io::{self, Cursor};
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use scheme_bridge::redox::v2::{self, Offline};
use scheme_bridge::redox::{legacy, CallerMemory};
use scheme_bridge::{CallError, CallResult, Client};
use scheme_bridge_fuzz::{caller, reply};
use scheme_protocol::codec::encode_frame;
use scheme_protocol::{hello, Call, Errno, Frame, Reply, MAX_FRAME, MAX_OVERHEAD};
use syscall::data::{Packet, Stat};
use syscall::error::{Error, ESKMSG};
use syscall::number::*;
use syscall::schemev2::{Cqe, CqeOpcode, Opcode, Sqe, SqeFlags};

/// Frame limits the daemon may announce: the smallest, a middling one, the largest.
const MAX_FRAMES: [usize; 3] = [4096, 65536, MAX_FRAME];

/// Legacy `a` values the translator knows, and the ones of them that carry a buffer.
#[rustfmt::skip]
const LEGACY: [usize; 24] = [
    SYS_OPEN, SYS_RMDIR, SYS_UNLINK, SYS_DUP, SYS_READ, SYS_WRITE, SYS_LSEEK, SYS_FCHMOD,
    SYS_FCHOWN, SYS_FCNTL, SYS_FEVENT, SYS_FLINK, SYS_FPATH, SYS_FRENAME, SYS_FSTAT,
    SYS_FSTATVFS, SYS_FSYNC, SYS_FTRUNCATE, SYS_FUTIMENS, SYS_CLOSE, SYS_GETDENTS, KSMSG_MMAP,
    KSMSG_CANCEL, SYS_FMAP,
];
const LEGACY_PATH_IN_B: [usize; 3] = [SYS_OPEN, SYS_RMDIR, SYS_UNLINK];
#[rustfmt::skip]
const LEGACY_BUFFER_IN_C: [usize; 10] = [
    SYS_DUP, SYS_READ, SYS_WRITE, SYS_FLINK, SYS_FPATH, SYS_FRENAME, SYS_FSTAT, SYS_FSTATVFS,
    SYS_FUTIMENS, SYS_GETDENTS,
];
/// v2 opcodes with a buffer in `args[1..3]` (Open, Rmdir, Unlink have it in `args[0..2]`);
/// 32 and 33 are 0.9's UnlinkAt and StdFsCall.
const V2_BUFFER_IN_ARGS1: [u8; 13] = [4, 5, 6, 13, 14, 15, 16, 19, 26, 29, 30, 32, 33];

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

/// Closed clients, one per frame limit: `Offline` needs one only for its payload limit.
fn client(max_frame: usize) -> Client {
    static CLIENTS: OnceLock<Vec<Client>> = OnceLock::new();
    let clients = CLIENTS.get_or_init(|| {
        let connect = |max| {
            let mut peer = Vec::new();
            encode_frame(&Frame::Hello(hello("", max)), MAX_FRAME, &mut peer).unwrap();
            Client::connect(Cursor::new(peer), io::sink(), "").unwrap()
        };
        MAX_FRAMES.map(connect).to_vec()
    });
    clients[MAX_FRAMES.iter().position(|&max| max == max_frame).unwrap()].clone()
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let size = u.int_in_range(0..=1024usize)?;
    let mut memory = u.bytes(size.min(u.len()))?.to_vec();
    let max_frame = *u.choose(&MAX_FRAMES)?;
    let max_payload = max_frame - MAX_OVERHEAD;
    // SAFETY: every pointer+length this target puts in a request lies inside `memory` (or is
    // null or wraps around, which the translator refuses before any copy); `memory` outlives
    // every request, and each request is answered before `translate_offline`/`request` return.
    let caller_memory = unsafe { CallerMemory::assume_mapped() };
    let v2 = Offline::new(client(max_frame), caller_memory);
    for _ in 0..16 {
        match u.int_in_range(0..=2u8)? {
            0 => legacy_step(u, &mut memory, caller_memory, max_payload)?,
            1 => v2_step(u, &mut memory, &v2, max_payload)?,
            _ => wire_step(u)?,
        }
    }
    Ok(())
}

/// Where a request's buffer is: `memory[start..start + len]`, or nowhere (null, wrapping).
type Place = Option<(usize, usize)>;

/// A pointer and length for a request, mostly inside `memory`.
fn place(u: &mut Unstructured<'_>, memory: &mut [u8]) -> Result<(usize, usize, Place)> {
    Ok(match u.int_in_range(0..=15u8)? {
        0 => (0, u.arbitrary()?, None),
        1 => {
            let k = u.int_in_range(0..=64usize)?;
            (usize::MAX - k, k + 1 + u.int_in_range(0..=64usize)?, None)
        }
        _ => {
            let start = u.int_in_range(0..=memory.len())?;
            let len = u.int_in_range(0..=memory.len() - start)?;
            (memory.as_mut_ptr() as usize + start, len, Some((start, len)))
        }
    })
}

/// The daemon's answer to a wire call: mostly one of the right shape.
fn daemon(u: &mut Unstructured<'_>, call: &Call) -> CallResult<Reply> {
    let plausible = |u: &mut Unstructured<'_>| -> Result<CallResult<Reply>> {
        Ok(Ok(match call {
            Call::Read { len, .. } | Call::Fpath { len, .. } | Call::Getdents { len, .. } => {
                let n = u.int_in_range(0..=(*len as usize).saturating_add(1))?.min(u.len());
                Reply::Data(u.bytes(n)?.into())
            }
            Call::Write { data, .. } => Reply::Value(u.int_in_range(0..=data.len() as u64 + 1)?),
            _ => reply(u)?,
        }))
    };
    let answer = match u.int_in_range(0..=7u8) {
        Ok(0) => Ok(Err(CallError::Errno(Errno(u.arbitrary().unwrap_or(0))))),
        Ok(1) => Ok(Err(CallError::Disconnected("gone".into()))),
        Ok(2) => reply(u).map(Ok),
        _ => plausible(u),
    };
    answer.unwrap_or(Ok(Reply::Value(0)))
}

fn legacy_step(
    u: &mut Unstructured<'_>,
    memory: &mut [u8],
    caller_memory: CallerMemory,
    max_payload: usize,
) -> Result<()> {
    let a = if u.ratio(15, 16)? { *u.choose(&LEGACY)? } else { u.arbitrary()? };
    let id = if u.ratio(15, 16)? { u.int_in_range(1..=u64::MAX)? } else { 0 };
    let (pid, uid, gid) = u.arbitrary()?;
    let [b, c, d]: [usize; 3] = u.arbitrary()?;
    let mut packet = Packet { id, pid, uid, gid, a, b, c, d };
    let mut at = None;
    if LEGACY_PATH_IN_B.contains(&a) {
        let (ptr, len, place) = place(u, memory)?;
        (packet.b, packet.c, at) = (ptr, len, place);
    } else if LEGACY_BUFFER_IN_C.contains(&a) {
        let (ptr, len, place) = place(u, memory)?;
        (packet.c, packet.d, at) = (ptr, len, place);
    }
    let before = memory.to_vec();
    let mut seen = None;
    let answer = legacy::translate_offline(caller_memory, max_payload, packet, |call| {
        let reply = daemon(u, call);
        seen = Some((call.clone(), reply.clone()));
        reply
    });
    let Some(answer) = answer else {
        assert_eq!(id, 0, "every request is answered");
        return Ok(());
    };
    let mut back = Packet::default();
    back.copy_from_slice(&answer);
    assert!(Packet { a, ..back }[..] == packet[..], "the answer is the request with a new `a`");
    check(&before, memory, at, max_payload, seen, back.a as u64);
    Ok(())
}

fn v2_step(
    u: &mut Unstructured<'_>,
    memory: &mut [u8],
    v2: &Offline,
    max_payload: usize,
) -> Result<()> {
    let opcode = if u.ratio(15, 16)? { u.int_in_range(0..=35u8)? } else { u.arbitrary()? };
    let mut args: [u64; 6] = u.arbitrary()?;
    if u.ratio(1, 2)? {
        args[0] = *u.choose(&[v2::ROOT_ID, 0, 1, 2, 3])?;
    }
    if u.ratio(1, 2)? {
        args[3] = *u.choose(&[u64::MAX, 0, 1, 3, 4, 5, 8, 10, 19, 4096])?;
    }
    let mut at = None;
    if opcode <= 2 {
        let (ptr, len, place) = place(u, memory)?;
        (args[0], args[1], at) = (ptr as u64, len as u64, place);
    } else if V2_BUFFER_IN_ARGS1.contains(&opcode) {
        let (ptr, len, place) = place(u, memory)?;
        (args[1], args[2], at) = (ptr as u64, len as u64, place);
    }
    let flags = SqeFlags::from_bits_retain(u.arbitrary()?);
    let sqe = Sqe { opcode, sqe_flags: flags, _rsvd: 0, tag: u.arbitrary()?, args, caller: 1 };
    let before = memory.to_vec();
    let mut seen = None;
    let answer = v2.request(sqe, |call| {
        let reply = daemon(u, call);
        seen = Some((call.clone(), reply.clone()));
        reply
    });
    let message = [Opcode::Cancel as u8, Opcode::CloseMsg as u8, 34].contains(&opcode);
    let Some(answer) = answer else {
        assert!(message || flags.contains(SqeFlags::ONEWAY), "request {opcode} unanswered");
        return Ok(());
    };
    let mut cqe = Cqe::default();
    cqe.copy_from_slice(&answer);
    assert_eq!((cqe.flags, cqe.tag), (CqeOpcode::RespondRegular as u8, sqe.tag));
    check(&before, memory, at, max_payload, seen, cqe.result);
    Ok(())
}

/// What every kernel answer must satisfy, whatever the protocol.
fn check(
    before: &[u8],
    memory: &[u8],
    at: Place,
    max_payload: usize,
    seen: Option<(Call, CallResult<Reply>)>,
    result: u64,
) {
    let (start, len) = at.unwrap_or((0, 0));
    let changed = |i: usize| memory[i] != before[i];
    assert!(!(0..start).chain(start + len..memory.len()).any(changed), "wrote outside");
    let result = Error::demux(result as usize);
    if let Err(err) = result {
        assert!((1..=131).contains(&err.errno), "errno {} reached the kernel", err.errno);
    }
    let Some((call, reply)) = seen else {
        assert!(result.is_err(), "answered a value without asking the daemon");
        return;
    };
    let caller_bytes = &before[start..start + len];
    match &call {
        Call::Open { path, .. }
        | Call::Rmdir { path }
        | Call::Unlink { path }
        | Call::Flink { path, .. }
        | Call::Frename { path, .. } => assert!(path.as_bytes() == caller_bytes),
        Call::Dup { buf, .. } => assert!(buf[..] == *caller_bytes),
        Call::Write { data, .. } => assert!(data[..] == caller_bytes[..len.min(max_payload)]),
        Call::Read { len: n, .. } | Call::Fpath { len: n, .. } | Call::Getdents { len: n, .. } => {
            assert!(*n as usize <= len.min(max_payload), "asked the daemon for too much");
        }
        _ => {}
    }
    if let (Ok(n), Ok(Reply::Data(data))) = (result, &reply) {
        assert_eq!(n, data.len());
        assert!(memory[start..start + n] == data[..], "the reply's bytes, copied out");
    }
}

/// A wire call through `packet.rs`: the daemon gets the packet, answers, and the answer is
/// checked against the buffers.
fn wire_step(u: &mut Unstructured<'_>) -> Result<()> {
    let call = scheme_bridge_fuzz::call(u)?;
    let who = caller(u)?;
    let max_payload = *u.choose(&[0, 1, 4096 - MAX_OVERHEAD, MAX_FRAME - MAX_OVERHEAD])?;
    let expected = call.clone();
    let mut given = (0, 0);
    let response = scheme_bridge::translate_offline(call, who, max_payload, |packet, input, buf| {
        let (ptr, len) = match expected {
            Call::Open { .. } | Call::Rmdir { .. } | Call::Unlink { .. } => (packet.b, packet.c),
            _ => (packet.c, packet.d),
        };
        assert_eq!((packet.id, packet.pid), (1, who.pid as usize));
        for given in [input, &buf[..]] {
            if !given.is_empty() {
                let named = (given.as_ptr() as usize, given.len());
                assert_eq!((ptr, len), named, "the packet's buffer");
            }
        }
        match &expected {
            Call::Open { path, .. } | Call::Flink { path, .. } => assert!(path.as_bytes() == input),
            Call::Write { data, .. } | Call::Dup { buf: data, .. } => assert!(data[..] == *input),
            Call::Read { len, .. } | Call::Fpath { len, .. } | Call::Getdents { len, .. } => {
                assert_eq!(buf.len() as u64, (*len).min(max_payload as u64));
            }
            Call::Fstat { .. } if packet.d == size_of::<Stat>() => {
                let stat: [u8; size_of::<Stat>()] = u.arbitrary().unwrap_or([1; size_of::<Stat>()]);
                // SAFETY: an fstat packet's `c` points at one `Stat` (`d` bytes, checked above)
                // that the socket owns until the answer; any bytes are a valid `Stat`.
                unsafe { std::ptr::copy(stat.as_ptr(), packet.c as *mut u8, stat.len()) };
            }
            _ => {}
        }
        // A count up to the buffer's length: bytes taken from an in-buffer (read only: a scheme
        // gets it as `&[u8]`), or written into an out-buffer, which starts zeroed: the daemon
        // writes `fill` bytes, the rest stays 0.
        let fill = u.int_in_range(0..=buf.len().max(input.len()).min(4096)).unwrap_or(0);
        let written = fill.min(buf.len());
        buf[..written].iter_mut().for_each(|b| *b = 0xa5);
        given = (buf.len(), fill);
        packet.a = match u.int_in_range(0..=4u8).unwrap_or(0) {
            0 => Error::mux(Err(Error::new(u.arbitrary().unwrap_or(0)))),
            1 => Error::mux(Err(Error::new(ESKMSG))),
            2 => u.arbitrary().unwrap_or(0),
            _ => fill,
        };
    });
    if let Ok(Reply::Data(data)) = &response {
        let (size, fill) = given;
        assert!(data.len() <= size, "more than the out-buffer");
        let written = |(i, b): (usize, &u8)| *b == if i < fill { 0xa5 } else { 0 };
        assert!(data.iter().enumerate().all(written), "not the out-buffer's bytes");
    }
    if let (Call::Write { data, .. }, Ok(Reply::Value(n))) = (&expected, &response) {
        assert!(*n as usize <= data.len(), "wrote more than it was given");
    }
    Ok(())
}
