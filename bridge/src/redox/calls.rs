//! The calls both kernel protocols share: a wire [`Call`] built from the kernel's arguments
//! (in-buffers copied out of caller memory, lengths capped so each frame fits), and the
//! kernel's result built from the wire reply (out-buffers copied back, never more than the
//! kernel's length; a daemon that claims more gets the caller `EIO`). Stat, StatVfs and
//! TimeSpec are laid out at their real `repr(C)` offsets, padding zeroed.

use std::mem::{offset_of, size_of};

use log::warn;
use scheme_protocol::{Bytes, Call, Errno, Fd, Reply, Stat, StatVfs, TimeSpec};
use syscall::data::{Stat as RedoxStat, StatVfs as RedoxStatVfs, TimeSpec as RedoxTimeSpec};
use syscall::dirent::DirentHeader;
use syscall::error::Error;

use super::memory::{CallerMemory, Region};
use crate::CallResult;

/// A result for the kernel: a value, or a Redox errno (muxed by the protocol modules).
pub(crate) type KernelResult = Result<usize, Errno>;

/// Bytes of Redox's in-memory `Stat` (104 on 64-bit targets).
pub(crate) const STAT_SIZE: usize = size_of::<RedoxStat>();
/// Bytes of Redox's in-memory `StatVfs` (32 on 64-bit targets).
pub(crate) const STATVFS_SIZE: usize = size_of::<RedoxStatVfs>();
/// Bytes of Redox's in-memory `TimeSpec` (16 on 64-bit targets).
pub(crate) const TIMESPEC_SIZE: usize = size_of::<RedoxTimeSpec>();
/// The dirent header size of redox_syscall 0.5 records, the only one the wire carries.
pub(crate) const DIRENT_HEADER_SIZE: usize = size_of::<DirentHeader>();
/// Highest errno passed on from a daemon: `ESKMSG` (132) and above are not errnos.
const MAX_ERRNO: i32 = 131;

/// A wire call and how its reply becomes the kernel's result.
#[derive(Debug)]
pub(crate) struct Forward {
    pub(crate) call: Call,
    pub(crate) finish: Finish,
}

/// How a reply becomes the kernel's result, and where its bytes go.
#[derive(Debug)]
pub(crate) enum Finish {
    /// A value: a handle id, an offset, flags, 0.
    Value,
    /// A byte count of at most this many bytes (write).
    Written(usize),
    /// Data copied into the caller's buffer; the result is its length.
    Data(Region),
    /// A `Stat` laid out in the caller's buffer; the result is 0.
    Stat(Region),
    /// A `StatVfs` laid out in the caller's buffer; the result is 0.
    StatVfs(Region),
    /// `Fsize`: the `st_size` of an fstat reply.
    Size,
}

impl Forward {
    fn new(call: Call, finish: Finish) -> Forward {
        Forward { call, finish }
    }

    /// A call answered with a plain value.
    pub(crate) fn value(call: Call) -> Forward {
        Forward::new(call, Finish::Value)
    }
}

impl Finish {
    /// The kernel's result for `answer`, copying out what the reply carries.
    pub(crate) fn complete(self, call: &'static str, answer: CallResult<Reply>) -> KernelResult {
        let reply = answer.map_err(|err| checked_errno(call, err.errno()))?;
        match (self, reply) {
            (Finish::Value, Reply::Value(value)) => checked_value(call, value),
            (Finish::Written(max), Reply::Value(count)) if count <= max as u64 => {
                checked_value(call, count)
            }
            (Finish::Data(region), Reply::Data(data)) => copy_out(call, region, &data),
            (Finish::Stat(region), Reply::Stat(stat)) => {
                copy_out(call, region, &stat_bytes(&stat)).map(|_| 0)
            }
            (Finish::StatVfs(region), Reply::StatVfs(stat)) => {
                copy_out(call, region, &statvfs_bytes(&stat)).map(|_| 0)
            }
            (Finish::Size, Reply::Stat(stat)) => checked_value(call, stat.st_size),
            (finish, reply) => {
                warn!("{call}: daemon answered {}, not what {finish:?} needs; EIO", shape(&reply));
                Err(Errno::EIO)
            }
        }
    }
}

fn shape(reply: &Reply) -> String {
    match reply {
        Reply::Value(value) => format!("the value {value}"),
        Reply::Data(data) => format!("{} bytes", data.len()),
        Reply::Stat(_) => "a stat".into(),
        Reply::StatVfs(_) => "a statvfs".into(),
        Reply::Opened { fd, .. } => format!("the opened handle {}", fd.0),
    }
}

/// The daemon's errno, if it is one the kernel can pass on; `EIO` otherwise (0 or a negative
/// value would read as success, 132 and up are not errnos).
fn checked_errno(call: &str, errno: Errno) -> Errno {
    if (1..=MAX_ERRNO).contains(&errno.0) {
        errno
    } else {
        warn!("{call}: daemon answered errno {}, which is not one; EIO", errno.0);
        Errno::EIO
    }
}

/// A value the kernel will not mistake for an errno, or `EIO`.
fn checked_value(call: &str, value: u64) -> KernelResult {
    match usize::try_from(value) {
        Ok(value) if Error::demux(value).is_ok() => Ok(value),
        _ => {
            warn!("{call}: daemon answered {value:#x}, which reads as an errno; EIO");
            Err(Errno::EIO)
        }
    }
}

fn copy_out(call: &str, region: Region, data: &[u8]) -> KernelResult {
    let limit = region.len();
    match region.write(data) {
        Ok(()) => Ok(data.len()),
        Err(_) => {
            warn!("{call}: daemon answered {} bytes for a {limit}-byte buffer; EIO", data.len());
            Err(Errno::EIO)
        }
    }
}

/// What the translator may put in one frame, and whom it reads caller memory for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args {
    pub(crate) memory: CallerMemory,
    /// The largest payload one wire call or reply carries.
    pub(crate) max_payload: usize,
}

impl Args {
    /// A UTF-8 path from caller memory: `ENAMETOOLONG` if it cannot fit in a frame, `EINVAL`
    /// if it is not UTF-8 (as redox_syscall's `handle` answers).
    pub(crate) fn path(&self, ptr: usize, len: usize) -> Result<String, Errno> {
        if len > self.max_payload {
            return Err(Errno::ENAMETOOLONG);
        }
        let bytes = self.memory.region(ptr, len)?.read(len);
        String::from_utf8(bytes).map_err(|_| Errno::EINVAL)
    }

    /// `open(path, flags)`.
    pub(crate) fn open(&self, ptr: usize, len: usize, flags: u64) -> Result<Forward, Errno> {
        Ok(Forward::value(Call::Open { path: self.path(ptr, len)?, flags }))
    }

    /// A call whose argument is a path (rmdir, unlink, flink, frename).
    pub(crate) fn on_path(
        &self,
        ptr: usize,
        len: usize,
        call: impl FnOnce(String) -> Call,
    ) -> Result<Forward, Errno> {
        Ok(Forward::value(call(self.path(ptr, len)?)))
    }

    /// `dup(fd, buf)`; a buffer that does not fit in a frame is `EINVAL`.
    pub(crate) fn dup(&self, fd: u64, ptr: usize, len: usize) -> Result<Forward, Errno> {
        if len > self.max_payload {
            return Err(Errno::EINVAL);
        }
        let buf = self.memory.region(ptr, len)?.read(len);
        Ok(Forward::value(Call::Dup { fd: Fd(fd), buf: Bytes::from(buf) }))
    }

    /// `read(fd, buf)`: asks for at most one frame's worth (a short read).
    pub(crate) fn read(&self, fd: u64, ptr: usize, len: usize) -> Result<Forward, Errno> {
        let (region, len) = self.out_buffer(ptr, len)?;
        Ok(Forward::new(Call::Read { fd: Fd(fd), len }, Finish::Data(region)))
    }

    /// `write(fd, buf)`: sends at most one frame's worth (a short write).
    pub(crate) fn write(&self, fd: u64, ptr: usize, len: usize) -> Result<Forward, Errno> {
        let data = self.memory.region(ptr, len)?.read(self.max_payload);
        let sent = data.len();
        Ok(Forward::new(Call::Write { fd: Fd(fd), data: Bytes::from(data) }, Finish::Written(sent)))
    }

    /// `fpath(fd, buf)`.
    pub(crate) fn fpath(&self, fd: u64, ptr: usize, len: usize) -> Result<Forward, Errno> {
        let (region, len) = self.out_buffer(ptr, len)?;
        Ok(Forward::new(Call::Fpath { fd: Fd(fd), len }, Finish::Data(region)))
    }

    /// `getdents(fd, buf, opaque)`; the records are redox_syscall 0.5's, so a kernel asking
    /// for another header size gets `EINVAL` (0 means the default).
    pub(crate) fn getdents(
        &self,
        fd: u64,
        (ptr, len): (usize, usize),
        opaque: u64,
        header_size: u64,
    ) -> Result<Forward, Errno> {
        if header_size != 0 && header_size != DIRENT_HEADER_SIZE as u64 {
            return Err(Errno::EINVAL);
        }
        let (region, len) = self.out_buffer(ptr, len)?;
        Ok(Forward::new(Call::Getdents { fd: Fd(fd), len, opaque }, Finish::Data(region)))
    }

    /// `fstat(fd, &mut Stat)`: `EFAULT` if the buffer cannot hold a `Stat`.
    pub(crate) fn fstat(&self, fd: u64, ptr: usize, len: usize) -> Result<Forward, Errno> {
        let region = self.struct_buffer(ptr, len, STAT_SIZE)?;
        Ok(Forward::new(Call::Fstat { fd: Fd(fd) }, Finish::Stat(region)))
    }

    /// `fstatvfs(fd, &mut StatVfs)`: `EFAULT` if the buffer cannot hold a `StatVfs`.
    pub(crate) fn fstatvfs(&self, fd: u64, ptr: usize, len: usize) -> Result<Forward, Errno> {
        let region = self.struct_buffer(ptr, len, STATVFS_SIZE)?;
        Ok(Forward::new(Call::Fstatvfs { fd: Fd(fd) }, Finish::StatVfs(region)))
    }

    /// `futimens(fd, times)`: `len / 16` TimeSpecs, at most two (atime, mtime); `EFAULT` for
    /// fewer than one.
    pub(crate) fn futimens(&self, fd: u64, ptr: usize, len: usize) -> Result<Forward, Errno> {
        if len < TIMESPEC_SIZE {
            return Err(Errno::EFAULT);
        }
        let count = (len / TIMESPEC_SIZE).min(2);
        let bytes = self.memory.region(ptr, len)?.read(count * TIMESPEC_SIZE);
        let times = bytes.chunks_exact(TIMESPEC_SIZE).map(timespec_from_bytes).collect();
        Ok(Forward::value(Call::Futimens { fd: Fd(fd), times }))
    }

    /// An out-buffer and the length to ask the daemon for (at most one frame's worth).
    fn out_buffer(&self, ptr: usize, len: usize) -> Result<(Region, u64), Errno> {
        let region = self.memory.region(ptr, len)?.prefix(self.max_payload);
        let len = region.len() as u64;
        Ok((region, len))
    }

    fn struct_buffer(&self, ptr: usize, len: usize, size: usize) -> Result<Region, Errno> {
        if len < size {
            return Err(Errno::EFAULT);
        }
        Ok(self.memory.region(ptr, len)?.prefix(size))
    }
}

/// Writes `value`'s native-endian bytes at `offset`.
fn put<const N: usize>(out: &mut [u8], offset: usize, value: [u8; N]) {
    out[offset..offset + N].copy_from_slice(&value);
}

fn get<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    bytes[offset..offset + N].try_into().expect("slice of length N")
}

/// Redox's in-memory `Stat` for `s`, padding zeroed.
pub(crate) fn stat_bytes(s: &Stat) -> [u8; STAT_SIZE] {
    let mut out = [0u8; STAT_SIZE];
    put(&mut out, offset_of!(RedoxStat, st_dev), s.st_dev.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_ino), s.st_ino.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_mode), s.st_mode.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_nlink), s.st_nlink.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_uid), s.st_uid.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_gid), s.st_gid.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_size), s.st_size.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_blksize), s.st_blksize.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_blocks), s.st_blocks.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_mtime), s.st_mtime.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_mtime_nsec), s.st_mtime_nsec.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_atime), s.st_atime.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_atime_nsec), s.st_atime_nsec.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_ctime), s.st_ctime.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStat, st_ctime_nsec), s.st_ctime_nsec.to_ne_bytes());
    out
}

/// Redox's in-memory `StatVfs` for `s`, padding zeroed.
pub(crate) fn statvfs_bytes(s: &StatVfs) -> [u8; STATVFS_SIZE] {
    let mut out = [0u8; STATVFS_SIZE];
    put(&mut out, offset_of!(RedoxStatVfs, f_bsize), s.f_bsize.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStatVfs, f_blocks), s.f_blocks.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStatVfs, f_bfree), s.f_bfree.to_ne_bytes());
    put(&mut out, offset_of!(RedoxStatVfs, f_bavail), s.f_bavail.to_ne_bytes());
    out
}

/// A wire `TimeSpec` from Redox's in-memory one.
fn timespec_from_bytes(bytes: &[u8]) -> TimeSpec {
    TimeSpec {
        tv_sec: i64::from_ne_bytes(get(bytes, offset_of!(RedoxTimeSpec, tv_sec))),
        tv_nsec: i32::from_ne_bytes(get(bytes, offset_of!(RedoxTimeSpec, tv_nsec))),
    }
}
