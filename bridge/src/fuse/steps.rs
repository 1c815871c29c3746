//! The longer sequences behind some FUSE ops: creating a node (mkdir, symlink), removing one,
//! and listing a directory page by page (getdents, or the legacy newline listing).

use std::ffi::OsStr;
use std::sync::Arc;

use fuser::{
    Errno as LinuxErrno, FileType, INodeNo, ReplyDirectory, ReplyEmpty, ReplyEntry, Request,
};
use scheme_protocol::{Bytes, Call, Caller, PathStep, Stat};
use syscall::flag::{O_NOFOLLOW, O_STAT, SEEK_SET};

use super::attr;
use super::dir::{self, Entry};
use super::handles::Handle;
use super::inodes::{Kind, NAMESPACE};
use super::shared::{data_of, stat_of, value_of, FsResult, Shared};
use super::table::SchemeFs;

impl SchemeFs {
    /// mkdir: creates `path` with `flags` (`O_CREAT | O_DIRECTORY | O_EXCL` and the mode) and
    /// answers the entry from its fstat (one `OpenStat` where the daemon runs compounds); FUSE
    /// request `unique` can interrupt it.
    pub(crate) fn make_dir(
        &self,
        unique: u64,
        (scheme, caller): (usize, Caller),
        path: String,
        flags: usize,
        reply: ReplyEntry,
    ) {
        let shared = Arc::clone(&self.shared);
        let name = path.clone();
        self.shared.open_stat(unique, (scheme, caller), name, flags, move |opened| {
            let stat = opened.map(|(fd, stat)| {
                shared.close_quietly(scheme, caller, fd);
                stat
            });
            answer_new_node(&shared, scheme, &path, true, stat, reply);
        });
    }

    /// symlink: creates `path` with `flags`, writes `content` into it, and answers the entry
    /// from an fstat of the new node (one `OnPath` where the daemon runs it).
    pub(crate) fn create_node(
        &self,
        caller: Caller,
        scheme: usize,
        path: String,
        flags: usize,
        content: Vec<u8>,
        reply: ReplyEntry,
    ) {
        let shared = Arc::clone(&self.shared);
        let steps = vec![PathStep::Write { data: Bytes::from(content) }, PathStep::Fstat];
        self.shared.on_path(scheme, caller, &path.clone(), flags, steps, move |stat| {
            answer_new_node(&shared, scheme, &path, false, stat_of(stat), reply);
        });
    }

    /// unlink or rmdir of `name` in `parent`.
    pub(crate) fn remove(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &std::ffi::OsStr,
        dir: bool,
        reply: ReplyEmpty,
    ) {
        let (scheme, path) = match self.named_child(parent, name, LinuxErrno::EBUSY) {
            Ok(child) => child,
            Err(err) => return reply.error(err),
        };
        let call = if dir {
            Call::Rmdir { path: path.clone() }
        } else {
            Call::Unlink { path: path.clone() }
        };
        let shared = Arc::clone(&self.shared);
        self.shared.call(scheme, caller_of(req), call, move |r| match value_of(r) {
            Ok(_) => {
                shared.inodes().unlinked(scheme, &path);
                reply.ok();
            }
            Err(err) => reply.error(err),
        });
    }

    /// The namespace root (or a scheme root that is no directory): the scheme names, or nothing.
    pub(crate) fn list_namespace(&self, ino: INodeNo, offset: u64, reply: ReplyDirectory) {
        fill(reply, self.namespace_entries(ino, offset));
    }

    /// The namespace root's entries (the schemes) from FUSE `offset`; none for another node.
    pub(crate) fn namespace_entries(&self, ino: INodeNo, offset: u64) -> Vec<Entry> {
        let listing = self.shared.node(ino.0).map(|n| n.scheme == NAMESPACE).unwrap_or(false);
        if !listing {
            return Vec::new();
        }
        let start = dir::cursor(offset).unwrap_or(0) as usize;
        let schemes = self.shared.schemes.iter().enumerate().skip(start);
        schemes
            .map(|(index, scheme)| Entry {
                inode: index as u64 + 2,
                name: scheme.name.clone(),
                kind: FileType::Directory,
                cookie: index as u64 + 1 + 3,
            })
            .collect()
    }

    /// One page of a daemon directory from `cursor`: getdents first, the legacy listing if the
    /// daemon has no getdents.
    pub(crate) fn list(
        &self,
        caller: Caller,
        handle: Arc<Handle>,
        cursor: u64,
        reply: ReplyDirectory,
    ) {
        self.entries(caller, handle, cursor, dir::CHUNK, move |entries| match entries {
            Ok(entries) => fill(reply, entries),
            Err(err) => reply.error(err),
        });
    }

    /// Up to `len` bytes of a daemon directory's records from `cursor`, parsed: getdents
    /// first, the legacy listing if the daemon has no getdents.
    pub(crate) fn entries(
        &self,
        caller: Caller,
        handle: Arc<Handle>,
        cursor: u64,
        len: usize,
        done: impl FnOnce(FsResult<Vec<Entry>>) + Send + 'static,
    ) {
        if handle.io().legacy_listing {
            return self.entries_legacy(caller, handle, cursor, done);
        }
        let call = Call::Getdents { fd: handle.fd, len: len as u64, opaque: cursor };
        let this = self.clone_ref();
        self.shared.call(handle.scheme, caller, call, move |r| match data_of(r) {
            Ok(records) => done(Ok(dir::parse_getdents(&records))),
            Err(err) if is_unsupported(err) => {
                handle.io().legacy_listing = true;
                this.entries_legacy(caller, handle, cursor, done);
            }
            Err(err) => done(Err(err)),
        });
    }

    fn entries_legacy(
        &self,
        caller: Caller,
        handle: Arc<Handle>,
        at: u64,
        done: impl FnOnce(FsResult<Vec<Entry>>) + Send + 'static,
    ) {
        let scheme = handle.scheme;
        let seek = Call::Lseek { fd: handle.fd, offset: at as i64, whence: SEEK_SET as u64 };
        self.shared.call_ahead(scheme, caller, seek, |_| {});
        let read = Call::Read { fd: handle.fd, len: dir::CHUNK as u64 };
        self.shared.call(scheme, caller, read, move |r| {
            done(data_of(r).map(|chunk| {
                let at_eof = chunk.len() < dir::CHUNK;
                dir::parse_legacy(&chunk, at, at_eof)
            }))
        });
    }

    pub(crate) fn clone_ref(&self) -> SchemeFs {
        SchemeFs {
            shared: Arc::clone(&self.shared),
            max_write: self.max_write,
            readahead: Arc::clone(&self.readahead),
        }
    }
}

/// Adds entries until the kernel's buffer is full.
fn fill(mut reply: ReplyDirectory, entries: Vec<Entry>) {
    for entry in entries {
        let ino = INodeNo(if entry.inode == 0 { u64::MAX } else { entry.inode });
        if reply.add(ino, entry.cookie, entry.kind, &entry.name) {
            break;
        }
    }
    reply.ok();
}

/// The daemon has no getdents (a legacy `handle` answers ENOSYS, mapped to EOPNOTSUPP).
fn is_unsupported(err: LinuxErrno) -> bool {
    err == LinuxErrno::EOPNOTSUPP || err == LinuxErrno::ENOSYS || err == LinuxErrno::EBADF
}

fn caller_of(req: &Request) -> Caller {
    Caller { pid: u64::from(req.pid()), uid: req.uid(), gid: req.gid() }
}

impl SchemeFs {
    /// frename of `from_path` to `to_path` (same scheme), keeping the inode table in step.
    pub(crate) fn rename_path(
        &self,
        caller: Caller,
        scheme: usize,
        from_path: String,
        to_path: String,
        reply: ReplyEmpty,
    ) {
        let shared = Arc::clone(&self.shared);
        let (flags, steps) =
            (O_STAT | O_NOFOLLOW, vec![PathStep::Frename { path: to_path.clone() }]);
        self.shared.on_path(scheme, caller, &from_path.clone(), flags, steps, move |r| {
            match value_of(r) {
                Ok(_) => {
                    shared.inodes().renamed(scheme, &from_path, &to_path);
                    reply.ok();
                }
                Err(err) => reply.error(err),
            }
        });
    }

    pub(crate) fn link_node(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (node, (scheme, path)) = match (self.shared.node(ino.0), self.child(newparent, newname))
        {
            (Ok(node), Ok(child)) => (node, child),
            (Err(err), _) | (_, Err(err)) => return reply.error(err),
        };
        if node.scheme != scheme {
            return reply.error(LinuxErrno::EXDEV);
        }
        let (shared, caller) = (Arc::clone(&self.shared), caller_of(req));
        // The fstat of the linked file's handle is the new name's: a hard link is the same file.
        let steps = vec![PathStep::Flink { path: path.clone() }, PathStep::Fstat];
        let flags = O_STAT | O_NOFOLLOW;
        self.shared.on_path(scheme, caller, &node.path, flags, steps, move |r| match stat_of(r) {
            Ok(stat) => SchemeFs::reply_entry(&shared, scheme, &path, &stat, reply),
            Err(err) => reply.error(err),
        });
    }
}

/// The entry of node `path` that was just made, from its fstat. A scheme that makes something
/// else of `O_DIRECTORY` (chan makes a listener) cannot make directories: EPERM.
fn answer_new_node(
    shared: &Shared,
    scheme: usize,
    path: &str,
    want_dir: bool,
    stat: FsResult<Stat>,
    reply: ReplyEntry,
) {
    match stat {
        Ok(stat) if want_dir && attr::kind_of(&stat) != Kind::Dir => reply.error(LinuxErrno::EPERM),
        Ok(stat) => {
            let ino = shared.inodes().lookup(scheme, path, attr::kind_of(&stat), stat.st_ino);
            let attr = attr::from_stat(ino, &stat, shared.owner);
            reply.entry(&std::time::Duration::ZERO, &attr, fuser::Generation(0));
        }
        Err(err) => reply.error(err),
    }
}
