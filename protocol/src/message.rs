//! The wire messages: one [`Frame`] enum for everything that crosses the pipe, in either
//! direction, and the owned types it carries. Every field is owned (paths are `String`,
//! buffers are [`Bytes`]), because the Redox `Packet` carries raw pointers that cannot cross a
//! process boundary. Flags, modes and errno values are Redox's own; nothing here translates.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bytes::Bytes;

/// The eight bytes every [`Hello`] starts with.
pub const MAGIC: [u8; 8] = *b"RDXSCHM\0";

/// The protocol version this crate speaks. Peers with a different version are refused.
pub const VERSION: u32 = 2;

/// [`Hello::features`] bit: the sender can use a payload region (PROTOCOL.md, "Payload
/// region"). A caller sets it when it handed the daemon a region; a daemon when it mapped one.
pub const FEATURE_REGION: u64 = 1;

/// [`Hello::features`] bit: the compound calls [`Call::StatPath`] and [`Call::OpenStat`]. A
/// daemon side sets it when it runs them (as several packets to its scheme); a caller side
/// when it may send them.
pub const FEATURE_COMPOUND: u64 = 2;

/// [`Hello::features`] bit: the compound call [`Call::OnPath`]. Set as [`FEATURE_COMPOUND`] is.
pub const FEATURE_PATH_STEPS: u64 = 4;

/// [`Hello::features`] bit: after the hellos, frames go through the two rings at the end of
/// the payload region instead of the pipes, which then carry only wake-up bytes (PROTOCOL.md,
/// "Frame rings"). Set as [`FEATURE_REGION`] is, when the region has room for the rings.
pub const FEATURE_RING: u64 = 8;

/// The most [`PathStep`]s one [`Call::OnPath`] may carry.
pub const MAX_PATH_STEPS: usize = 8;

/// A request tag chosen by the caller side; the reply carries the same tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag(pub u64);

/// A handle id chosen by the daemon (the number its `open` or `dup` returned). Ids need not be
/// unique across opens (zerod answers 0 to every open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fd(pub u64);

/// Who made a call, as the Redox kernel fills `Packet.pid/uid/gid` (effective ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Caller {
    /// Caller process id.
    pub pid: u64,
    /// Caller effective user id.
    pub uid: u32,
    /// Caller effective group id.
    pub gid: u32,
}

/// A Redox errno value (`ENOENT` = 2, `EWOULDBLOCK` = 41, ...), as the daemon answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $value:expr;)*) => {
        impl Errno {
            $(#[doc = concat!("Redox `", stringify!($name), "`.")] pub const $name: Errno = Errno($value);)*

            /// The constant's name, if this value has one here.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    EPERM = 1; ENOENT = 2; EINTR = 4; EIO = 5; EBADF = 9; EAGAIN = 11; ENOMEM = 12;
    EACCES = 13; EFAULT = 14; EEXIST = 17; ENODEV = 19; ENOTDIR = 20; EISDIR = 21;
    EINVAL = 22; EMFILE = 24; ENOSPC = 28; ESPIPE = 29; EPIPE = 32; ENAMETOOLONG = 36;
    ENOSYS = 38; ENOTEMPTY = 39; ELOOP = 40; EWOULDBLOCK = 41; EOVERFLOW = 75;
    EOPNOTSUPP = 95; ECONNREFUSED = 111; ECANCELED = 125;
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl std::error::Error for Errno {}

/// `struct timespec` as Redox's `TimeSpec` (16 bytes in memory, 12 on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimeSpec {
    /// Seconds.
    pub tv_sec: i64,
    /// Nanoseconds, 0..1_000_000_000.
    pub tv_nsec: i32,
}

/// Redox's `Stat` (104 bytes in memory), field for field.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stat {
    pub st_dev: u64,
    pub st_ino: u64,
    pub st_mode: u16,
    pub st_nlink: u32,
    pub st_uid: u32,
    pub st_gid: u32,
    pub st_size: u64,
    pub st_blksize: u32,
    pub st_blocks: u64,
    pub st_mtime: u64,
    pub st_mtime_nsec: u32,
    pub st_atime: u64,
    pub st_atime_nsec: u32,
    pub st_ctime: u64,
    pub st_ctime_nsec: u32,
}

/// Redox's `StatVfs` (32 bytes in memory), field for field.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatVfs {
    pub f_bsize: u32,
    pub f_blocks: u64,
    pub f_bfree: u64,
    pub f_bavail: u64,
}

/// The first frame in each direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// The sender's [`VERSION`].
    pub version: u32,
    /// The scheme the daemon serves, or the caller wants ("" = any).
    pub scheme: String,
    /// The largest frame body, in bytes, the sender accepts.
    pub max_frame: u32,
    /// `FEATURE_*` bits; a feature is used only when both hellos have its bit.
    pub features: u64,
}

/// One scheme call: every call redox_syscall 0.5.18's `SchemeBlockMut::handle` dispatches, plus
/// `getdents`. Variants are named after the Redox syscalls; the comment names the `Packet`.
#[allow(missing_docs)] // fields are named after the Redox arguments they carry
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// `SYS_OPEN`: path relative to the scheme root; flags are Redox `O_*` with the mode in
    /// the low 16 bits. Answered with [`Reply::Value`] = the new handle id.
    Open { path: String, flags: u64 },
    /// `SYS_RMDIR`. Answered with `Value(0)`.
    Rmdir { path: String },
    /// `SYS_UNLINK`. Answered with `Value(0)`.
    Unlink { path: String },
    /// `SYS_DUP` with a non-empty buffer ("listen", "connect", ...). Answered with the new id.
    Dup { fd: Fd, buf: Bytes },
    /// `SYS_READ` of up to `len` bytes. Answered with [`Reply::Data`].
    Read { fd: Fd, len: u64 },
    /// `SYS_WRITE`. Answered with `Value(bytes written)`.
    Write { fd: Fd, data: Bytes },
    /// `SYS_LSEEK`; whence is `SEEK_SET` 0, `SEEK_CUR` 1 or `SEEK_END` 2. Answered with the
    /// new offset.
    Lseek { fd: Fd, offset: i64, whence: u64 },
    /// `SYS_FCHMOD`.
    Fchmod { fd: Fd, mode: u16 },
    /// `SYS_FCHOWN`.
    Fchown { fd: Fd, uid: u32, gid: u32 },
    /// `SYS_FCNTL` (`F_GETFL` 3, `F_SETFL` 4, ...). Answered with the command's value.
    Fcntl { fd: Fd, cmd: u64, arg: u64 },
    /// `SYS_FEVENT` with the requested `EVENT_*` flags. Answered with the flags ready now.
    Fevent { fd: Fd, flags: u64 },
    /// `SYS_FLINK`: hard link to the scheme-relative `path`.
    Flink { fd: Fd, path: String },
    /// `SYS_FPATH` into a buffer of `len` bytes. Answered with [`Reply::Data`].
    Fpath { fd: Fd, len: u64 },
    /// `SYS_FRENAME` to the scheme-relative `path`.
    Frename { fd: Fd, path: String },
    /// `SYS_FSTAT`. Answered with [`Reply::Stat`].
    Fstat { fd: Fd },
    /// `SYS_FSTATVFS`. Answered with [`Reply::StatVfs`].
    Fstatvfs { fd: Fd },
    /// `SYS_FSYNC`.
    Fsync { fd: Fd },
    /// `SYS_FTRUNCATE`.
    Ftruncate { fd: Fd, len: u64 },
    /// `SYS_FUTIMENS`: `[atime, mtime]`.
    Futimens { fd: Fd, times: Vec<TimeSpec> },
    /// `SYS_CLOSE`: the last reference to the handle went away.
    Close { fd: Fd },
    /// `SYS_GETDENTS`: up to `len` bytes of redox_syscall 0.5 dirent records starting at the
    /// opaque cursor `opaque` (0 = start). Answered with [`Reply::Data`]; empty = end.
    Getdents { fd: Fd, len: u64, opaque: u64 },
    /// `SYS_READ` of up to `len` bytes into the payload region at byte `at`, instead of into the
    /// reply. Answered with `Value(bytes read)`. Only with [`FEATURE_REGION`] negotiated.
    ReadRegion { fd: Fd, len: u64, at: u64 },
    /// `SYS_WRITE` of the `len` bytes at byte `at` of the payload region. Answered with
    /// `Value(bytes written)`. Only with [`FEATURE_REGION`] negotiated.
    WriteRegion { fd: Fd, len: u64, at: u64 },
    /// Compound: `open(path, O_STAT | O_NOFOLLOW)`, `fstat` of that handle, `close` (what a
    /// Redox `lstat(2)` costs libc), as one round trip. Answered with [`Reply::Stat`]. Only
    /// with [`FEATURE_COMPOUND`] negotiated.
    StatPath { path: String },
    /// Compound: `open(path, flags)` then `fstat` of the new handle, which stays open.
    /// Answered with [`Reply::Opened`]. Only with [`FEATURE_COMPOUND`] negotiated.
    OpenStat { path: String, flags: u64 },
    /// Compound: `open(path, flags)`, each of `steps` in order on the new handle, `close`, as
    /// one round trip (a rename, chmod or utimens by path, a readlink). Answered with the last
    /// step's answer, or the first errno (of the open or a step; the steps after it are not
    /// made). 1 to [`MAX_PATH_STEPS`] steps. Only with [`FEATURE_PATH_STEPS`] negotiated.
    OnPath { path: String, flags: u64, steps: Vec<PathStep> },
}

/// One handle call of a [`Call::OnPath`], made on the handle its open returned: the [`Call`]
/// of the same name without its `fd`.
#[allow(missing_docs)] // fields are those of the `Call` of the same name
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathStep {
    Read { len: u64 },
    Write { data: Bytes },
    Fchmod { mode: u16 },
    Fchown { uid: u32, gid: u32 },
    Flink { path: String },
    Frename { path: String },
    Fstat,
    Fstatvfs,
    Ftruncate { len: u64 },
    Futimens { times: Vec<TimeSpec> },
}

impl PathStep {
    /// This step as a call on handle `fd`.
    pub fn on(self, fd: Fd) -> Call {
        match self {
            PathStep::Read { len } => Call::Read { fd, len },
            PathStep::Write { data } => Call::Write { fd, data },
            PathStep::Fchmod { mode } => Call::Fchmod { fd, mode },
            PathStep::Fchown { uid, gid } => Call::Fchown { fd, uid, gid },
            PathStep::Flink { path } => Call::Flink { fd, path },
            PathStep::Frename { path } => Call::Frename { fd, path },
            PathStep::Fstat => Call::Fstat { fd },
            PathStep::Fstatvfs => Call::Fstatvfs { fd },
            PathStep::Ftruncate { len } => Call::Ftruncate { fd, len },
            PathStep::Futimens { times } => Call::Futimens { fd, times },
        }
    }
}

/// A successful answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A number: a handle id, a byte count, an offset, flags, or 0.
    Value(u64),
    /// Bytes copied out: read data, an fpath, dirent records.
    Data(Bytes),
    /// An fstat answer.
    Stat(Stat),
    /// An fstatvfs answer.
    StatVfs(StatVfs),
    /// An [`Call::OpenStat`] answer.
    Opened {
        /// The new handle.
        fd: Fd,
        /// Its fstat.
        stat: Stat,
    },
}

/// What the daemon answered: a [`Reply`] or a Redox errno.
pub type Response = Result<Reply, Errno>;

/// Everything that crosses the pipe. The variant order is the wire tag; never reorder.
#[allow(missing_docs)] // fields are documented on their types
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Both directions, first frame, exactly once.
    Hello(Hello),
    /// Caller -> daemon: a scheme call.
    Call { tag: Tag, caller: Caller, call: Call },
    /// Caller -> daemon: the caller gave up on `tag` (a signal); it has already been told EINTR.
    Cancel { tag: Tag },
    /// Daemon -> caller: the answer to `tag`, in any order.
    Reply { tag: Tag, response: Response },
    /// Daemon -> caller, at any time: handle `fd` has `flags` (`EVENT_READ` 1, `EVENT_WRITE` 2).
    Event { fd: Fd, flags: u64 },
}

impl Frame {
    /// The variant's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Call { .. } => "Call",
            Frame::Cancel { .. } => "Cancel",
            Frame::Reply { .. } => "Reply",
            Frame::Event { .. } => "Event",
        }
    }
}

impl Reply {
    /// What kind of answer this is, for logs and errors: "a value", "data", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Value(_) => "a value",
            Reply::Data(_) => "data",
            Reply::Stat(_) => "a stat",
            Reply::StatVfs(_) => "a statvfs",
            Reply::Opened { .. } => "an opened handle",
        }
    }
}

impl Call {
    /// The Redox syscall's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Open { .. } => "open",
            Call::Rmdir { .. } => "rmdir",
            Call::Unlink { .. } => "unlink",
            Call::Dup { .. } => "dup",
            Call::Read { .. } => "read",
            Call::Write { .. } => "write",
            Call::Lseek { .. } => "lseek",
            Call::Fchmod { .. } => "fchmod",
            Call::Fchown { .. } => "fchown",
            Call::Fcntl { .. } => "fcntl",
            Call::Fevent { .. } => "fevent",
            Call::Flink { .. } => "flink",
            Call::Fpath { .. } => "fpath",
            Call::Frename { .. } => "frename",
            Call::Fstat { .. } => "fstat",
            Call::Fstatvfs { .. } => "fstatvfs",
            Call::Fsync { .. } => "fsync",
            Call::Ftruncate { .. } => "ftruncate",
            Call::Futimens { .. } => "futimens",
            Call::Close { .. } => "close",
            Call::Getdents { .. } => "getdents",
            Call::ReadRegion { .. } => "read_region",
            Call::WriteRegion { .. } => "write_region",
            Call::StatPath { .. } => "stat_path",
            Call::OpenStat { .. } => "open_stat",
            Call::OnPath { .. } => "on_path",
        }
    }

    /// The handle the call acts on, if it is a handle call.
    pub fn fd(&self) -> Option<Fd> {
        match self {
            Call::Open { .. }
            | Call::Rmdir { .. }
            | Call::Unlink { .. }
            | Call::StatPath { .. }
            | Call::OpenStat { .. }
            | Call::OnPath { .. } => None,
            Call::Dup { fd, .. }
            | Call::Read { fd, .. }
            | Call::Write { fd, .. }
            | Call::Lseek { fd, .. }
            | Call::Fchmod { fd, .. }
            | Call::Fchown { fd, .. }
            | Call::Fcntl { fd, .. }
            | Call::Fevent { fd, .. }
            | Call::Flink { fd, .. }
            | Call::Fpath { fd, .. }
            | Call::Frename { fd, .. }
            | Call::Fstat { fd }
            | Call::Fstatvfs { fd }
            | Call::Fsync { fd }
            | Call::Ftruncate { fd, .. }
            | Call::Futimens { fd, .. }
            | Call::Close { fd }
            | Call::Getdents { fd, .. }
            | Call::ReadRegion { fd, .. }
            | Call::WriteRegion { fd, .. } => Some(*fd),
        }
    }

    /// Whether a successful answer names a new handle (open, dup and open_stat).
    pub fn creates_handle(&self) -> bool {
        matches!(self, Call::Open { .. } | Call::Dup { .. } | Call::OpenStat { .. })
    }
}

/// One line per call for traces: `read fd=3 len=4096`, `open "hello" flags=0x2010000`.
impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            Call::Open { path, flags } | Call::OpenStat { path, flags } => {
                write!(f, "{name} {path:?} flags={flags:#x}")
            }
            Call::Rmdir { path } | Call::Unlink { path } | Call::StatPath { path } => {
                write!(f, "{name} {path:?}")
            }
            Call::OnPath { path, flags, steps } => {
                write!(f, "{name} {path:?} flags={flags:#x} {steps:?}")
            }
            Call::Dup { fd, buf } => write!(f, "{name} fd={} {:?}", fd.0, buf.lossy()),
            Call::Read { fd, len } | Call::Fpath { fd, len } => {
                write!(f, "{name} fd={} len={len}", fd.0)
            }
            Call::Write { fd, data } => write!(f, "{name} fd={} len={}", fd.0, data.len()),
            Call::Lseek { fd, offset, whence } => {
                write!(f, "{name} fd={} offset={offset} whence={whence}", fd.0)
            }
            Call::Fchmod { fd, mode } => write!(f, "{name} fd={} mode={mode:#o}", fd.0),
            Call::Fchown { fd, uid, gid } => write!(f, "{name} fd={} uid={uid} gid={gid}", fd.0),
            Call::Fcntl { fd, cmd, arg } => write!(f, "{name} fd={} cmd={cmd} arg={arg:#x}", fd.0),
            Call::Fevent { fd, flags } => write!(f, "{name} fd={} flags={flags:#x}", fd.0),
            Call::Flink { fd, path } | Call::Frename { fd, path } => {
                write!(f, "{name} fd={} {path:?}", fd.0)
            }
            Call::Ftruncate { fd, len } => write!(f, "{name} fd={} len={len}", fd.0),
            Call::Futimens { fd, times } => write!(f, "{name} fd={} {times:?}", fd.0),
            Call::Getdents { fd, len, opaque } => {
                write!(f, "{name} fd={} len={len} opaque={opaque}", fd.0)
            }
            Call::ReadRegion { fd, len, at } | Call::WriteRegion { fd, len, at } => {
                write!(f, "{name} fd={} len={len} at={at}", fd.0)
            }
            Call::Fstat { fd }
            | Call::Fstatvfs { fd }
            | Call::Fsync { fd }
            | Call::Close { fd } => {
                write!(f, "{name} fd={}", fd.0)
            }
        }
    }
}
