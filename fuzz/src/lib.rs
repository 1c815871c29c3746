//! What the fuzz targets share: wire values built from fuzz input with `arbitrary`
//! (every `Frame`, `Call` and `Reply` variant, with lengths that stay small), and a global
//! allocator that turns "more than [`LIVE_LIMIT`] bytes live at once" into a crash, so an
//! input that makes a decoder or translator allocate without bound is reported as one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use arbitrary::{Result, Unstructured};
use scheme_protocol::{
    Bytes, Call, Caller, Errno, Fd, Frame, Hello, PathStep, Reply, Response, Stat, StatVfs, Tag,
    TimeSpec, MAGIC, MAX_FRAME, MAX_PATH_STEPS, VERSION,
};

/// Live heap bytes above which the process aborts: a few 16 MiB frames' worth. Every target
/// handles one input at a time, so anything near this is an unbounded allocation.
pub const LIVE_LIMIT: usize = 256 << 20;

/// Counts live heap bytes and refuses (so the process aborts) past [`LIVE_LIMIT`].
pub struct Bounded;

static LIVE: AtomicUsize = AtomicUsize::new(0);

#[global_allocator]
static ALLOC: Bounded = Bounded;

// SAFETY: forwards every call to `System` unchanged; the counter only refuses allocations.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size() > LIVE_LIMIT {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let _ = std::io::stderr().write_all(b"fuzz: more than LIVE_LIMIT bytes live\n");
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Any frame, mostly well-formed hellos (the magic and version right).
pub fn frame(u: &mut Unstructured<'_>) -> Result<Frame> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Frame::Hello(Hello {
            magic: if u.ratio(7, 8)? { MAGIC } else { u.arbitrary()? },
            version: if u.ratio(7, 8)? { VERSION } else { u.arbitrary()? },
            scheme: u.arbitrary()?,
            max_frame: u.int_in_range(0..=MAX_FRAME as u32 + 1)?,
            features: u.arbitrary()?,
        }),
        1 => Frame::Call { tag: Tag(u.arbitrary()?), caller: caller(u)?, call: call(u)? },
        2 => Frame::Cancel { tag: Tag(u.arbitrary()?) },
        3 => Frame::Reply { tag: Tag(u.arbitrary()?), response: response(u)? },
        _ => Frame::Event { fd: Fd(u.arbitrary()?), flags: u.arbitrary()? },
    })
}

/// Any caller.
pub fn caller(u: &mut Unstructured<'_>) -> Result<Caller> {
    Ok(Caller { pid: u.arbitrary()?, uid: u.arbitrary()?, gid: u.arbitrary()? })
}

/// Any call (all 26 variants).
pub fn call(u: &mut Unstructured<'_>) -> Result<Call> {
    let fd = Fd(u.arbitrary()?);
    Ok(match u.int_in_range(0..=25u8)? {
        0 => Call::Open { path: u.arbitrary()?, flags: u.arbitrary()? },
        1 => Call::Rmdir { path: u.arbitrary()? },
        2 => Call::Unlink { path: u.arbitrary()? },
        3 => Call::Dup { fd, buf: bytes(u)? },
        4 => Call::Read { fd, len: u.arbitrary()? },
        5 => Call::Write { fd, data: bytes(u)? },
        6 => Call::Lseek { fd, offset: u.arbitrary()?, whence: u.arbitrary()? },
        7 => Call::Fchmod { fd, mode: u.arbitrary()? },
        8 => Call::Fchown { fd, uid: u.arbitrary()?, gid: u.arbitrary()? },
        9 => Call::Fcntl { fd, cmd: u.arbitrary()?, arg: u.arbitrary()? },
        10 => Call::Fevent { fd, flags: u.arbitrary()? },
        11 => Call::Flink { fd, path: u.arbitrary()? },
        12 => Call::Fpath { fd, len: u.arbitrary()? },
        13 => Call::Frename { fd, path: u.arbitrary()? },
        14 => Call::Fstat { fd },
        15 => Call::Fstatvfs { fd },
        16 => Call::Fsync { fd },
        17 => Call::Ftruncate { fd, len: u.arbitrary()? },
        18 => Call::Futimens { fd, times: times(u)? },
        19 => Call::Close { fd },
        20 => Call::Getdents { fd, len: u.arbitrary()?, opaque: u.arbitrary()? },
        21 => Call::ReadRegion { fd, len: u.arbitrary()?, at: u.arbitrary()? },
        22 => Call::WriteRegion { fd, len: u.arbitrary()?, at: u.arbitrary()? },
        23 => Call::StatPath { path: u.arbitrary()? },
        24 => Call::OpenStat { path: u.arbitrary()?, flags: u.arbitrary()? },
        _ => {
            let count = u.int_in_range(0..=MAX_PATH_STEPS + 1)?;
            let steps = (0..count).map(|_| path_step(u)).collect::<Result<_>>()?;
            Call::OnPath { path: u.arbitrary()?, flags: u.arbitrary()?, steps }
        }
    })
}

/// Any step of an `OnPath` call.
fn path_step(u: &mut Unstructured<'_>) -> Result<PathStep> {
    Ok(match u.int_in_range(0..=9u8)? {
        0 => PathStep::Read { len: u.arbitrary()? },
        1 => PathStep::Write { data: bytes(u)? },
        2 => PathStep::Fchmod { mode: u.arbitrary()? },
        3 => PathStep::Fchown { uid: u.arbitrary()?, gid: u.arbitrary()? },
        4 => PathStep::Flink { path: u.arbitrary()? },
        5 => PathStep::Frename { path: u.arbitrary()? },
        6 => PathStep::Fstat,
        7 => PathStep::Fstatvfs,
        8 => PathStep::Ftruncate { len: u.arbitrary()? },
        _ => PathStep::Futimens { times: times(u)? },
    })
}

/// Up to four timespecs.
fn times(u: &mut Unstructured<'_>) -> Result<Vec<TimeSpec>> {
    let times = u.arbitrary_iter::<(i64, i32)>()?.take(4);
    times.map(|t| t.map(|(tv_sec, tv_nsec)| TimeSpec { tv_sec, tv_nsec })).collect()
}

/// Any response: an errno or any reply.
pub fn response(u: &mut Unstructured<'_>) -> Result<Response> {
    if u.ratio(1, 4)? {
        return Ok(Err(Errno(u.arbitrary()?)));
    }
    Ok(Ok(reply(u)?))
}

/// Any reply (all 5 variants).
pub fn reply(u: &mut Unstructured<'_>) -> Result<Reply> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Reply::Value(u.arbitrary()?),
        1 => Reply::Data(bytes(u)?),
        2 => Reply::Stat(stat(u)?),
        3 => Reply::Opened { fd: Fd(u.arbitrary()?), stat: stat(u)? },
        _ => Reply::StatVfs(StatVfs {
            f_bsize: u.arbitrary()?,
            f_blocks: u.arbitrary()?,
            f_bfree: u.arbitrary()?,
            f_bavail: u.arbitrary()?,
        }),
    })
}

fn stat(u: &mut Unstructured<'_>) -> Result<Stat> {
    Ok(Stat {
        st_dev: u.arbitrary()?,
        st_ino: u.arbitrary()?,
        st_mode: u.arbitrary()?,
        st_nlink: u.arbitrary()?,
        st_uid: u.arbitrary()?,
        st_gid: u.arbitrary()?,
        st_size: u.arbitrary()?,
        st_blksize: u.arbitrary()?,
        st_blocks: u.arbitrary()?,
        st_mtime: u.arbitrary()?,
        st_mtime_nsec: u.arbitrary()?,
        st_atime: u.arbitrary()?,
        st_atime_nsec: u.arbitrary()?,
        st_ctime: u.arbitrary()?,
        st_ctime_nsec: u.arbitrary()?,
    })
}

/// A byte string of up to 512 bytes.
pub fn bytes(u: &mut Unstructured<'_>) -> Result<Bytes> {
    let len = u.int_in_range(0..=512usize)?;
    Ok(Bytes::from(u.bytes(len.min(u.len()))?))
}
