//! Path resolution and permission checks for `ramfs:`, after RedoxFS's `open` (scheme.rs):
//! scheme-relative paths, `..` staying at the root, symlinks followed up to 32 deep (relative
//! targets from the link's directory, absolute ones from the scheme root), search permission on
//! every directory looked in. The permission rule is the POSIX one (owner class, else group,
//! else other; root passes), not RedoxFS's union of classes, so modes behave as on tmpfs.

use syscall::{Error, Result, EACCES, ELOOP, ENAMETOOLONG, ENOENT, ENOTDIR};

use super::tree::{Node, NodeId, Tree, ROOT};

/// Read permission bit (of one class).
pub const PERM_READ: u16 = 0o4;
/// Write permission bit.
pub const PERM_WRITE: u16 = 0o2;
/// Search (execute) permission bit.
pub const PERM_EXEC: u16 = 0o1;
/// The most symlinks one resolution follows; one more is ELOOP.
pub const MAX_SYMLINKS: u32 = 32;
/// The longest entry name (bytes), as on Linux filesystems.
pub const NAME_MAX: usize = 255;

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    pub fn is_root(self) -> bool {
        self.uid == 0
    }

    /// Whether the caller owns `node` or is root (who may change its mode, owner and times).
    pub fn owns(self, node: &Node) -> bool {
        self.is_root() || self.uid == node.uid
    }
}

/// Whether `caller` has all of `wanted` (PERM_* bits) on `node`: root always; otherwise the
/// owner bits if the caller owns it, else the group bits if the group matches, else the rest.
pub fn permits(node: &Node, caller: Caller, wanted: u16) -> bool {
    if caller.is_root() {
        return true;
    }
    let class = if caller.uid == node.uid {
        node.mode >> 6
    } else if caller.gid == node.gid {
        node.mode >> 3
    } else {
        node.mode
    };
    class & 0o7 & wanted == wanted
}

/// [`permits`], as EACCES.
pub fn check(node: &Node, caller: Caller, wanted: u16) -> Result<()> {
    if permits(node, caller, wanted) {
        Ok(())
    } else {
        Err(Error::new(EACCES))
    }
}

/// ENAMETOOLONG for a name no entry may have.
pub fn check_name(name: &str) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::new(ENAMETOOLONG));
    }
    Ok(())
}

/// Where a path leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The directory holding the final entry, or, when `name` is `None` (the path is the root
    /// or ends in `..`), the directory the path names.
    pub dir: NodeId,
    /// The final entry's name.
    pub name: Option<String>,
    /// The node the path names; `None` if the final entry does not exist.
    pub node: Option<NodeId>,
}

/// Resolves paths in `tree` on behalf of one caller, counting symlinks across one resolution.
pub struct Resolver<'t> {
    tree: &'t Tree,
    caller: Caller,
    links: u32,
}

impl<'t> Resolver<'t> {
    pub fn new(tree: &'t Tree, caller: Caller) -> Self {
        Resolver { tree, caller, links: 0 }
    }

    /// Resolves a scheme-relative `path` (a leading '/' is ignored). Intermediate symlinks are
    /// always followed; a final one only if `follow_last`. Errors: ENOENT (a missing
    /// directory), ENOTDIR (a non-directory in the middle), EACCES (no search permission),
    /// ELOOP (too many links).
    pub fn resolve(&mut self, path: &str, follow_last: bool) -> Result<Found> {
        self.resolve_from(ROOT, path, follow_last)
    }

    fn resolve_from(&mut self, start: NodeId, path: &str, follow_last: bool) -> Result<Found> {
        let start = if path.starts_with('/') { ROOT } else { start };
        let components: Vec<&str> =
            path.split('/').filter(|part| !part.is_empty() && *part != ".").collect();
        let Some((last, middle)) = components.split_last() else {
            return Ok(Found { dir: start, name: None, node: Some(start) });
        };
        let mut dir = start;
        for name in middle {
            dir = self.step(dir, name)?;
        }
        self.finish(dir, last, follow_last)
    }

    /// The directory `name` leads to from `dir` (following symlinks).
    fn step(&mut self, dir: NodeId, name: &str) -> Result<NodeId> {
        let node = self.lookup(dir, name)?.ok_or(Error::new(ENOENT))?;
        let node = if self.tree.node(node).is_symlink() {
            self.follow(dir, node)?.node.ok_or(Error::new(ENOENT))?
        } else {
            node
        };
        if !self.tree.node(node).is_dir() {
            return Err(Error::new(ENOTDIR));
        }
        Ok(node)
    }

    fn finish(&mut self, dir: NodeId, name: &str, follow_last: bool) -> Result<Found> {
        if name == ".." {
            let parent = self.lookup(dir, name)?.ok_or(Error::new(ENOENT))?;
            return Ok(Found { dir: parent, name: None, node: Some(parent) });
        }
        match self.lookup(dir, name)? {
            Some(node) if follow_last && self.tree.node(node).is_symlink() => {
                self.follow(dir, node)
            }
            node => Ok(Found { dir, name: Some(name.to_string()), node }),
        }
    }

    /// Looks `name` up in directory `dir`, which needs search permission; `..` is the parent.
    fn lookup(&self, dir: NodeId, name: &str) -> Result<Option<NodeId>> {
        let node = self.tree.node(dir);
        check(node, self.caller, PERM_EXEC)?;
        let entries = node.dir().ok_or(Error::new(ENOTDIR))?;
        if name == ".." {
            return Ok(self.tree.get(entries.parent).map(|_| entries.parent));
        }
        Ok(entries.get(name))
    }

    /// Resolves the target of symlink `link`, which sits in directory `dir`.
    fn follow(&mut self, dir: NodeId, link: NodeId) -> Result<Found> {
        self.links += 1;
        if self.links > MAX_SYMLINKS {
            return Err(Error::new(ELOOP));
        }
        let tree = self.tree;
        let target = String::from_utf8_lossy(tree.node(link).data().unwrap_or_default());
        if target.is_empty() {
            return Err(Error::new(ENOENT));
        }
        self.resolve_from(dir, &target, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ramfs::tree::Kind;
    use syscall::MODE_FILE;

    const ROOT_CALLER: Caller = Caller { uid: 0, gid: 0 };
    const USER: Caller = Caller { uid: 1000, gid: 1000 };

    fn symlink(tree: &mut Tree, dir: NodeId, name: &str, target: &str) -> NodeId {
        let link = tree.create(dir, name, Kind::Symlink, 0o777, 0, 0);
        tree.write_at(link, 0, target.as_bytes()).unwrap();
        link
    }

    fn node_at(tree: &Tree, path: &str, follow: bool) -> Result<Option<NodeId>> {
        Resolver::new(tree, ROOT_CALLER).resolve(path, follow).map(|found| found.node)
    }

    #[test]
    fn permission_uses_one_class_only() {
        let mut tree = Tree::new(None);
        let file = tree.create(ROOT, "f", Kind::File, 0o070, 1000, 1000);
        let node = tree.node(file);
        assert_eq!(node.mode, MODE_FILE | 0o070);
        assert!(!permits(node, USER, PERM_READ), "owner class has no bits");
        assert!(permits(node, Caller { uid: 5, gid: 1000 }, PERM_READ | PERM_WRITE));
        assert!(!permits(node, Caller { uid: 5, gid: 5 }, PERM_READ));
        assert!(permits(node, ROOT_CALLER, PERM_READ | PERM_WRITE | PERM_EXEC));
        assert_eq!(check(node, USER, PERM_READ), Err(Error::new(EACCES)));
    }

    #[test]
    fn components_skip_empty_and_dot_and_dotdot_stops_at_root() {
        let mut tree = Tree::new(None);
        let a = tree.create(ROOT, "a", Kind::Dir, 0o755, 0, 0);
        let b = tree.create(a, "b", Kind::Dir, 0o755, 0, 0);
        assert_eq!(node_at(&tree, "/a//./b/", true), Ok(Some(b)));
        assert_eq!(node_at(&tree, "a/b/..", true), Ok(Some(a)));
        assert_eq!(node_at(&tree, "../../a", true), Ok(Some(a)));
        assert_eq!(node_at(&tree, "", true), Ok(Some(ROOT)));
        let found = Resolver::new(&tree, ROOT_CALLER).resolve("a/new", true).unwrap();
        assert_eq!(found, Found { dir: a, name: Some("new".into()), node: None });
    }

    #[test]
    fn missing_and_non_directory_parents() {
        let mut tree = Tree::new(None);
        tree.create(ROOT, "f", Kind::File, 0o644, 0, 0);
        assert_eq!(node_at(&tree, "nope/x", true), Err(Error::new(ENOENT)));
        assert_eq!(node_at(&tree, "f/x", true), Err(Error::new(ENOTDIR)));
    }

    #[test]
    fn symlinks_resolve_relative_to_their_directory_or_the_root() {
        let mut tree = Tree::new(None);
        let a = tree.create(ROOT, "a", Kind::Dir, 0o755, 0, 0);
        let file = tree.create(a, "f", Kind::File, 0o644, 0, 0);
        let rel = symlink(&mut tree, a, "rel", "f");
        symlink(&mut tree, ROOT, "abs", "/a/f");
        symlink(&mut tree, ROOT, "dirlink", "a");
        assert_eq!(node_at(&tree, "a/rel", true), Ok(Some(file)));
        assert_eq!(node_at(&tree, "a/rel", false), Ok(Some(rel)));
        assert_eq!(node_at(&tree, "abs", true), Ok(Some(file)));
        assert_eq!(node_at(&tree, "dirlink/rel", true), Ok(Some(file)));
        assert_eq!(node_at(&tree, "dirlink/..", true), Ok(Some(ROOT)));
    }

    #[test]
    fn a_dangling_final_link_names_where_its_target_would_be() {
        let mut tree = Tree::new(None);
        let a = tree.create(ROOT, "a", Kind::Dir, 0o755, 0, 0);
        symlink(&mut tree, ROOT, "dangling", "a/target");
        let found = Resolver::new(&tree, ROOT_CALLER).resolve("dangling", true).unwrap();
        assert_eq!(found, Found { dir: a, name: Some("target".into()), node: None });
        assert_eq!(node_at(&tree, "dangling/x", true), Err(Error::new(ENOENT)));
    }

    #[test]
    fn more_than_32_links_is_eloop() {
        let mut tree = Tree::new(None);
        let file = tree.create(ROOT, "l0", Kind::File, 0o644, 0, 0);
        for i in 1..=33 {
            symlink(&mut tree, ROOT, &format!("l{i}"), &format!("l{}", i - 1));
        }
        assert_eq!(node_at(&tree, "l32", true), Ok(Some(file)));
        assert_eq!(node_at(&tree, "l33", true), Err(Error::new(ELOOP)));
        symlink(&mut tree, ROOT, "self", "self");
        assert_eq!(node_at(&tree, "self/x", true), Err(Error::new(ELOOP)));
    }

    #[test]
    fn every_directory_looked_in_needs_search_permission() {
        let mut tree = Tree::new(None);
        let locked = tree.create(ROOT, "locked", Kind::Dir, 0o700, 0, 0);
        tree.create(locked, "f", Kind::File, 0o644, 0, 0);
        let mut user = Resolver::new(&tree, USER);
        assert_eq!(user.resolve("locked/f", true), Err(Error::new(EACCES)));
        assert_eq!(user.resolve("locked", true).unwrap().node, Some(locked));
    }
}
