//! Data operations of `ramfs:` handles: read/write at the handle's offset (O_APPEND writes at
//! the end), lseek (past the end allowed; negative = EINVAL), ftruncate, and directory listing
//! as RedoxFS does it: getdents records (0.5 `DirentBuf`, cursor = entry sequence number) and
//! the legacy newline-separated names when a directory handle is read.

use std::mem::size_of;

use syscall::dirent::{DirEntry, DirentBuf, DirentHeader, DirentKind};
use syscall::{
    Error, Result, EBADF, EINVAL, ENOTDIR, EOVERFLOW, O_APPEND, SEEK_CUR, SEEK_END, SEEK_SET,
};

use super::scheme::RamFs;
use super::tree::{Dir, Node, Tree};

/// The getdents kind of a node.
fn dirent_kind(node: &Node) -> DirentKind {
    if node.is_dir() {
        DirentKind::Directory
    } else if node.is_symlink() {
        DirentKind::Symlink
    } else {
        DirentKind::Regular
    }
}

/// The legacy listing: every entry name followed by '\n', in entry order.
fn listing(dir: &Dir) -> Vec<u8> {
    let mut text = Vec::new();
    for (_, name, _) in dir.after(0) {
        text.extend_from_slice(name.as_bytes());
        text.push(b'\n');
    }
    text
}

/// Copies `data` from `offset` into `buf`; returns the bytes copied.
fn copy_from(data: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
    let len = buf.len().min(data.len() - start);
    buf[..len].copy_from_slice(&data[start..start + len]);
    len
}

/// Fills `out` with `dir`'s entries after cursor `opaque`; EINVAL if the first does not fit.
fn fill_dirents(tree: &Tree, dir: &Dir, out: &mut DirentBuf<&mut [u8]>, opaque: u64) -> Result<()> {
    for (count, (seq, name, child)) in dir.after(opaque).enumerate() {
        let kind = dirent_kind(tree.node(child));
        let entry = DirEntry { inode: child, next_opaque_id: seq, name, kind };
        if let Err(err) = out.entry(entry) {
            return if count == 0 { Err(err) } else { Ok(()) };
        }
    }
    Ok(())
}

impl RamFs {
    /// Reads file data (or a symlink's target, or a directory's listing) at the offset.
    pub(super) fn read_handle(&mut self, id: usize, buf: &mut [u8]) -> Result<usize> {
        let handle = self.lookup(id)?;
        if !handle.can_read() {
            return Err(Error::new(EBADF));
        }
        let node = self.tree.node(handle.node);
        let count = match node.dir() {
            Some(dir) => copy_from(&listing(dir), handle.offset, buf),
            None => self.tree.read_at(handle.node, handle.offset, buf),
        };
        self.lookup_mut(id)?.offset += count as u64;
        Ok(count)
    }

    /// Writes at the offset, or at the end with O_APPEND; the offset moves past the data.
    pub(super) fn write_handle(&mut self, id: usize, buf: &[u8]) -> Result<usize> {
        let handle = self.lookup(id)?;
        if !handle.can_write() {
            return Err(Error::new(EBADF));
        }
        let node = handle.node;
        let offset =
            if handle.flags & O_APPEND != 0 { self.tree.node(node).size() } else { handle.offset };
        let count = self.tree.write_at(node, offset, buf)?;
        self.lookup_mut(id)?.offset = offset + count as u64;
        Ok(count)
    }

    /// Moves the offset; SEEK_END counts from the data size (a directory: its listing's).
    pub(super) fn seek_handle(&mut self, id: usize, pos: isize, whence: usize) -> Result<isize> {
        let handle = self.lookup(id)?;
        let node = self.tree.node(handle.node);
        let base = match whence {
            SEEK_SET => 0,
            SEEK_CUR => handle.offset,
            SEEK_END => node.dir().map_or(node.size(), |dir| listing(dir).len() as u64),
            _ => return Err(Error::new(EINVAL)),
        };
        let base = i64::try_from(base).map_err(|_| Error::new(EOVERFLOW))?;
        let offset = base.checked_add(pos as i64).ok_or(Error::new(EOVERFLOW))?;
        if offset < 0 {
            return Err(Error::new(EINVAL));
        }
        let offset_isize = isize::try_from(offset).map_err(|_| Error::new(EOVERFLOW))?;
        self.lookup_mut(id)?.offset = offset as u64;
        Ok(offset_isize)
    }

    /// Sets the file size (growing adds zeros). As on Linux: EBADF for an O_STAT handle, EINVAL
    /// for a handle not open for writing (or a directory).
    pub(super) fn truncate_handle(&mut self, id: usize, len: u64) -> Result<()> {
        let handle = self.lookup(id)?;
        if handle.is_stat_only() {
            return Err(Error::new(EBADF));
        }
        if !handle.can_write() || self.tree.node(handle.node).is_dir() {
            return Err(Error::new(EINVAL));
        }
        self.tree.set_len(handle.node, len)
    }

    /// getdents: records of the entries after cursor `opaque`, each carrying its own sequence
    /// number as the next cursor; 0 bytes at the end. The handle must be open for reading.
    pub(super) fn list_entries(&mut self, id: usize, buf: &mut [u8], opaque: u64) -> Result<usize> {
        let handle = self.lookup(id)?;
        let dir = self.tree.node(handle.node).dir().ok_or(Error::new(ENOTDIR))?;
        if !handle.can_read() {
            return Err(Error::new(EBADF));
        }
        let header = size_of::<DirentHeader>() as u16;
        let mut out = DirentBuf::new(buf, header).ok_or(Error::new(EINVAL))?;
        fill_dirents(&self.tree, dir, &mut out, opaque)?;
        Ok(out.finalize())
    }
}
