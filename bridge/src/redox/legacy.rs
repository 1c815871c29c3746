//! The legacy `Packet` protocol (redox_syscall 0.5.18; Redox kernels up to 2025-12): every
//! 56-byte packet the kernel delivers becomes a wire call, and its answer goes back as the same
//! packet with the muxed result in `a`, in whatever order the daemon answers. Daemon events
//! become `id = 0, a = SYS_FEVENT, b = id, c = flags` packets; a `KSMSG_CANCEL` (`id = 0`,
//! `b` = the request's id) becomes a wire cancel.

use std::io::{self, Read, Write};

use log::warn;
use scheme_protocol::{Call, Caller, Errno, Fd, Reply};
use syscall::data::Packet;
use syscall::error::Error;
use syscall::flag::{EVENT_READ, EVENT_WRITE};
use syscall::number::*;

use super::calls::{Args, Forward, KernelResult};
use super::kernel::{self, Core};
use super::{CallerMemory, UNKNOWN_ID};
use crate::{CallResult, Client, Event};

/// Serves the kernel's scheme socket with the legacy protocol: reads packets from
/// `kernel_in`, forwards each to the daemon behind `client` without waiting for it, and writes
/// every answer and event to `kernel_out`. Returns when the kernel closes the socket (the
/// scheme is unmounted); answers still owed are written as they arrive. If the daemon dies,
/// every outstanding and later request is answered `EIO`.
pub fn serve(
    client: Client,
    memory: CallerMemory,
    kernel_in: impl Read,
    kernel_out: impl Write + Send + 'static,
) -> io::Result<()> {
    let core = Core::new(client, kernel_out);
    let _events = core.pump_events(event_packet)?;
    let args = Args { memory, max_payload: core.max_payload() };
    kernel::for_each_request(kernel_in, |packet: Packet| handle(&core, args, packet))
}

/// For fuzzing (`fuzz/`): one packet through the translation [`serve`] makes, with the
/// daemon's answer to the wire call coming from `daemon` instead of the wire. Returns the
/// packet the kernel gets back, or `None` for an `id = 0` message.
#[doc(hidden)]
pub fn translate_offline(
    memory: CallerMemory,
    max_payload: usize,
    packet: Packet,
    daemon: impl FnOnce(&Call) -> CallResult<Reply>,
) -> Option<Vec<u8>> {
    if packet.id == 0 {
        return None;
    }
    let result = translate(Args { memory, max_payload }, &packet)
        .and_then(|Forward { call, finish }| finish.complete(call.name(), daemon(&call)));
    Some(answer(packet, result))
}

fn handle(core: &Core, args: Args, packet: Packet) {
    if packet.id == 0 {
        return kernel_message(core, &packet);
    }
    match translate(args, &packet) {
        Ok(forward) => {
            let respond = Box::new(move |result| answer(packet, result));
            core.forward(packet.id, caller(&packet), forward, respond);
        }
        Err(errno) => core.answer_now(&answer(packet, Err(errno))),
    }
}

/// `id = 0` packets are messages, not requests: only `KSMSG_CANCEL` means anything here.
fn kernel_message(core: &Core, packet: &Packet) {
    if packet.a == KSMSG_CANCEL {
        core.cancel(packet.b as u64);
    } else {
        warn!("kernel message a={:#x} with id 0 is not a request; ignored", packet.a);
    }
}

/// The wire call for a packet, following redox_syscall 0.5.18's `handle` (plus getdents), or
/// the errno to answer at once.
fn translate(args: Args, p: &Packet) -> Result<Forward, Errno> {
    let fd = Fd(p.b as u64);
    let value = |call| Ok(Forward::value(call));
    match p.a {
        SYS_OPEN => args.open(p.b, p.c, p.d as u64),
        SYS_RMDIR => args.on_path(p.b, p.c, |path| Call::Rmdir { path }),
        SYS_UNLINK => args.on_path(p.b, p.c, |path| Call::Unlink { path }),
        SYS_DUP => args.dup(fd.0, p.c, p.d),
        SYS_READ => args.read(fd.0, p.c, p.d),
        SYS_WRITE => args.write(fd.0, p.c, p.d),
        SYS_LSEEK => value(Call::Lseek { fd, offset: p.c as isize as i64, whence: p.d as u64 }),
        SYS_FCHMOD => value(Call::Fchmod { fd, mode: p.c as u16 }),
        SYS_FCHOWN => value(Call::Fchown { fd, uid: p.c as u32, gid: p.d as u32 }),
        SYS_FCNTL => value(Call::Fcntl { fd, cmd: p.c as u64, arg: p.d as u64 }),
        SYS_FEVENT => value(Call::Fevent { fd, flags: p.c as u64 }),
        SYS_FLINK => args.on_path(p.c, p.d, |path| Call::Flink { fd, path }),
        SYS_FPATH => args.fpath(fd.0, p.c, p.d),
        SYS_FRENAME => args.on_path(p.c, p.d, |path| Call::Frename { fd, path }),
        SYS_FSTAT => args.fstat(fd.0, p.c, p.d),
        SYS_FSTATVFS => args.fstatvfs(fd.0, p.c, p.d),
        SYS_FSYNC => value(Call::Fsync { fd }),
        SYS_FTRUNCATE => value(Call::Ftruncate { fd, len: p.c as u64 }),
        SYS_FUTIMENS => args.futimens(fd.0, p.c, p.d),
        SYS_CLOSE => value(Call::Close { fd }),
        SYS_GETDENTS => args.getdents(fd.0, (p.c, p.d), cursor(p), 0),
        KSMSG_MMAP | KSMSG_MSYNC | KSMSG_MUNMAP | KSMSG_MMAP_PREP | SYS_FMAP_OLD | SYS_FMAP
        | SYS_FUNMAP_OLD | SYS_FUNMAP => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::ENOSYS),
    }
}

/// The opaque getdents cursor, which rides in `uid | gid << 32` (PROTOCOL.md).
fn cursor(p: &Packet) -> u64 {
    u64::from(p.uid) | (u64::from(p.gid) << 32)
}

/// Who made the call. A getdents packet carries the cursor instead of uid/gid, so its caller's
/// ids are unknown and sent as [`UNKNOWN_ID`] (never root).
fn caller(p: &Packet) -> Caller {
    let (uid, gid) = if p.a == SYS_GETDENTS { (UNKNOWN_ID, UNKNOWN_ID) } else { (p.uid, p.gid) };
    Caller { pid: p.pid as u64, uid, gid }
}

/// The request packet with the muxed result in `a`, as a daemon writes it back.
fn answer(packet: Packet, result: KernelResult) -> Vec<u8> {
    let a = Error::mux(result.map_err(|errno| Error::new(errno.0)));
    Packet { a, ..packet }.to_vec()
}

/// `id = 0, a = SYS_FEVENT, b = handle id, c = flags`; flags other than read/write are
/// dropped (the kernel refuses them), and an event left with none is not sent.
fn event_packet(event: Event) -> Option<Vec<u8>> {
    let flags = event.flags as usize & (EVENT_READ | EVENT_WRITE).bits();
    if flags == 0 {
        warn!("daemon posted event flags {:#x} for handle {}; dropped", event.flags, event.fd.0);
        return None;
    }
    let packet = Packet { a: SYS_FEVENT, b: event.fd.0 as usize, c: flags, ..Packet::default() };
    Some(packet.to_vec())
}
