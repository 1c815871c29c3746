//! Wire [`Call`] -> Redox `Packet` and daemon result -> wire [`Response`], for the daemon side.
//! Each call's buffers are owned here ([`Buffers`]) and the packet points into them, exactly as
//! the kernel maps caller memory; results are checked against those buffers before anything is
//! copied out, so a daemon that claims more bytes than it was given gets EIO.

use std::sync::Arc;

use log::{error, warn};
use scheme_protocol::{Bytes, Call, Caller, Errno, Reply, Response, Stat, StatVfs};
use syscall::data::Packet;
use syscall::number::*;

use crate::region::Region;

/// The memory a packet points into. Kept until the daemon replies.
#[derive(Debug)]
pub(crate) enum Buffers {
    None,
    /// Caller -> daemon bytes: a path, write data, a dup buffer (read only: the daemon gets
    /// them as `&[u8]`; write data may share the buffer its frame arrived in).
    In(Bytes),
    /// Daemon -> caller bytes: read data, an fpath, dirents.
    Out(Vec<u8>),
    // One-element vectors, not boxes: the daemon writes through a raw pointer while we hold them.
    Stat(Vec<syscall::data::Stat>),
    StatVfs(Vec<syscall::data::StatVfs>),
    /// Only held: the daemon reads the times through the packet's pointer.
    Times(#[allow(dead_code)] Vec<syscall::data::TimeSpec>),
    /// `len` bytes of the payload region (held mapped while the packet is out).
    Region(#[allow(dead_code)] Arc<Region>, usize),
}

/// Builds the packet for `call`. Out-buffers are capped at `max_payload` bytes so the reply
/// fits in one frame (a short read is always allowed). Region calls need `region` and a range
/// inside it (`EINVAL` otherwise).
pub(crate) fn from_call(
    id: u64,
    caller: Caller,
    call: Call,
    max_payload: usize,
    region: Option<&Arc<Region>>,
) -> Result<(Packet, Buffers), Errno> {
    let mut p = Packet {
        id,
        pid: caller.pid as usize,
        uid: caller.uid,
        gid: caller.gid,
        ..Packet::default()
    };
    let buffers = match call {
        Call::Open { path, flags } => {
            p.a = SYS_OPEN;
            p.d = flags as usize;
            input(&mut p.b, &mut p.c, path.into_bytes().into())
        }
        Call::Rmdir { path } => {
            p.a = SYS_RMDIR;
            input(&mut p.b, &mut p.c, path.into_bytes().into())
        }
        Call::Unlink { path } => {
            p.a = SYS_UNLINK;
            input(&mut p.b, &mut p.c, path.into_bytes().into())
        }
        Call::Dup { fd, buf } => handle_input(&mut p, SYS_DUP, fd.0, buf),
        Call::Read { fd, len } => handle_output(&mut p, SYS_READ, fd.0, len, max_payload),
        Call::Write { fd, data } => handle_input(&mut p, SYS_WRITE, fd.0, data),
        Call::Lseek { fd, offset, whence } => {
            set(&mut p, SYS_LSEEK, fd.0, offset as isize as usize, whence as usize)
        }
        Call::Fchmod { fd, mode } => set(&mut p, SYS_FCHMOD, fd.0, mode as usize, 0),
        Call::Fchown { fd, uid, gid } => set(&mut p, SYS_FCHOWN, fd.0, uid as usize, gid as usize),
        Call::Fcntl { fd, cmd, arg } => set(&mut p, SYS_FCNTL, fd.0, cmd as usize, arg as usize),
        Call::Fevent { fd, flags } => set(&mut p, SYS_FEVENT, fd.0, flags as usize, 0),
        Call::Flink { fd, path } => handle_input(&mut p, SYS_FLINK, fd.0, path.into_bytes().into()),
        Call::Fpath { fd, len } => handle_output(&mut p, SYS_FPATH, fd.0, len, max_payload),
        Call::Frename { fd, path } => {
            handle_input(&mut p, SYS_FRENAME, fd.0, path.into_bytes().into())
        }
        Call::Fstat { fd } => {
            let mut stat = vec![syscall::data::Stat::default()];
            set(&mut p, SYS_FSTAT, fd.0, stat.as_mut_ptr() as usize, size_of_val(&stat[0]));
            return Ok((p, Buffers::Stat(stat)));
        }
        Call::Fstatvfs { fd } => {
            let mut stat = vec![syscall::data::StatVfs::default()];
            set(&mut p, SYS_FSTATVFS, fd.0, stat.as_mut_ptr() as usize, size_of_val(&stat[0]));
            return Ok((p, Buffers::StatVfs(stat)));
        }
        Call::Fsync { fd } => set(&mut p, SYS_FSYNC, fd.0, 0, 0),
        Call::Ftruncate { fd, len } => set(&mut p, SYS_FTRUNCATE, fd.0, len as usize, 0),
        Call::Futimens { fd, times } => {
            let times: Vec<_> = times
                .iter()
                .map(|t| syscall::data::TimeSpec { tv_sec: t.tv_sec, tv_nsec: t.tv_nsec })
                .collect();
            let bytes = size_of_val(times.as_slice());
            set(&mut p, SYS_FUTIMENS, fd.0, times.as_ptr() as usize, bytes);
            return Ok((p, Buffers::Times(times)));
        }
        Call::Close { fd } => set(&mut p, SYS_CLOSE, fd.0, 0, 0),
        Call::Getdents { fd, len, opaque } => {
            // The opaque cursor rides in uid:gid, like the mmap offset of KSMSG_MMAP_PREP.
            p.uid = opaque as u32;
            p.gid = (opaque >> 32) as u32;
            handle_output(&mut p, SYS_GETDENTS, fd.0, len, max_payload)
        }
        Call::ReadRegion { fd, len, at } => in_region(&mut p, SYS_READ, fd.0, region, at, len)?,
        Call::WriteRegion { fd, len, at } => in_region(&mut p, SYS_WRITE, fd.0, region, at, len)?,
        Call::StatPath { .. } | Call::OpenStat { .. } | Call::OnPath { .. } => {
            // Several packets; `compound` splits them before they get here.
            warn!("{} cannot be one packet; ENOSYS", call.name());
            return Err(Errno::ENOSYS);
        }
    };
    Ok((p, buffers))
}

/// A read or write whose buffer is `len` bytes of the payload region at `at`.
fn in_region(
    p: &mut Packet,
    a: usize,
    fd: u64,
    region: Option<&Arc<Region>>,
    at: u64,
    len: u64,
) -> Result<Buffers, Errno> {
    let Some(region) = region else {
        warn!("region call without a payload region; EINVAL");
        return Err(Errno::EINVAL);
    };
    let Some(addr) = region.address(at, len) else {
        warn!(
            "region call for {len} bytes at {at}, outside the {}-byte region; EINVAL",
            region.len()
        );
        return Err(Errno::EINVAL);
    };
    set(p, a, fd, addr, len as usize);
    Ok(Buffers::Region(Arc::clone(region), len as usize))
}

/// For fuzzing (`fuzz/`): `call` becomes the packet [`SchemeSocket`](crate::SchemeSocket)
/// would deliver, `daemon` answers it (given the packet and the buffers its pointers name: the
/// in-buffer and the out-buffer, each empty if the call has none), and the answer is checked
/// as a real one is.
#[doc(hidden)]
pub fn translate_offline(
    call: Call,
    caller: Caller,
    max_payload: usize,
    daemon: impl FnOnce(&mut Packet, &[u8], &mut [u8]),
) -> Response {
    let name = call.name();
    let (mut packet, mut buffers) = from_call(1, caller, call, max_payload, None)?;
    match &mut buffers {
        Buffers::In(input) => daemon(&mut packet, input, &mut []),
        Buffers::Out(out) => daemon(&mut packet, &[], out),
        _ => daemon(&mut packet, &[], &mut []),
    }
    response(name, &packet, buffers)
}

/// The internal close of a handle opened by a cancelled call.
pub(crate) fn close(id: u64, fd: usize) -> Packet {
    Packet { id, a: SYS_CLOSE, b: fd, ..Packet::default() }
}

/// `KSMSG_CANCEL` for packet `target` (id 0, whole target id in `b`, as kernels before 2025-12).
pub(crate) fn cancel(target: u64) -> Packet {
    Packet { a: KSMSG_CANCEL, b: target as usize, ..Packet::default() }
}

/// Whether a successful answer to `call` is a new handle id.
pub(crate) fn creates_handle(call: &str) -> bool {
    matches!(call, "open" | "dup")
}

fn set(p: &mut Packet, a: usize, fd: u64, c: usize, d: usize) -> Buffers {
    p.a = a;
    p.b = fd as usize;
    p.c = c;
    p.d = d;
    Buffers::None
}

fn input(ptr: &mut usize, len: &mut usize, bytes: Bytes) -> Buffers {
    *ptr = bytes.as_ptr() as usize;
    *len = bytes.len();
    Buffers::In(bytes)
}

fn handle_input(p: &mut Packet, a: usize, fd: u64, bytes: Bytes) -> Buffers {
    p.a = a;
    p.b = fd as usize;
    input(&mut p.c, &mut p.d, bytes)
}

fn handle_output(p: &mut Packet, a: usize, fd: u64, len: u64, max_payload: usize) -> Buffers {
    let mut buf = vec![0u8; (len as usize).min(max_payload)];
    p.a = a;
    p.b = fd as usize;
    p.c = buf.as_mut_ptr() as usize;
    p.d = buf.len();
    Buffers::Out(buf)
}

/// Turns the daemon's muxed result in `packet.a` into a wire response, copying out only what
/// the result says is valid and refusing results that exceed the buffer.
pub(crate) fn response(call: &'static str, packet: &Packet, buffers: Buffers) -> Response {
    let value = match syscall::error::Error::demux(packet.a) {
        Ok(value) => value,
        Err(err) if err.errno == syscall::error::ESKMSG => {
            warn!("{call}: daemon answered with a forwarded fd (ESKMSG); fds cannot cross a pipe");
            return Err(Errno::EOPNOTSUPP);
        }
        Err(err) => return Err(Errno(err.errno)),
    };
    let too_large = |limit: usize| {
        error!("{call}: daemon returned {value}, more than the {limit}-byte buffer; EIO");
        Err(Errno::EIO)
    };
    match buffers {
        Buffers::Out(mut buf) => {
            if value > buf.len() {
                return too_large(buf.len());
            }
            buf.truncate(value);
            Ok(Reply::Data(buf.into()))
        }
        Buffers::In(data) if call == "write" && value > data.len() => too_large(data.len()),
        Buffers::Region(_, len) if value > len => too_large(len),
        Buffers::Stat(stat) => Ok(Reply::Stat(stat_to_wire(&stat[0]))),
        Buffers::StatVfs(stat) => Ok(Reply::StatVfs(statvfs_to_wire(&stat[0]))),
        _ => Ok(Reply::Value(value as u64)),
    }
}

fn stat_to_wire(s: &syscall::data::Stat) -> Stat {
    Stat {
        st_dev: s.st_dev,
        st_ino: s.st_ino,
        st_mode: s.st_mode,
        st_nlink: s.st_nlink,
        st_uid: s.st_uid,
        st_gid: s.st_gid,
        st_size: s.st_size,
        st_blksize: s.st_blksize,
        st_blocks: s.st_blocks,
        st_mtime: s.st_mtime,
        st_mtime_nsec: s.st_mtime_nsec,
        st_atime: s.st_atime,
        st_atime_nsec: s.st_atime_nsec,
        st_ctime: s.st_ctime,
        st_ctime_nsec: s.st_ctime_nsec,
    }
}

fn statvfs_to_wire(s: &syscall::data::StatVfs) -> StatVfs {
    StatVfs { f_bsize: s.f_bsize, f_blocks: s.f_blocks, f_bfree: s.f_bfree, f_bavail: s.f_bavail }
}
