//! `RamFs`: the open handles of `ramfs:` and its `SchemeMut` and `Getdents` impls, which only
//! look handles up and dispatch to `open`, `io`, `attr` and `names`. As in RedoxFS, a handle
//! holds a node (keeping it alive), its open flags and offset, and, like randd, its opener's
//! uid/gid for the calls that carry none (fchmod, fchown, ftruncate, futimens).

use std::collections::BTreeMap;

use scheme_bridge::Getdents;
use syscall::{
    Error, EventFlags, Result, SchemeMut, Stat, StatVfs, TimeSpec, EBADF, EVENT_READ, EVENT_WRITE,
    F_GETFL, F_SETFL, O_ACCMODE, O_RDONLY, O_STAT, O_WRONLY,
};

use super::attr::stat_of;
use super::path::Caller;
use super::tree::{NodeId, Tree};

/// One open handle.
#[derive(Debug)]
pub(super) struct Handle {
    pub node: NodeId,
    /// For a non-directory: the directory and name it was opened (or last renamed) under, which
    /// fpath and frename use (a file may have several links). Directories have exactly one
    /// place, kept in the tree, so this is `None` for them.
    pub place: Option<(NodeId, String)>,
    /// Redox open flags (low 16 bits: the creation mode), non-access bits replaced by F_SETFL.
    pub flags: usize,
    /// The read/write offset (legacy listing offset for directories).
    pub offset: u64,
    /// Who opened it.
    pub caller: Caller,
}

impl Handle {
    pub fn is_stat_only(&self) -> bool {
        self.flags & O_STAT != 0
    }

    pub fn can_read(&self) -> bool {
        !self.is_stat_only() && self.flags & O_RDONLY != 0
    }

    pub fn can_write(&self) -> bool {
        !self.is_stat_only() && self.flags & O_WRONLY != 0
    }
}

/// The `ramfs:` memory filesystem.
#[derive(Debug)]
pub struct RamFs {
    pub(super) tree: Tree,
    pub(super) handles: BTreeMap<usize, Handle>,
    next_id: usize,
}

impl RamFs {
    /// An empty filesystem (root directory `0o755`, owned by root) holding at most `max_bytes`
    /// bytes of file and symlink data (writes beyond fail with ENOSPC), or unlimited.
    pub fn new(max_bytes: Option<u64>) -> RamFs {
        RamFs { tree: Tree::new(max_bytes), handles: BTreeMap::new(), next_id: 1 }
    }

    pub(super) fn lookup(&self, id: usize) -> Result<&Handle> {
        self.handles.get(&id).ok_or(Error::new(EBADF))
    }

    pub(super) fn lookup_mut(&mut self, id: usize) -> Result<&mut Handle> {
        self.handles.get_mut(&id).ok_or(Error::new(EBADF))
    }

    /// Opens a handle on `node` (which it keeps alive); returns its id.
    pub(super) fn add_handle(
        &mut self,
        node: NodeId,
        place: Option<(NodeId, String)>,
        flags: usize,
        caller: Caller,
    ) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.tree.open(node);
        self.handles.insert(id, Handle { node, place, flags, offset: 0, caller });
        id
    }

    fn fcntl_flags(&mut self, id: usize, cmd: usize, arg: usize) -> Result<usize> {
        let handle = self.lookup_mut(id)?;
        match cmd {
            F_GETFL => Ok(handle.flags),
            F_SETFL => {
                let fixed = O_ACCMODE | O_STAT;
                handle.flags = (handle.flags & fixed) | (arg & !fixed);
                Ok(0)
            }
            _ => Ok(0),
        }
    }
}

impl SchemeMut for RamFs {
    fn open(&mut self, path: &str, flags: usize, uid: u32, gid: u32) -> Result<usize> {
        self.open_path(path, flags, Caller { uid, gid })
    }

    fn rmdir(&mut self, path: &str, uid: u32, gid: u32) -> Result<usize> {
        self.remove_dir(path, Caller { uid, gid }).map(|()| 0)
    }

    fn unlink(&mut self, path: &str, uid: u32, gid: u32) -> Result<usize> {
        self.remove_file(path, Caller { uid, gid }).map(|()| 0)
    }

    fn read(&mut self, id: usize, buf: &mut [u8]) -> Result<usize> {
        self.read_handle(id, buf)
    }

    fn write(&mut self, id: usize, buf: &[u8]) -> Result<usize> {
        self.write_handle(id, buf)
    }

    fn seek(&mut self, id: usize, pos: isize, whence: usize) -> Result<isize> {
        self.seek_handle(id, pos, whence)
    }

    fn fchmod(&mut self, id: usize, mode: u16) -> Result<usize> {
        self.chmod_handle(id, mode).map(|()| 0)
    }

    fn fchown(&mut self, id: usize, uid: u32, gid: u32) -> Result<usize> {
        self.chown_handle(id, uid, gid).map(|()| 0)
    }

    /// F_GETFL returns the open flags, F_SETFL replaces all but the access mode and O_STAT;
    /// other commands succeed and do nothing.
    fn fcntl(&mut self, id: usize, cmd: usize, arg: usize) -> Result<usize> {
        self.fcntl_flags(id, cmd, arg)
    }

    /// Memory never blocks: always readable and writable.
    fn fevent(&mut self, id: usize, _flags: EventFlags) -> Result<EventFlags> {
        self.lookup(id)?;
        Ok(EVENT_READ | EVENT_WRITE)
    }

    fn flink(&mut self, id: usize, path: &str, uid: u32, gid: u32) -> Result<usize> {
        self.link_handle(id, path, Caller { uid, gid }).map(|()| 0)
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8]) -> Result<usize> {
        let path = self.handle_path(id)?;
        let len = buf.len().min(path.len());
        buf[..len].copy_from_slice(&path.as_bytes()[..len]);
        Ok(len)
    }

    fn frename(&mut self, id: usize, path: &str, uid: u32, gid: u32) -> Result<usize> {
        self.rename_handle(id, path, Caller { uid, gid }).map(|()| 0)
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat) -> Result<usize> {
        let node = self.lookup(id)?.node;
        *stat = stat_of(self.tree.node(node), node);
        Ok(0)
    }

    fn fstatvfs(&mut self, id: usize, stat: &mut StatVfs) -> Result<usize> {
        self.lookup(id)?;
        *stat = self.statvfs();
        Ok(0)
    }

    fn fsync(&mut self, id: usize) -> Result<usize> {
        self.lookup(id)?;
        Ok(0)
    }

    fn ftruncate(&mut self, id: usize, len: usize) -> Result<usize> {
        self.truncate_handle(id, len as u64).map(|()| 0)
    }

    fn futimens(&mut self, id: usize, times: &[TimeSpec]) -> Result<usize> {
        self.set_times(id, times).map(|()| 0)
    }

    fn close(&mut self, id: usize) -> Result<usize> {
        let handle = self.handles.remove(&id).ok_or(Error::new(EBADF))?;
        self.tree.close(handle.node);
        Ok(0)
    }
}

impl Getdents for RamFs {
    fn getdents(&mut self, id: usize, buf: &mut [u8], opaque: u64) -> Result<usize> {
        self.list_entries(id, buf, opaque)
    }
}
