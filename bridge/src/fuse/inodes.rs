//! FUSE inode numbers <-> scheme paths. Schemes are addressed by path, so each inode is a
//! (scheme, scheme-relative path) pair with the kernel's lookup count; renames move a node and
//! everything below it, unlinks free the path for a new node while the old one lives until
//! the kernel forgets it.

use std::collections::HashMap;

/// The root inode.
pub(crate) const ROOT: u64 = 1;

/// The scheme index of the synthetic namespace root (`--namespace`).
pub(crate) const NAMESPACE: usize = usize::MAX;

/// The scheme index of the synthetic `.dup` directory.
pub(crate) const DUP_DIR: usize = usize::MAX - 1;

/// Paths of `.dup/<token>` nodes start with this (a NUL never comes from a FUSE name).
pub(crate) const TOKEN_PREFIX: &str = "\0dup/";

/// What a node is, as far as the kernel needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    Symlink,
    /// A regular file of known size.
    File,
    /// Anything else (chan streams, devices): shown as an empty regular file, read directly.
    Stream,
}

/// One node: which scheme, which path in it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) scheme: usize,
    pub(crate) path: String,
    pub(crate) kind: Kind,
    lookups: u64,
}

/// The table.
#[derive(Debug)]
pub(crate) struct Inodes {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<(usize, String), u64>,
    next: u64,
}

impl Inodes {
    /// A table holding only the root, which is `root_scheme`'s "" (or the namespace root).
    pub(crate) fn new(root_scheme: usize) -> Inodes {
        let root = Node { scheme: root_scheme, path: String::new(), kind: Kind::Dir, lookups: 1 };
        let mut inodes = Inodes { nodes: HashMap::new(), by_path: HashMap::new(), next: ROOT + 1 };
        inodes.by_path.insert((root_scheme, String::new()), ROOT);
        inodes.nodes.insert(ROOT, root);
        inodes
    }

    pub(crate) fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The inode for `path` in `scheme`, created if new; counts one kernel lookup.
    pub(crate) fn lookup(&mut self, scheme: usize, path: &str, kind: Kind) -> u64 {
        let key = (scheme, path.to_owned());
        let ino = match self.by_path.get(&key) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.by_path.insert(key, ino);
                let node = Node { scheme, path: path.to_owned(), kind, lookups: 0 };
                self.nodes.insert(ino, node);
                ino
            }
        };
        let node = self.nodes.get_mut(&ino).expect("indexed node exists");
        node.lookups += 1;
        if ino != ROOT {
            node.kind = kind;
        }
        ino
    }

    /// The kernel dropped `count` lookups of `ino`.
    pub(crate) fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups == 0 {
            let node = self.nodes.remove(&ino).expect("present");
            let key = (node.scheme, node.path);
            if self.by_path.get(&key) == Some(&ino) {
                self.by_path.remove(&key);
            }
        }
    }

    /// `path` was unlinked: a later node may take the name; the old one lives until forgotten.
    pub(crate) fn unlinked(&mut self, scheme: usize, path: &str) {
        self.by_path.remove(&(scheme, path.to_owned()));
    }

    /// `from` was renamed to `to` in `scheme`: the node and everything below it move.
    pub(crate) fn renamed(&mut self, scheme: usize, from: &str, to: &str) {
        self.unlinked(scheme, to);
        let prefix = format!("{from}/");
        let moved: Vec<(u64, String)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.scheme == scheme && (n.path == from || n.path.starts_with(&prefix)))
            .map(|(&ino, n)| (ino, format!("{to}{}", &n.path[from.len()..])))
            .collect();
        for (ino, new_path) in moved {
            let node = self.nodes.get_mut(&ino).expect("listed");
            let old = std::mem::replace(&mut node.path, new_path.clone());
            if self.by_path.get(&(scheme, old.clone())) == Some(&ino) {
                self.by_path.remove(&(scheme, old));
            }
            self.by_path.insert((scheme, new_path), ino);
        }
    }
}

/// `parent/name` as a scheme-relative path ("" is the scheme root).
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_path_same_inode_until_forgotten() {
        let mut inodes = Inodes::new(0);
        let a = inodes.lookup(0, "a", Kind::File);
        assert_eq!(inodes.lookup(0, "a", Kind::File), a);
        inodes.forget(a, 1);
        assert!(inodes.get(a).is_some());
        inodes.forget(a, 1);
        assert!(inodes.get(a).is_none());
        assert_ne!(inodes.lookup(0, "a", Kind::File), a);
    }

    #[test]
    fn rename_moves_the_subtree() {
        let mut inodes = Inodes::new(0);
        let dir = inodes.lookup(0, "d", Kind::Dir);
        let file = inodes.lookup(0, "d/f", Kind::File);
        let other = inodes.lookup(0, "dd", Kind::File);
        inodes.renamed(0, "d", "e/x");
        assert_eq!(inodes.get(dir).unwrap().path, "e/x");
        assert_eq!(inodes.get(file).unwrap().path, "e/x/f");
        assert_eq!(inodes.get(other).unwrap().path, "dd");
        assert_eq!(inodes.lookup(0, "e/x/f", Kind::File), file);
    }

    #[test]
    fn unlink_frees_the_name() {
        let mut inodes = Inodes::new(0);
        let old = inodes.lookup(0, "f", Kind::File);
        inodes.unlinked(0, "f");
        let new = inodes.lookup(0, "f", Kind::File);
        assert_ne!(old, new);
        assert_eq!(inodes.get(old).unwrap().path, "f");
        inodes.forget(old, 1);
        assert_eq!(inodes.lookup(0, "f", Kind::File), new);
    }

    #[test]
    fn the_root_is_never_forgotten() {
        let mut inodes = Inodes::new(NAMESPACE);
        inodes.forget(ROOT, 100);
        assert_eq!(inodes.get(ROOT).unwrap().scheme, NAMESPACE);
    }
}
