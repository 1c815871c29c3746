//! The FUSE op table: one `fuser::Filesystem` method per FUSE operation, each a short sequence
//! of scheme calls answered from completions (see `shared.rs`). In the order of the code:
//!
//! | FUSE op      | scheme calls                                   | reply                          |
//! |--------------|------------------------------------------------|--------------------------------|
//! | init         | -                                              | PARALLEL_DIROPS, ATOMIC_O_TRUNC, largest max_write |
//! | lookup       | open(O_STAT\|O_NOFOLLOW), fstat, close          | entry (ENOENT: negative)       |
//! | forget       | -                                              | drops the inode's lookups      |
//! | getattr      | fstat(fh) or open(O_STAT), fstat, close         | attr                           |
//! | setattr      | (open), fchmod, fchown, ftruncate, futimens, fstat, (close) | attr              |
//! | readlink     | open(O_SYMLINK\|O_NOFOLLOW), read, close        | target                         |
//! | mkdir        | open(O_CREAT\|O_DIRECTORY\|O_EXCL\|mode), fstat, close | entry                  |
//! | unlink/rmdir | unlink / rmdir                                 | empty                          |
//! | symlink      | open(O_CREAT\|O_EXCL\|O_SYMLINK\|O_WRONLY), write, fstat, close | entry         |
//! | rename       | open(O_STAT\|O_NOFOLLOW), frename, close        | empty                          |
//! | link         | open(O_STAT\|O_NOFOLLOW), flink, close, then a lookup | entry                   |
//! | open         | open(flags)                                    | fh; streams: DIRECT_IO, NONSEEKABLE, STREAM |
//! | read/write   | (fcntl(F_SETFL) if O_NONBLOCK changed), (lseek if the offset moved), read/write | data / count |
//! | flush        | -                                              | ok (close happens at release)  |
//! | release      | close                                          | ok                             |
//! | fsync        | fsync                                          | ok                             |
//! | opendir      | stat, open(O_DIRECTORY)                        | fh                             |
//! | readdir      | getdents, or lseek + read of the legacy listing | entries                       |
//! | releasedir   | close                                          | ok                             |
//! | statfs       | open(""), fstatvfs, close                      | statfs (zeros if unsupported)  |
//! | create       | open(flags\|O_CREAT\|mode), fstat              | entry + fh                     |
//! | poll         | fevent(requested)                              | ready events; daemon events wake the kernel |
//!
//! Calls that can block in the daemon (open, create, read, write, poll) can be interrupted.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno as LinuxErrno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, PollEvents, PollFlags, PollNotifier, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyPoll,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use scheme_protocol::{Call, Caller, PathStep, Stat, TimeSpec};
use syscall::flag::{
    EVENT_READ, EVENT_WRITE, F_SETFL, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_NONBLOCK,
    O_RDONLY, O_STAT, O_SYMLINK, O_WRONLY, SEEK_SET,
};

use super::attr::{self, synthetic_dir};
use super::dir;
use super::flags;
use super::handles::Handle;
use super::inodes::{join, Kind, NAMESPACE};
use super::limits::check_path;
use super::payload::ReadData;
use super::readahead::Readahead;
use super::shared::{data_of, fd_of, stat_of, value_of, FsResult, Gather, Shared};
use crate::client::CallResult;
use scheme_protocol::Reply;

/// For what the bridge makes up itself (the namespace root, `.dup`): never cached.
const TTL: Duration = Duration::ZERO;
pub(super) const GENERATION: Generation = Generation(0);
/// `UTIME_OMIT` in a futimens time: leave this time alone.
const UTIME_OMIT: i32 = 0x3fff_fffe;
/// The FUSE handle of a listing the bridge makes up (the namespace root, non-directory roots).
pub(super) const SYNTHETIC_FH: u64 = 0;

/// The FUSE filesystem that forwards to scheme daemons.
#[derive(Debug)]
pub struct SchemeFs {
    pub(crate) shared: Arc<Shared>,
    pub(crate) max_write: u32,
    /// Set at the first open, before any read (`readahead.rs`).
    pub(crate) readahead: Arc<Readahead>,
}

fn caller(req: &Request) -> Caller {
    Caller { pid: u64::from(req.pid()), uid: req.uid(), gid: req.gid() }
}

fn name_str(name: &OsStr) -> FsResult<&str> {
    name.to_str().ok_or(LinuxErrno::EINVAL)
}

impl SchemeFs {
    /// The scheme and path of `name` in directory `parent`.
    pub(super) fn child(&self, parent: INodeNo, name: &OsStr) -> FsResult<(usize, String)> {
        let name = name_str(name)?;
        let node = self.shared.node(parent.0)?;
        if node.scheme == NAMESPACE {
            let index = self.shared.schemes.iter().position(|s| s.name == name);
            return index.map(|i| (i, String::new())).ok_or(LinuxErrno::ENOENT);
        }
        let path = join(&node.path, name);
        check_path(name, &path)?;
        Ok((node.scheme, path))
    }

    /// Like [`SchemeFs::child`], for a name that must not be a scheme's root (`root_errno`
    /// otherwise: EEXIST for create, EBUSY for unlink and rmdir).
    pub(super) fn named_child(
        &self,
        parent: INodeNo,
        name: &OsStr,
        root_errno: LinuxErrno,
    ) -> FsResult<(usize, String)> {
        match self.child(parent, name)? {
            (_, path) if path.is_empty() => Err(root_errno),
            child => Ok(child),
        }
    }

    /// Replies with the entry for `path`, counting a kernel lookup.
    pub(super) fn reply_entry(
        shared: &Shared,
        scheme: usize,
        path: &str,
        stat: &Stat,
        reply: ReplyEntry,
    ) {
        let (attr, kind) = Self::count_lookup(shared, scheme, path, stat);
        reply.entry_with_ttls(&shared.ttl.attr_for(kind), &shared.ttl.entry, &attr, GENERATION);
    }

    /// Counts a kernel lookup of `path` (statted as `stat`): its attributes, with its inode.
    pub(super) fn count_lookup(
        shared: &Shared,
        scheme: usize,
        path: &str,
        stat: &Stat,
    ) -> (FileAttr, Kind) {
        let kind = if path.is_empty() { Kind::Dir } else { attr::kind_of(stat) };
        let ino = shared.inodes().lookup(scheme, path, kind, stat.st_ino);
        let attr = if path.is_empty() && kind != attr::kind_of(stat) {
            synthetic_dir(ino, shared.owner)
        } else {
            attr::from_stat(ino, stat, shared.owner)
        };
        (attr, kind)
    }

    /// Stats `path` and answers an entry reply.
    fn lookup_path(&self, caller: Caller, scheme: usize, path: String, reply: ReplyEntry) {
        let shared = Arc::clone(&self.shared);
        self.shared.stat_path_stable(scheme, caller, path.clone(), move |stat| match stat {
            Ok(stat) => Self::reply_entry(&shared, scheme, &path, &stat, reply),
            Err(_) if path.is_empty() => {
                // A scheme root that cannot be statted is still a directory of the mount.
                let ino = shared.inodes().lookup(scheme, "", Kind::Dir, 0);
                reply.entry(&TTL, &synthetic_dir(ino, shared.owner), GENERATION);
            }
            Err(err) => reply.error(err),
        });
    }

    /// Answers an attr reply for node `ino` from a stat result.
    fn reply_attr(shared: &Shared, ino: u64, stat: FsResult<Stat>, reply: ReplyAttr) {
        let node = shared.node(ino);
        let is_root = node.as_ref().map(|n| n.path.is_empty()).unwrap_or(false);
        if let (Ok(node), Ok(stat)) = (&node, &stat) {
            if !node.is(stat.st_ino) {
                // The path names another file now (this one was renamed over or unlinked).
                return reply.error(LinuxErrno::ESTALE);
            }
        }
        match stat {
            Ok(stat) if !is_root || attr::kind_of(&stat) == Kind::Dir => {
                let ttl = shared.ttl.attr_for(attr::kind_of(&stat));
                reply.attr(&ttl, &attr::from_stat(ino, &stat, shared.owner));
            }
            _ if is_root => reply.attr(&TTL, &synthetic_dir(ino, shared.owner)),
            Ok(_) => reply.error(LinuxErrno::EIO),
            Err(err) => reply.error(err),
        }
    }

    /// Opens the daemon handle for a FUSE open or opendir and registers it.
    fn open_handle(&self, req: &Request, ino: INodeNo, redox_flags: usize, reply: ReplyOpen) {
        let node = match self.shared.node(ino.0) {
            Ok(node) => node,
            Err(err) => return reply.error(err),
        };
        let slot = match self.shared.counters.handle(req.uid()) {
            Ok(slot) => slot,
            Err(err) => return reply.error(err),
        };
        if node.unlinked {
            // Renamed over or unlinked: its path names another file now. ESTALE makes the
            // kernel look the name up again.
            return reply.error(LinuxErrno::ESTALE);
        }
        let shared = Arc::clone(&self.shared);
        let open = Call::Open { path: node.path.clone(), flags: redox_flags as u64 };
        let stream = node.kind == Kind::Stream;
        let (caller, epoch) = (caller(req), self.shared.inodes().epoch());
        self.shared.call_interruptible(req.unique().0, node.scheme, caller, open, move |r| {
            let fd = match fd_of(r) {
                Ok(fd) => fd,
                Err(err) => return reply.error(err),
            };
            let register = move |shared: &Shared, reply: ReplyOpen| {
                let handle = Handle::new((node.scheme, fd), stream, redox_flags, slot);
                let fh = shared.handles.insert(handle.of_node(ino.0));
                reply.opened(FileHandle(fh), open_flags(stream, shared));
            };
            if shared.inodes().epoch() == epoch {
                return register(&shared, reply);
            }
            // A rename or unlink crossed the open: make sure the path still named this node.
            let inner = Arc::clone(&shared);
            shared.fstat(node.scheme, caller, fd, move |stat| match stat {
                Ok(stat) if !node.is(stat.st_ino) => {
                    inner.close_quietly(node.scheme, caller, fd);
                    reply.error(LinuxErrno::ESTALE);
                }
                _ => register(&inner, reply),
            });
        });
    }

    pub(super) fn handle(&self, fh: FileHandle) -> FsResult<Arc<Handle>> {
        self.shared.handles.get(fh.0).ok_or(LinuxErrno::EBADF)
    }

    /// Sends `F_SETFL` first if the caller's `O_NONBLOCK` differs from the daemon handle's.
    fn sync_nonblock(&self, caller: Caller, handle: &Handle, linux_flags: i32) {
        let wanted = flags::is_nonblocking(linux_flags);
        let mut io = handle.io();
        if (io.flags & O_NONBLOCK != 0) == wanted {
            return;
        }
        io.flags = if wanted { io.flags | O_NONBLOCK } else { io.flags & !O_NONBLOCK };
        let call = Call::Fcntl { fd: handle.fd, cmd: F_SETFL as u64, arg: io.flags as u64 };
        self.shared.call_ahead(handle.scheme, caller, call, |_| {});
    }

    /// Seeks the daemon handle to `offset` unless it is a stream or already there; the caller
    /// then sends an I/O of `len` bytes, after which the position is assumed to be `offset + len`.
    fn position(&self, caller: Caller, handle: &Handle, offset: u64, len: u64) {
        if handle.stream {
            return;
        }
        let mut io = handle.io();
        if io.pos != Some(offset) && !handle.append {
            let call =
                Call::Lseek { fd: handle.fd, offset: offset as i64, whence: SEEK_SET as u64 };
            self.shared.call_ahead(handle.scheme, caller, call, |_| {});
        }
        io.pos = Some(offset + len);
    }

    /// Sends a read or write of `len` bytes at `offset`: first `F_SETFL` if the caller's
    /// O_NONBLOCK changed, and a seek if the offset is not where the daemon is; then `call`.
    /// `done` gets what `extract` makes of the answer; `count` says how many bytes it moved.
    #[allow(clippy::too_many_arguments)]
    fn transfer<T: Send + 'static>(
        &self,
        req: &Request,
        handle: Arc<Handle>,
        offset: u64,
        len: usize,
        linux_flags: i32,
        call: Call,
        extract: impl FnOnce(CallResult<Reply>) -> FsResult<T> + Send + 'static,
        count: fn(&T) -> usize,
        done: impl FnOnce(FsResult<T>) + Send + 'static,
    ) {
        let caller = caller(req);
        self.sync_nonblock(caller, &handle, linux_flags);
        self.position(caller, &handle, offset, len as u64);
        let scheme = handle.scheme;
        self.shared.call_interruptible(req.unique().0, scheme, caller, call, move |answer| {
            let result = extract(answer);
            match &result {
                Ok(value) => Self::settle(&handle, len, count(value)),
                Err(_) => handle.io().pos = None,
            }
            done(result);
        });
    }

    /// After a short read or write the position is whatever the daemon made it.
    fn settle(handle: &Handle, expected: usize, got: usize) {
        if got != expected {
            handle.io().pos = None;
        }
    }
}

/// FUSE open flags: streams bypass the page cache. A file's cached pages survive its opens
/// while attributes are cached (`-o attr_timeout`, 1 s for ramfs): the kernel drops them when
/// a refresh of the attributes shows the file changed (`FUSE_AUTO_INVAL_DATA`), and writes
/// through the mount keep them current. With attributes uncached every open drops them.
fn open_flags(stream: bool, shared: &Shared) -> FopenFlags {
    if stream {
        FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NONSEEKABLE | FopenFlags::FOPEN_STREAM
    } else if !shared.ttl.attr.is_zero() {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

fn timespec(time: Option<TimeOrNow>) -> TimeSpec {
    let at = match time {
        None => return TimeSpec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        Some(TimeOrNow::Now) => SystemTime::now(),
        Some(TimeOrNow::SpecificTime(at)) => at,
    };
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    TimeSpec { tv_sec: since.as_secs() as i64, tv_nsec: since.subsec_nanos() as i32 }
}

impl Filesystem for SchemeFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut wanted = InitFlags::FUSE_PARALLEL_DIROPS | InitFlags::FUSE_ATOMIC_O_TRUNC;
        if !self.shared.ttl.entry.is_zero() && !self.shared.ttl.attr.is_zero() {
            // Attributes that are cached can come with the listing (`ls -l` then makes no
            // lookups); uncached ones would be asked for again anyway.
            wanted |= InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO;
        }
        if !self.shared.ttl.attr.is_zero() {
            // Cached file data is dropped when a refresh shows the file changed (open_flags).
            wanted |= InitFlags::FUSE_AUTO_INVAL_DATA;
        }
        if let Err(missing) = config.add_capabilities(wanted) {
            log::warn!("kernel lacks {missing:?}");
        }
        let granted = match config.set_max_write(self.max_write) {
            Ok(_) => self.max_write,
            Err(nearest) => nearest,
        };
        let _ = config.set_max_write(granted);
        log::debug!("max_write {granted}");
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(text) = name.to_str() else { return reply.error(LinuxErrno::EINVAL) };
        let Err(reply) = self.lookup_special(req, parent, text, reply) else { return };
        match self.child(parent, name) {
            Ok((scheme, path)) => self.lookup_path(caller(req), scheme, path, reply),
            Err(err) => reply.error(err),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.shared.inodes().forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let node = match self.shared.node(ino.0) {
            Ok(node) => node,
            Err(err) => return reply.error(err),
        };
        if node.scheme == NAMESPACE {
            return reply.attr(&TTL, &synthetic_dir(ino.0, self.shared.owner));
        }
        let Err(reply) = self.getattr_special(&node, ino.0, reply) else { return };
        let shared = Arc::clone(&self.shared);
        let done = move |stat| Self::reply_attr(&shared, ino.0, stat, reply);
        let handle = fh.and_then(|fh| self.shared.handles.get(fh.0));
        // A file open through this node answers with one fstat instead of a stat by path
        // (open, fstat, close), and for the file the node is even if its name was replaced.
        let Some(handle) = handle.or_else(|| self.shared.handles.any_file_of_node(ino.0)) else {
            return self.shared.stat_path_stable(node.scheme, caller(req), node.path, done);
        };
        let (shared, caller) = (Arc::clone(&self.shared), caller(req));
        self.shared.fstat(handle.scheme, caller, handle.fd, move |stat| match stat {
            Ok(stat) => done(Ok(stat)),
            // Released meanwhile, or a handle the daemon cannot fstat: ask by path after all.
            Err(_) => shared.stat_path_stable(node.scheme, caller, node.path, done),
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let node = match self.shared.node(ino.0) {
            Ok(node) => node,
            Err(err) => return reply.error(err),
        };
        let mut steps = Vec::new();
        if let Some(mode) = mode {
            steps.push(PathStep::Fchmod { mode: (mode & 0o7777) as u16 });
        }
        if uid.is_some() || gid.is_some() {
            let (uid, gid) = (uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX));
            steps.push(PathStep::Fchown { uid, gid });
        }
        if let Some(len) = size {
            steps.push(PathStep::Ftruncate { len });
        }
        if atime.is_some() || mtime.is_some() {
            steps.push(PathStep::Futimens { times: vec![timespec(atime), timespec(mtime)] });
        }
        let (shared, caller) = (Arc::clone(&self.shared), caller(req));
        if let Some(handle) = fh.and_then(|fh| self.shared.handles.get(fh.0)) {
            // The open handle's calls, pipelined; the fstat last.
            let (scheme, fd) = (handle.scheme, handle.fd);
            let inner = Arc::clone(&shared);
            let gather = Gather::new(steps.len() + 1, move |stat| {
                Self::reply_attr(&inner, ino.0, stat, reply)
            });
            for step in steps {
                let gather = Arc::clone(&gather);
                shared.call_ahead(scheme, caller, step.on(fd), move |r| {
                    gather.arrive(value_of(r).map(|_| None))
                });
            }
            return shared.fstat(scheme, caller, fd, move |stat| gather.arrive(stat.map(Some)));
        }
        // By path: open, the steps, the fstat and the close (one `OnPath`).
        steps.push(PathStep::Fstat);
        let access = if size.is_some() { O_WRONLY } else { O_STAT | O_NOFOLLOW };
        let inner = Arc::clone(&shared);
        shared.on_path(node.scheme, caller, &node.path, access, steps, move |r| {
            Self::reply_attr(&inner, ino.0, stat_of(r), reply)
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let node = match self.shared.node(ino.0) {
            Ok(node) => node,
            Err(err) => return reply.error(err),
        };
        let (scheme, caller) = (node.scheme, caller(req));
        let flags = O_SYMLINK | O_NOFOLLOW | O_RDONLY;
        let steps = vec![PathStep::Read { len: 4096 }];
        self.shared.on_path(scheme, caller, &node.path, flags, steps, move |r| match data_of(r) {
            Ok(target) => reply.data(&target),
            Err(err) => reply.error(err),
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (scheme, path) = match self.child(parent, name) {
            Ok(child) => child,
            Err(err) => return reply.error(err),
        };
        let flags = flags::with_mode(O_CREAT | O_DIRECTORY | O_EXCL, mode, umask);
        self.make_dir(req.unique().0, (scheme, caller(req)), path, flags, reply);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, parent, name, false, reply);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, parent, name, true, reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let (scheme, path) = match self.child(parent, link_name) {
            Ok(child) => child,
            Err(err) => return reply.error(err),
        };
        let Some(target) = target.to_str() else { return reply.error(LinuxErrno::EINVAL) };
        let flags = O_CREAT | O_EXCL | O_SYMLINK | O_WRONLY | 0o777;
        self.create_node(caller(req), scheme, path, flags, target.as_bytes().to_vec(), reply);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        // RENAME_NOREPLACE (mv -n, and coreutils' first try) is checked here; Redox's frename
        // has no flags. RENAME_EXCHANGE and RENAME_WHITEOUT cannot be expressed.
        let no_replace = flags == fuser::RenameFlags::RENAME_NOREPLACE;
        if !flags.is_empty() && !no_replace {
            return reply.error(LinuxErrno::EINVAL);
        }
        let (from, to) = match (self.child(parent, name), self.child(newparent, newname)) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(err), _) | (_, Err(err)) => return reply.error(err),
        };
        if from.0 != to.0 || from.1.is_empty() || to.1.is_empty() {
            return reply.error(LinuxErrno::EXDEV);
        }
        let (caller, scheme) = (caller(req), from.0);
        let (from_path, to_path) = (from.1, to.1);
        if no_replace {
            let this = self.clone_ref();
            return self.shared.stat_path(
                scheme,
                caller,
                &to_path.clone(),
                move |stat| match stat {
                    Ok(_) => reply.error(LinuxErrno::EEXIST),
                    Err(_) => this.rename_path(caller, scheme, from_path, to_path, reply),
                },
            );
        }
        self.rename_path(caller, scheme, from_path, to_path, reply);
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.link_node(req, ino, newparent, newname, reply);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.readahead.apply();
        let reply = match self.shared.node(ino.0) {
            Ok(node) => match self.open_special(req, &node, reply) {
                Ok(()) => return,
                Err(reply) => reply,
            },
            Err(err) => return reply.error(err),
        };
        self.open_handle(req, ino, flags::to_redox(flags.0), reply);
    }

    fn ioctl(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        self.dup_ioctl(req, fh, cmd, in_data, out_size, reply);
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let handle = match self.handle(fh) {
            Ok(handle) => handle,
            Err(err) => return reply.error(err),
        };
        let len = size as usize;
        let (call, extract) = self.shared.read_call(&handle, len);
        self.transfer(req, handle, offset, len, flags.0, call, extract, ReadData::len, move |r| {
            match r {
                Ok(data) => data.reply(reply),
                Err(err) => reply.error(err),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let handle = match self.handle(fh) {
            Ok(handle) => handle,
            Err(err) => return reply.error(err),
        };
        let (call, extract) = self.shared.write_call(&handle, data);
        let count = |written: &u64| *written as usize;
        self.transfer(req, handle, offset, data.len(), flags.0, call, extract, count, move |r| {
            match r {
                Ok(written) => reply.written(written as u32),
                Err(err) => reply.error(err),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(handle) = self.shared.handles.remove(fh.0) {
            self.shared.close_released(handle.scheme, caller(req), handle.fd);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if fh.0 == SYNTHETIC_FH {
            return reply.ok();
        }
        let handle = match self.handle(fh) {
            Ok(handle) => handle,
            Err(err) => return reply.error(err),
        };
        self.shared.call(handle.scheme, caller(req), Call::Fsync { fd: handle.fd }, move |r| {
            match value_of(r) {
                Ok(_) => reply.ok(),
                Err(err) => reply.error(err),
            }
        });
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.fsync(req, ino, fh, datasync, reply);
    }

    // Redox schemes have no extended attributes and decide access when a file is opened, as
    // on Redox. ENOSYS from the bridge itself (not from a daemon) makes the kernel stop asking.

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.error(LinuxErrno::ENOSYS);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(LinuxErrno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(LinuxErrno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(LinuxErrno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(LinuxErrno::ENOSYS);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let node = match self.shared.node(ino.0) {
            Ok(node) => node,
            Err(err) => return reply.error(err),
        };
        if node.scheme == NAMESPACE {
            return reply.opened(FileHandle(SYNTHETIC_FH), FopenFlags::empty());
        }
        // Only a directory is listed: reading the root of `zero:` would never end.
        let slot = match self.shared.counters.handle(req.uid()) {
            Ok(slot) => slot,
            Err(err) => return reply.error(err),
        };
        let shared = Arc::clone(&self.shared);
        let (caller, scheme, path) = (caller(req), node.scheme, node.path.clone());
        self.shared.stat_path(scheme, caller, &node.path, move |stat| match stat {
            Ok(stat) if attr::kind_of(&stat) == Kind::Dir => {
                let open = Call::Open { path, flags: (O_DIRECTORY | O_RDONLY) as u64 };
                let inner = Arc::clone(&shared);
                shared.call(scheme, caller, open, move |r| match fd_of(r) {
                    Ok(fd) => {
                        let handle = Handle::new((scheme, fd), false, O_RDONLY, slot);
                        let fh = inner.handles.insert(handle);
                        reply.opened(FileHandle(fh), FopenFlags::empty());
                    }
                    Err(err) => reply.error(err),
                });
            }
            _ if path.is_empty() => reply.opened(FileHandle(SYNTHETIC_FH), FopenFlags::empty()),
            Ok(_) => reply.error(LinuxErrno::ENOTDIR),
            Err(err) => reply.error(err),
        });
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if offset < dir::AFTER_DOTDOT {
            let dots = [(".", dir::AFTER_DOT), ("..", dir::AFTER_DOTDOT)];
            for (name, cookie) in dots.into_iter().skip(offset as usize) {
                if reply.add(ino, cookie, fuser::FileType::Directory, name) {
                    return reply.ok();
                }
            }
        }
        if fh.0 == SYNTHETIC_FH {
            return self.list_namespace(ino, offset, reply);
        }
        let handle = match self.handle(fh) {
            Ok(handle) => handle,
            Err(err) => return reply.error(err),
        };
        let cursor = dir::cursor(offset).unwrap_or(0);
        self.list(caller(req), handle, cursor, reply);
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: fuser::ReplyDirectoryPlus,
    ) {
        self.list_plus(caller(req), ino, fh, offset, reply);
    }

    fn releasedir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.release(req, ino, fh, flags, None, false, reply);
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let scheme = match self.shared.node(ino.0) {
            Ok(node) if node.scheme != NAMESPACE => node.scheme,
            _ => return reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096),
        };
        let steps = vec![PathStep::Fstatvfs];
        self.shared.on_path(scheme, caller(req), "", O_STAT, steps, move |r| match r {
            Ok(scheme_protocol::Reply::StatVfs(v)) => {
                reply.statfs(v.f_blocks, v.f_bfree, v.f_bavail, 0, 0, v.f_bsize, 255, v.f_bsize)
            }
            _ => reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096),
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.readahead.apply();
        let (scheme, path) = match self.named_child(parent, name, LinuxErrno::EEXIST) {
            Ok(child) => child,
            Err(err) => return reply.error(err),
        };
        let slot = match self.shared.counters.handle(req.uid()) {
            Ok(slot) => slot,
            Err(err) => return reply.error(err),
        };
        let redox_flags = flags::with_mode(flags::to_redox(flags) | O_CREAT, mode, umask);
        let (shared, caller) = (Arc::clone(&self.shared), caller(req));
        let unique = req.unique().0;
        let name = path.clone();
        self.shared.open_stat(unique, (scheme, caller), name, redox_flags, move |opened| {
            let (fd, stat) = match opened {
                Ok(opened) => opened,
                Err(err) => return reply.error(err),
            };
            let kind = attr::kind_of(&stat);
            let ino = shared.inodes().lookup(scheme, &path, kind, stat.st_ino);
            let stream = kind == Kind::Stream;
            let handle = Handle::new((scheme, fd), stream, redox_flags & !0xFFFF, slot);
            let fh = shared.handles.insert(handle.of_node(ino));
            let attr = attr::from_stat(ino, &stat, shared.owner);
            let ttl = shared.ttl.attr_for(kind).min(shared.ttl.entry);
            reply.created(&ttl, &attr, GENERATION, FileHandle(fh), open_flags(stream, &shared));
        });
    }

    fn poll(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        ph: PollNotifier,
        events: PollEvents,
        flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let handle = match self.handle(fh) {
            Ok(handle) => handle,
            Err(err) => return reply.error(err),
        };
        if flags.contains(PollFlags::FUSE_POLL_SCHEDULE_NOTIFY) {
            handle.io().poll = Some(ph);
        }
        let mut wanted = 0;
        if events.intersects(PollEvents::POLLIN | PollEvents::POLLRDNORM) {
            wanted |= EVENT_READ.bits();
        }
        if events.intersects(PollEvents::POLLOUT | PollEvents::POLLWRNORM) {
            wanted |= EVENT_WRITE.bits();
        }
        let call = Call::Fevent { fd: handle.fd, flags: wanted as u64 };
        self.shared.call_interruptible(
            req.unique().0,
            handle.scheme,
            caller(req),
            call,
            move |r| match value_of(r) {
                Ok(ready) => reply.poll(revents(ready)),
                Err(err) => reply.error(err),
            },
        );
    }
}

/// FUSE poll events for Redox ready flags.
pub(crate) fn revents(ready: u64) -> PollEvents {
    let mut out = PollEvents::empty();
    if ready & EVENT_READ.bits() as u64 != 0 {
        out |= PollEvents::POLLIN | PollEvents::POLLRDNORM;
    }
    if ready & EVENT_WRITE.bits() as u64 != 0 {
        out |= PollEvents::POLLOUT | PollEvents::POLLWRNORM;
    }
    out
}
