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

/// One node: which scheme, which path in it. A file with several hard links is one node with
/// several paths (the daemon's `st_ino` tells them apart), so the kernel sees one inode.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) scheme: usize,
    /// The path calls are made with; another link's path when this one is unlinked.
    pub(crate) path: String,
    pub(crate) kind: Kind,
    other_paths: Vec<String>,
    st_ino: u64,
    lookups: u64,
    /// Its last path was unlinked or renamed over: `path` now names another file, if any.
    pub(crate) unlinked: bool,
}

impl Node {
    /// Whether a stat with inode number `st_ino` can describe this node (unknown numbers, 0,
    /// match anything).
    pub(crate) fn is(&self, st_ino: u64) -> bool {
        self.st_ino == 0 || st_ino == 0 || self.st_ino == st_ino
    }
}

/// The table.
#[derive(Debug)]
pub(crate) struct Inodes {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<(usize, String), u64>,
    by_st_ino: HashMap<(usize, u64), u64>,
    /// The last made-up node id.
    next: u64,
    /// Whether daemon inode numbers are used as node ids (one scheme: they cannot collide).
    own_numbers: bool,
    /// Counts renames and unlinks: a stat sent before one of them may describe a file that
    /// is no longer at its path.
    epoch: u64,
}

/// Made-up node ids start above this.
const MADE_UP: u64 = 1 << 56;

impl Inodes {
    /// A table holding only the root, which is `root_scheme`'s "" (or the namespace root).
    pub(crate) fn new(root_scheme: usize) -> Inodes {
        let root = Node {
            scheme: root_scheme,
            path: String::new(),
            kind: Kind::Dir,
            other_paths: Vec::new(),
            st_ino: 0,
            lookups: 1,
            unlinked: false,
        };
        let mut inodes = Inodes {
            nodes: HashMap::new(),
            by_path: HashMap::new(),
            by_st_ino: HashMap::new(),
            next: MADE_UP,
            own_numbers: root_scheme != NAMESPACE,
            epoch: 0,
        };
        inodes.by_path.insert((root_scheme, String::new()), ROOT);
        inodes.nodes.insert(ROOT, root);
        inodes
    }

    /// The node of the `.dup` directory, once the kernel has looked it up.
    pub(crate) fn dir_of_tokens(&self) -> Option<u64> {
        self.by_path.get(&(DUP_DIR, String::new())).copied()
    }

    /// Renames and unlinks so far.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The inode for `path` in `scheme` (whose daemon inode number is `st_ino`, 0 if unknown),
    /// created if new; counts one kernel lookup. Another link to a known `st_ino` joins its node.
    pub(crate) fn lookup(&mut self, scheme: usize, path: &str, kind: Kind, st_ino: u64) -> u64 {
        let key = (scheme, path.to_owned());
        let stale = self.by_path.get(&key).and_then(|ino| self.nodes.get(ino));
        if stale.is_some_and(|node| !node.is(st_ino)) {
            // Another file is at `path` now (changed behind the mount): the old node loses it.
            self.detach_path(scheme, path);
        }
        let ino = match self.by_path.get(&key).copied() {
            Some(ino) => ino,
            None => match self.linked_node(scheme, st_ino) {
                Some(ino) => {
                    let node = self.nodes.get_mut(&ino).expect("indexed");
                    if node.unlinked {
                        node.unlinked = false;
                        node.path = path.to_owned();
                    } else {
                        node.other_paths.push(path.to_owned());
                    }
                    self.by_path.insert(key, ino);
                    ino
                }
                None => self.insert(scheme, path, kind, st_ino),
            },
        };
        let node = self.nodes.get_mut(&ino).expect("indexed node exists");
        node.lookups += 1;
        if ino != ROOT {
            node.kind = kind;
        }
        ino
    }

    fn linked_node(&self, scheme: usize, st_ino: u64) -> Option<u64> {
        if st_ino == 0 {
            return None;
        }
        let ino = *self.by_st_ino.get(&(scheme, st_ino))?;
        self.nodes.get(&ino).filter(|n| n.kind != Kind::Dir).map(|_| ino)
    }

    fn insert(&mut self, scheme: usize, path: &str, kind: Kind, st_ino: u64) -> u64 {
        // fuser uses one number as both the FUSE node id and st_ino, so a daemon's inode number
        // is kept where it can be (ls -i, find and du see the daemon's numbers); otherwise one
        // is made up from a range no daemon number is expected in.
        let ino = if self.own_numbers && st_ino > ROOT && !self.nodes.contains_key(&st_ino) {
            st_ino
        } else {
            self.next += 1;
            self.next
        };
        self.by_path.insert((scheme, path.to_owned()), ino);
        if st_ino != 0 {
            self.by_st_ino.insert((scheme, st_ino), ino);
        }
        let node = Node {
            scheme,
            path: path.to_owned(),
            kind,
            other_paths: Vec::new(),
            st_ino,
            lookups: 0,
            unlinked: false,
        };
        self.nodes.insert(ino, node);
        ino
    }

    /// The kernel dropped `count` lookups of `ino`.
    pub(crate) fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups > 0 {
            return;
        }
        let node = self.nodes.remove(&ino).expect("present");
        for path in std::iter::once(node.path).chain(node.other_paths) {
            let key = (node.scheme, path);
            if self.by_path.get(&key) == Some(&ino) {
                self.by_path.remove(&key);
            }
        }
        if self.by_st_ino.get(&(node.scheme, node.st_ino)) == Some(&ino) {
            self.by_st_ino.remove(&(node.scheme, node.st_ino));
        }
    }

    /// `path` was unlinked: a later node may take the name; the node keeps its other links,
    /// or lives on under the old name until forgotten.
    pub(crate) fn unlinked(&mut self, scheme: usize, path: &str) {
        self.epoch += 1;
        self.detach_path(scheme, path);
    }

    /// Takes `path` away from the node that has it.
    fn detach_path(&mut self, scheme: usize, path: &str) {
        let Some(ino) = self.by_path.remove(&(scheme, path.to_owned())) else { return };
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        if node.path == path {
            match node.other_paths.pop() {
                Some(other) => node.path = other,
                None => node.unlinked = true,
            }
        } else {
            node.other_paths.retain(|p| p != path);
        }
    }

    /// `from` was renamed to `to` in `scheme`: the node and everything below it move.
    pub(crate) fn renamed(&mut self, scheme: usize, from: &str, to: &str) {
        self.unlinked(scheme, to); // counts in the epoch
        let prefix = format!("{from}/");
        let moves = |p: &str| p == from || p.starts_with(&prefix);
        let mut moved = Vec::new();
        let live = |n: &Node| n.scheme == scheme && !n.unlinked;
        for (&ino, node) in self.nodes.iter_mut().filter(|(_, n)| live(n)) {
            for path in std::iter::once(&mut node.path).chain(node.other_paths.iter_mut()) {
                if moves(path) {
                    let new_path = format!("{to}{}", &path[from.len()..]);
                    moved.push((ino, std::mem::replace(path, new_path.clone()), new_path));
                }
            }
        }
        for (ino, old, new) in moved {
            if self.by_path.get(&(scheme, old.clone())) == Some(&ino) {
                self.by_path.remove(&(scheme, old));
            }
            self.by_path.insert((scheme, new), ino);
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
    fn a_path_that_names_another_file_now_gets_a_new_node() {
        let mut inodes = Inodes::new(0);
        let old = inodes.lookup(0, "f", Kind::File, 10);
        let new = inodes.lookup(0, "f", Kind::File, 11);
        assert_ne!(old, new);
        assert!(inodes.get(old).is_some_and(|n| n.is(10) && !n.is(11)));
        assert_eq!(inodes.lookup(0, "f", Kind::File, 11), new);
    }

    #[test]
    fn a_file_renamed_over_is_unlinked_and_does_not_move_with_later_renames() {
        let mut inodes = Inodes::new(0);
        let old = inodes.lookup(0, "p", Kind::File, 10);
        let new = inodes.lookup(0, "tmp", Kind::File, 11);
        inodes.renamed(0, "tmp", "p");
        assert!(inodes.get(old).is_some_and(|n| n.unlinked));
        assert!(inodes.get(new).is_some_and(|n| !n.unlinked && n.path == "p"));
        inodes.renamed(0, "p", "q");
        assert_eq!(inodes.get(old).map(|n| n.path.as_str()), Some("p"));
        assert_eq!(inodes.get(new).map(|n| n.path.as_str()), Some("q"));
    }

    #[test]
    fn renames_and_unlinks_advance_the_epoch() {
        let mut inodes = Inodes::new(0);
        inodes.lookup(0, "a", Kind::File, 10);
        let before = inodes.epoch();
        inodes.renamed(0, "a", "b");
        inodes.unlinked(0, "b");
        assert!(inodes.epoch() > before);
    }

    #[test]
    fn same_path_same_inode_until_forgotten() {
        let mut inodes = Inodes::new(0);
        let a = inodes.lookup(0, "a", Kind::File, 0);
        assert_eq!(inodes.lookup(0, "a", Kind::File, 0), a);
        inodes.forget(a, 1);
        assert!(inodes.get(a).is_some());
        inodes.forget(a, 1);
        assert!(inodes.get(a).is_none());
        assert_ne!(inodes.lookup(0, "a", Kind::File, 0), a);
    }

    #[test]
    fn rename_moves_the_subtree() {
        let mut inodes = Inodes::new(0);
        let dir = inodes.lookup(0, "d", Kind::Dir, 0);
        let file = inodes.lookup(0, "d/f", Kind::File, 0);
        let other = inodes.lookup(0, "dd", Kind::File, 0);
        inodes.renamed(0, "d", "e/x");
        assert_eq!(inodes.get(dir).unwrap().path, "e/x");
        assert_eq!(inodes.get(file).unwrap().path, "e/x/f");
        assert_eq!(inodes.get(other).unwrap().path, "dd");
        assert_eq!(inodes.lookup(0, "e/x/f", Kind::File, 0), file);
    }

    #[test]
    fn unlink_frees_the_name() {
        let mut inodes = Inodes::new(0);
        let old = inodes.lookup(0, "f", Kind::File, 0);
        inodes.unlinked(0, "f");
        let new = inodes.lookup(0, "f", Kind::File, 0);
        assert_ne!(old, new);
        assert_eq!(inodes.get(old).unwrap().path, "f");
        inodes.forget(old, 1);
        assert_eq!(inodes.lookup(0, "f", Kind::File, 0), new);
    }

    #[test]
    fn hard_links_are_one_node_that_survives_unlinking_a_name() {
        let mut inodes = Inodes::new(0);
        let f = inodes.lookup(0, "f", Kind::File, 42);
        let g = inodes.lookup(0, "g", Kind::File, 42);
        assert_eq!(f, g);
        inodes.unlinked(0, "f");
        assert_eq!(inodes.get(f).unwrap().path, "g");
        assert_ne!(inodes.lookup(0, "f", Kind::File, 43), f, "a new file under the old name");
        inodes.renamed(0, "g", "h");
        assert_eq!(inodes.get(f).unwrap().path, "h");
    }

    #[test]
    fn the_root_is_never_forgotten() {
        let mut inodes = Inodes::new(NAMESPACE);
        inodes.forget(ROOT, 100);
        assert_eq!(inodes.get(ROOT).unwrap().scheme, NAMESPACE);
    }
}
