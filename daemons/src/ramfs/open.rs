//! `open` for `ramfs:`, after RedoxFS's `open` (scheme.rs): O_CREAT (a file; with O_DIRECTORY
//! a directory; with O_SYMLINK a link whose target is then written), O_EXCL, O_TRUNC, O_STAT
//! handles that need no access, O_SYMLINK / O_STAT|O_NOFOLLOW opening a link itself, O_NOFOLLOW
//! alone on a link = ELOOP. Errors come in Linux's order: EEXIST, ELOOP, ENOTDIR, EISDIR, EACCES.

use syscall::{
    Error, Result, EEXIST, EINVAL, EISDIR, ELOOP, ENOENT, ENOTDIR, MODE_PERM, O_CREAT, O_DIRECTORY,
    O_EXCL, O_NOFOLLOW, O_RDONLY, O_STAT, O_SYMLINK, O_TRUNC, O_WRONLY,
};

use super::path::{check, check_name, Caller, Found, Resolver, PERM_EXEC, PERM_READ, PERM_WRITE};
use super::scheme::RamFs;
use super::tree::{Kind, NodeId};

/// Mode of every symlink (as on Linux and in RedoxFS's FUSE `symlink`).
const SYMLINK_PERM: u16 = 0o777;

fn has(flags: usize, bits: usize) -> bool {
    flags & bits == bits
}

/// Whether a final symlink is followed: not with O_NOFOLLOW or O_SYMLINK, and not when
/// creating exclusively (O_CREAT with O_EXCL, or mkdir), which POSIX never follows.
fn follows_last_link(flags: usize) -> bool {
    let exclusive = has(flags, O_CREAT) && flags & (O_EXCL | O_DIRECTORY) != 0;
    flags & (O_NOFOLLOW | O_SYMLINK) == 0 && !exclusive
}

/// Permission bits the access mode (and O_TRUNC) needs; nothing for O_STAT.
fn wanted_access(flags: usize) -> u16 {
    if has(flags, O_STAT) {
        return 0;
    }
    let mut wanted = 0;
    if has(flags, O_RDONLY) {
        wanted |= PERM_READ;
    }
    if has(flags, O_WRONLY) || has(flags, O_TRUNC) {
        wanted |= PERM_WRITE;
    }
    wanted
}

/// Whether the handle asks to write (which a directory refuses with EISDIR).
fn wants_write(flags: usize) -> bool {
    !has(flags, O_STAT) && has(flags, O_WRONLY)
}

impl RamFs {
    /// Opens (and maybe creates) `path` for `caller`; returns the handle id.
    pub(super) fn open_path(&mut self, path: &str, flags: usize, caller: Caller) -> Result<usize> {
        let found = Resolver::new(&self.tree, caller).resolve(path, follows_last_link(flags))?;
        let node = match found.node {
            Some(node) => {
                self.open_existing(node, flags, caller)?;
                node
            }
            None => self.create_for_open(&found, flags, caller)?,
        };
        let place = match (self.tree.node(node).is_dir(), found.name) {
            (false, Some(name)) => Some((found.dir, name)),
            _ => None,
        };
        Ok(self.add_handle(node, place, flags, caller))
    }

    /// Checks an open of the existing `node` and applies O_TRUNC.
    fn open_existing(&mut self, node: NodeId, flags: usize, caller: Caller) -> Result<()> {
        let target = self.tree.node(node);
        if has(flags, O_CREAT) && flags & (O_EXCL | O_DIRECTORY | O_SYMLINK) != 0 {
            return Err(Error::new(EEXIST));
        }
        if target.is_symlink() && flags & (O_SYMLINK | O_STAT) == 0 {
            return Err(Error::new(ELOOP));
        }
        if !target.is_symlink() && has(flags, O_SYMLINK) && !has(flags, O_STAT) {
            return Err(Error::new(EINVAL));
        }
        if has(flags, O_DIRECTORY) && !target.is_dir() {
            return Err(Error::new(ENOTDIR));
        }
        if target.is_dir() && (wants_write(flags) || has(flags, O_CREAT)) {
            return Err(Error::new(EISDIR));
        }
        check(target, caller, wanted_access(flags))?;
        if has(flags, O_TRUNC) && !has(flags, O_STAT) && !target.is_dir() {
            self.tree.set_len(node, 0)?;
        }
        Ok(())
    }

    /// Creates the missing final entry of `found` for an open with O_CREAT (else ENOENT).
    /// The parent needs write and search permission; the new node's access is not checked.
    fn create_for_open(&mut self, found: &Found, flags: usize, caller: Caller) -> Result<NodeId> {
        let name = found.name.as_deref().filter(|_| has(flags, O_CREAT));
        let name = name.ok_or(Error::new(ENOENT))?;
        check_name(name)?;
        let dir = self.tree.node(found.dir);
        if dir.links == 0 {
            return Err(Error::new(ENOENT));
        }
        check(dir, caller, PERM_WRITE | PERM_EXEC)?;
        let (kind, perm) = if has(flags, O_DIRECTORY) {
            (Kind::Dir, flags as u16 & MODE_PERM)
        } else if has(flags, O_SYMLINK) {
            (Kind::Symlink, SYMLINK_PERM)
        } else {
            (Kind::File, flags as u16 & MODE_PERM)
        };
        if kind == Kind::Dir && wants_write(flags) {
            return Err(Error::new(EISDIR));
        }
        Ok(self.tree.create(found.dir, name, kind, perm, caller.uid, caller.gid))
    }
}
