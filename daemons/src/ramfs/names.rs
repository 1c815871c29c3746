//! Name operations of `ramfs:`, after RedoxFS's `frename`, `flink`, `unlink` and `rmdir`
//! (scheme.rs) with POSIX's errors in Linux's order (ENOENT, EINVAL, EACCES, ENOTDIR/EISDIR,
//! ENOTEMPTY), and fpath. Handles of non-directories remember the name they were opened under;
//! a rename moves every handle that remembered the old name of that node.

use syscall::{Error, Result, EBUSY, EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY, EPERM};

use super::path::{check, check_name, Caller, Resolver, PERM_EXEC, PERM_WRITE};
use super::scheme::RamFs;
use super::tree::{NodeId, ROOT};

/// What fpath puts before the scheme-relative path.
const FPATH_PREFIX: &str = "ramfs:/";

impl RamFs {
    /// The directory and name the node of handle `id` is linked under now: a directory's one
    /// place, or the place a file's handle remembers if that entry still names the node.
    /// EBUSY for the root; ENOENT if the node is no longer linked there.
    fn place_of(&self, id: usize) -> Result<(NodeId, String)> {
        let handle = self.lookup(id)?;
        let node = self.tree.node(handle.node);
        if handle.node == ROOT {
            return Err(Error::new(EBUSY));
        }
        let place = match node.dir() {
            Some(dir) if node.links > 0 => Some((dir.parent, dir.name.clone())),
            Some(_) => None,
            None => handle.place.clone(),
        };
        let (dir, name) = place.ok_or(Error::new(ENOENT))?;
        let linked = self.tree.get(dir).and_then(|dir| dir.dir()).and_then(|dir| dir.get(&name));
        if linked != Some(handle.node) {
            return Err(Error::new(ENOENT));
        }
        Ok((dir, name))
    }

    /// "ramfs:/" + the handle's scheme-relative path (its remembered place for a file, even
    /// after the file was unlinked).
    pub(super) fn handle_path(&self, id: usize) -> Result<String> {
        let handle = self.lookup(id)?;
        let path = match (&handle.place, self.tree.node(handle.node).is_dir()) {
            (_, true) => self.tree.dir_path(handle.node),
            (Some((dir, name)), false) => {
                let dir_path = self.tree.dir_path(*dir);
                if dir_path.is_empty() {
                    name.clone()
                } else {
                    format!("{dir_path}/{name}")
                }
            }
            (None, false) => String::new(),
        };
        Ok(format!("{FPATH_PREFIX}{path}"))
    }

    /// frename: moves the handle's node to `path`, replacing what is there if POSIX allows.
    pub(super) fn rename_handle(&mut self, id: usize, path: &str, caller: Caller) -> Result<()> {
        let node = self.lookup(id)?.node;
        let (from_dir, from_name) = self.place_of(id)?;
        let found = Resolver::new(&self.tree, caller).resolve(path, false)?;
        let to_name = found.name.ok_or(Error::new(EBUSY))?;
        check_name(&to_name)?;
        if self.tree.node(found.dir).links == 0 {
            return Err(Error::new(ENOENT));
        }
        if found.node == Some(node) {
            return Ok(());
        }
        let moving_dir = self.tree.node(node).is_dir();
        if moving_dir && self.tree.is_ancestor(node, found.dir) {
            return Err(Error::new(EINVAL));
        }
        check(self.tree.node(from_dir), caller, PERM_WRITE | PERM_EXEC)?;
        check(self.tree.node(found.dir), caller, PERM_WRITE | PERM_EXEC)?;
        if let Some(old) = found.node {
            self.check_replaceable(moving_dir, old)?;
            self.tree.unlink(found.dir, &to_name);
        }
        self.tree.link(found.dir, &to_name, node);
        self.tree.unlink(from_dir, &from_name);
        self.move_places(node, (from_dir, from_name), (found.dir, to_name));
        Ok(())
    }

    /// Whether a rename may replace `old`: a directory only an empty directory (ENOTEMPTY,
    /// ENOTDIR), anything else only a non-directory (EISDIR).
    fn check_replaceable(&self, moving_dir: bool, old: NodeId) -> Result<()> {
        match (moving_dir, self.tree.node(old).dir()) {
            (true, Some(dir)) if !dir.is_empty() => Err(Error::new(ENOTEMPTY)),
            (true, None) => Err(Error::new(ENOTDIR)),
            (false, Some(_)) => Err(Error::new(EISDIR)),
            _ => Ok(()),
        }
    }

    /// Points every handle of `node` that remembered place `from` at place `to`.
    fn move_places(&mut self, node: NodeId, from: (NodeId, String), to: (NodeId, String)) {
        let from = Some(from);
        for handle in self.handles.values_mut() {
            if handle.node == node && handle.place == from {
                handle.place = Some(to.clone());
            }
        }
    }

    /// flink: a new name for the handle's non-directory node (EPERM for a directory, EEXIST if
    /// `path` exists, ENOENT if the node has no links left).
    pub(super) fn link_handle(&mut self, id: usize, path: &str, caller: Caller) -> Result<()> {
        let node = self.lookup(id)?.node;
        let target = self.tree.node(node);
        if target.is_dir() {
            return Err(Error::new(EPERM));
        }
        let found = Resolver::new(&self.tree, caller).resolve(path, false)?;
        let name = match (found.name, found.node) {
            (Some(name), None) => name,
            _ => return Err(Error::new(EEXIST)),
        };
        check_name(&name)?;
        let dir = self.tree.node(found.dir);
        if target.links == 0 || dir.links == 0 {
            return Err(Error::new(ENOENT));
        }
        check(dir, caller, PERM_WRITE | PERM_EXEC)?;
        self.tree.link(found.dir, &name, node);
        Ok(())
    }

    /// unlink: removes a file's or symlink's name (EISDIR for a directory).
    pub(super) fn remove_file(&mut self, path: &str, caller: Caller) -> Result<()> {
        let found = Resolver::new(&self.tree, caller).resolve(path, false)?;
        let node = found.node.ok_or(Error::new(ENOENT))?;
        let name = found.name.ok_or(Error::new(EISDIR))?;
        check(self.tree.node(found.dir), caller, PERM_WRITE | PERM_EXEC)?;
        if self.tree.node(node).is_dir() {
            return Err(Error::new(EISDIR));
        }
        self.tree.unlink(found.dir, &name);
        Ok(())
    }

    /// rmdir: removes an empty directory (ENOTDIR, ENOTEMPTY; EBUSY for the root).
    pub(super) fn remove_dir(&mut self, path: &str, caller: Caller) -> Result<()> {
        let found = Resolver::new(&self.tree, caller).resolve(path, false)?;
        let node = found.node.ok_or(Error::new(ENOENT))?;
        let name = found.name.ok_or(Error::new(EBUSY))?;
        check(self.tree.node(found.dir), caller, PERM_WRITE | PERM_EXEC)?;
        match self.tree.node(node).dir() {
            None => return Err(Error::new(ENOTDIR)),
            Some(dir) if !dir.is_empty() => return Err(Error::new(ENOTEMPTY)),
            Some(_) => {}
        }
        self.tree.unlink(found.dir, &name);
        Ok(())
    }
}
