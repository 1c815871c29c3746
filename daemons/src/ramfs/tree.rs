//! The node store of `ramfs:`: nodes (files, directories, symlinks) by id, directory entries
//! with per-directory insertion sequence numbers (the getdents cursor), link and open counts,
//! times and the byte quota. Like RedoxFS's tree, a node lives while it has a link or an open
//! handle (RedoxFS `remove_node` defers freeing to the last close); directories have exactly
//! one link, so each keeps its parent and name (RedoxFS keeps `parent` in every node).

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use syscall::{Error, Result, EFBIG, ENOSPC, MODE_DIR, MODE_FILE, MODE_SYMLINK, MODE_TYPE};

/// A node id; it is also the node's `st_ino`. Ids are never reused.
pub type NodeId = u64;

/// The root directory's id.
pub const ROOT: NodeId = 1;
/// `st_blksize` and the `fstatvfs` block size.
pub const BLOCK_SIZE: u64 = 4096;

/// A timestamp (seconds since the Unix epoch may be negative, as `touch -d 1960-01-01` sets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

impl Time {
    /// The current wall-clock time.
    pub fn now() -> Time {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => Time { sec: since.as_secs() as i64, nsec: since.subsec_nanos() },
            Err(_) => Time::default(),
        }
    }
}

/// A directory: its entries by name and in insertion order, and where it is linked.
#[derive(Debug)]
pub struct Dir {
    /// Name ⇒ (node, sequence number).
    entries: BTreeMap<String, (NodeId, u64)>,
    /// Sequence number ⇒ name; getdents walks this in order.
    order: BTreeMap<u64, String>,
    /// The next entry's sequence number (starts at 1, so cursor 0 means "from the start").
    next_seq: u64,
    /// Subdirectory count, for `st_nlink = 2 + subdirs`.
    subdirs: u32,
    /// The directory holding this one (the root is its own parent).
    pub parent: NodeId,
    /// This directory's name in `parent` ("" for the root).
    pub name: String,
}

impl Dir {
    fn new(parent: NodeId, name: &str) -> Dir {
        Dir {
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            next_seq: 1,
            subdirs: 0,
            parent,
            name: name.to_string(),
        }
    }

    /// The node linked as `name`.
    pub fn get(&self, name: &str) -> Option<NodeId> {
        self.entries.get(name).map(|&(node, _)| node)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries whose sequence number is greater than `seq`, in sequence order:
    /// `(sequence number, name, node)`.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = (u64, &str, NodeId)> + '_ {
        self.order
            .range(seq.saturating_add(1)..)
            .map(|(&seq, name)| (seq, name.as_str(), self.entries[name].0))
    }

    fn insert(&mut self, name: &str, node: NodeId, is_dir: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(name.to_string(), (node, seq));
        self.order.insert(seq, name.to_string());
        if is_dir {
            self.subdirs += 1;
        }
    }

    fn remove(&mut self, name: &str, is_dir: bool) -> Option<NodeId> {
        let (node, seq) = self.entries.remove(name)?;
        self.order.remove(&seq);
        if is_dir {
            self.subdirs -= 1;
        }
        Some(node)
    }
}

/// What a node holds.
#[derive(Debug)]
pub enum Content {
    File(Vec<u8>),
    /// The link target's bytes.
    Symlink(Vec<u8>),
    Dir(Dir),
}

/// A file, directory or symlink.
#[derive(Debug)]
pub struct Node {
    /// Type bits | permission bits (`MODE_* | 0o7777`).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    /// Directory entries naming this node (0 or 1 for directories).
    pub links: u32,
    /// Open handles on this node.
    pub open: u32,
    pub content: Content,
}

impl Node {
    fn new(content: Content, perm: u16, uid: u32, gid: u32) -> Node {
        let kind = match content {
            Content::File(_) => MODE_FILE,
            Content::Symlink(_) => MODE_SYMLINK,
            Content::Dir(_) => MODE_DIR,
        };
        let now = Time::now();
        Node {
            mode: kind | (perm & !MODE_TYPE),
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            links: 0,
            open: 0,
            content,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir(_))
    }

    pub fn is_symlink(&self) -> bool {
        matches!(self.content, Content::Symlink(_))
    }

    pub fn dir(&self) -> Option<&Dir> {
        match &self.content {
            Content::Dir(dir) => Some(dir),
            _ => None,
        }
    }

    /// The bytes of a file or a symlink's target; `None` for a directory.
    pub fn data(&self) -> Option<&[u8]> {
        match &self.content {
            Content::File(data) | Content::Symlink(data) => Some(data),
            Content::Dir(_) => None,
        }
    }

    fn data_mut(&mut self) -> Option<&mut Vec<u8>> {
        match &mut self.content {
            Content::File(data) | Content::Symlink(data) => Some(data),
            Content::Dir(_) => None,
        }
    }

    /// `st_size`: data length for files and symlinks, 0 for directories.
    pub fn size(&self) -> u64 {
        self.data().map_or(0, |data| data.len() as u64)
    }

    /// `st_nlink`: links for files; 2 + subdirectories for a linked directory, 0 once removed.
    pub fn nlink(&self) -> u32 {
        match &self.content {
            Content::Dir(dir) if self.links > 0 => 2 + dir.subdirs,
            _ => self.links,
        }
    }

    /// Marks a change of the node's attributes.
    pub fn touch_ctime(&mut self) {
        self.ctime = Time::now();
    }

    fn touch_modified(&mut self) {
        let now = Time::now();
        self.mtime = now;
        self.ctime = now;
    }
}

/// The kind of node [`Tree::create`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// All nodes, and the bytes of file and symlink data they hold against the optional limit.
#[derive(Debug)]
pub struct Tree {
    nodes: HashMap<NodeId, Node>,
    next_id: NodeId,
    used: u64,
    max: Option<u64>,
}

impl Tree {
    /// A tree holding only the root directory (`0o755`, owned by root).
    pub fn new(max_bytes: Option<u64>) -> Tree {
        let mut root = Node::new(Content::Dir(Dir::new(ROOT, "")), 0o755, 0, 0);
        root.links = 1;
        let nodes = HashMap::from([(ROOT, root)]);
        Tree { nodes, next_id: ROOT + 1, used: 0, max: max_bytes }
    }

    /// Bytes of file and symlink data held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The data limit, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max
    }

    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id)
    }

    /// A node that must exist (ids held by handles and entries always do).
    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes.get(&id).expect("ramfs: live node id")
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("ramfs: live node id")
    }

    fn dir_mut(&mut self, id: NodeId) -> &mut Dir {
        match &mut self.node_mut(id).content {
            Content::Dir(dir) => dir,
            _ => panic!("ramfs: node {id} is not a directory"),
        }
    }

    /// Creates a node and links it as `name` in directory `dir`.
    pub fn create(
        &mut self,
        dir: NodeId,
        name: &str,
        kind: Kind,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> NodeId {
        let id = self.next_id;
        self.next_id += 1;
        let content = match kind {
            Kind::File => Content::File(Vec::new()),
            Kind::Symlink => Content::Symlink(Vec::new()),
            Kind::Dir => Content::Dir(Dir::new(dir, name)),
        };
        self.nodes.insert(id, Node::new(content, perm, uid, gid));
        self.link(dir, name, id);
        id
    }

    /// Adds the entry `name` ⇒ `node` to `dir` (which must not have it): the node gains a
    /// link and its ctime; the directory's mtime and ctime change. A directory node records
    /// its new place.
    pub fn link(&mut self, dir: NodeId, name: &str, node: NodeId) {
        let target = self.node_mut(node);
        target.links += 1;
        target.touch_ctime();
        let is_dir = match &mut target.content {
            Content::Dir(moved) => {
                moved.parent = dir;
                moved.name = name.to_string();
                true
            }
            _ => false,
        };
        self.dir_mut(dir).insert(name, node, is_dir);
        self.node_mut(dir).touch_modified();
    }

    /// Removes the entry `name` from `dir`: the node loses a link (and is freed if that was
    /// its last link and no handle has it open). Returns the node it named.
    pub fn unlink(&mut self, dir: NodeId, name: &str) -> Option<NodeId> {
        let node = self.node(self.node(dir).dir()?.get(name)?);
        let is_dir = node.is_dir();
        let id = self.dir_mut(dir).remove(name, is_dir)?;
        self.node_mut(dir).touch_modified();
        let target = self.node_mut(id);
        target.links -= 1;
        target.touch_ctime();
        self.free_if_unused(id);
        Some(id)
    }

    /// Counts an open handle on `id`.
    pub fn open(&mut self, id: NodeId) {
        self.node_mut(id).open += 1;
    }

    /// Drops an open handle on `id`, freeing the node if it was the last reference.
    pub fn close(&mut self, id: NodeId) {
        self.node_mut(id).open -= 1;
        self.free_if_unused(id);
    }

    fn free_if_unused(&mut self, id: NodeId) {
        let node = self.node(id);
        if node.links == 0 && node.open == 0 && id != ROOT {
            self.used -= node.size();
            self.nodes.remove(&id);
        }
    }

    /// Copies data at `offset` into `buf`; returns the bytes copied (0 at or past the end).
    pub fn read_at(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> usize {
        let data = self.node(id).data().unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        let len = buf.len().min(data.len() - start);
        buf[..len].copy_from_slice(&data[start..start + len]);
        len
    }

    /// Writes `bytes` at `offset` (zero-filling any gap); all or nothing (ENOSPC, EFBIG).
    pub fn write_at(&mut self, id: NodeId, offset: u64, bytes: &[u8]) -> Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        let start = usize::try_from(offset).map_err(|_| Error::new(EFBIG))?;
        let end = start.checked_add(bytes.len()).ok_or(Error::new(EFBIG))?;
        self.charge(id, end)?;
        let node = self.node_mut(id);
        let data = node.data_mut().expect("ramfs: write to a directory");
        // What overwrites bytes the file has, and what goes after its end: appended bytes are
        // copied once, not zero-filled first.
        let (over, after) = bytes.split_at(data.len().saturating_sub(start).min(bytes.len()));
        if start > data.len() {
            data.resize(start, 0); // the gap reads as zeros
        }
        data[start..start + over.len()].copy_from_slice(over);
        data.extend_from_slice(after);
        node.touch_modified();
        Ok(bytes.len())
    }

    /// Sets the data length (growing adds zeros); all or nothing (ENOSPC, EFBIG).
    pub fn set_len(&mut self, id: NodeId, len: u64) -> Result<()> {
        let len = usize::try_from(len).map_err(|_| Error::new(EFBIG))?;
        let old_len = self.node(id).size() as usize;
        if len > old_len {
            self.grow(id, len)?;
        } else {
            let data = self.node_mut(id).data_mut().expect("ramfs: truncate of a directory");
            data.truncate(len);
            if len < data.capacity() / 4 {
                data.shrink_to_fit();
            }
            self.used -= (old_len - len) as u64;
        }
        self.node_mut(id).touch_modified();
        Ok(())
    }

    /// Extends the data of `id` to `len` (≥ its length) with zeros, within the limit.
    fn grow(&mut self, id: NodeId, len: usize) -> Result<()> {
        self.charge(id, len)?;
        let data = self.node_mut(id).data_mut().expect("ramfs: write to a directory");
        data.resize(len, 0);
        Ok(())
    }

    /// Makes room for the data of `id` to reach `len` bytes, within the limit, and counts the
    /// bytes beyond its length as used; the caller then fills them.
    fn charge(&mut self, id: NodeId, len: usize) -> Result<()> {
        let old_len = self.node(id).size() as usize;
        let extra = len.saturating_sub(old_len);
        let total = self.used.checked_add(extra as u64).ok_or(Error::new(ENOSPC))?;
        if self.max.is_some_and(|max| total > max) {
            return Err(Error::new(ENOSPC));
        }
        let data = self.node_mut(id).data_mut().expect("ramfs: write to a directory");
        data.try_reserve(extra).map_err(|_| Error::new(ENOSPC))?;
        self.used = total;
        Ok(())
    }

    /// Whether `ancestor` is `id` or one of the directories above it.
    pub fn is_ancestor(&self, ancestor: NodeId, mut id: NodeId) -> bool {
        loop {
            if id == ancestor {
                return true;
            }
            match self.get(id).and_then(Node::dir) {
                Some(dir) if id != ROOT => id = dir.parent,
                _ => return false,
            }
        }
    }

    /// The scheme-relative path of directory `id` ("" for the root, else "a/b").
    /// Best effort for a removed directory (its old place, as far as it still exists).
    pub fn dir_path(&self, mut id: NodeId) -> String {
        let mut names = Vec::new();
        while id != ROOT {
            let Some(dir) = self.get(id).and_then(Node::dir) else { break };
            names.push(dir.name.as_str());
            id = dir.parent;
        }
        names.reverse();
        names.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tree: &Tree, dir: NodeId, after: u64) -> Vec<String> {
        tree.node(dir).dir().unwrap().after(after).map(|(_, name, _)| name.to_string()).collect()
    }

    #[test]
    fn root_is_a_linked_directory_with_id_1() {
        let tree = Tree::new(None);
        let root = tree.node(ROOT);
        assert_eq!((root.mode, root.nlink(), root.links), (MODE_DIR | 0o755, 2, 1));
    }

    #[test]
    fn entries_come_in_insertion_order_after_a_cursor() {
        let mut tree = Tree::new(None);
        for name in ["c", "a", "b"] {
            tree.create(ROOT, name, Kind::File, 0o644, 0, 0);
        }
        assert_eq!(names(&tree, ROOT, 0), ["c", "a", "b"]);
        assert_eq!(names(&tree, ROOT, 1), ["a", "b"]);
        tree.unlink(ROOT, "a");
        tree.create(ROOT, "a", Kind::File, 0o644, 0, 0);
        assert_eq!(names(&tree, ROOT, 1), ["b", "a"]);
    }

    #[test]
    fn directory_nlink_counts_subdirectories() {
        let mut tree = Tree::new(None);
        let dir = tree.create(ROOT, "d", Kind::Dir, 0o755, 0, 0);
        tree.create(dir, "sub", Kind::Dir, 0o755, 0, 0);
        tree.create(dir, "file", Kind::File, 0o644, 0, 0);
        assert_eq!(tree.node(dir).nlink(), 3);
        assert_eq!(tree.node(ROOT).nlink(), 3);
        tree.unlink(dir, "sub");
        assert_eq!(tree.node(dir).nlink(), 2);
    }

    #[test]
    fn a_node_lives_until_its_last_link_and_handle_go() {
        let mut tree = Tree::new(None);
        let file = tree.create(ROOT, "f", Kind::File, 0o644, 0, 0);
        tree.write_at(file, 0, b"data").unwrap();
        tree.open(file);
        tree.unlink(ROOT, "f");
        assert_eq!(tree.node(file).size(), 4);
        assert_eq!(tree.used(), 4);
        tree.close(file);
        assert!(tree.get(file).is_none());
        assert_eq!(tree.used(), 0);
    }

    #[test]
    fn writes_overwrite_inside_across_and_after_the_end() {
        let mut tree = Tree::new(Some(16));
        let file = tree.create(ROOT, "f", Kind::File, 0o644, 0, 0);
        tree.write_at(file, 0, b"abcdef").unwrap(); // append to empty
        tree.write_at(file, 1, b"XY").unwrap(); // inside
        tree.write_at(file, 4, b"1234").unwrap(); // across the end
        tree.write_at(file, 8, b"z").unwrap(); // exactly at the end
        assert_eq!(tree.node(file).data().unwrap(), b"aXYd1234z");
        assert_eq!(tree.used(), 9);
        tree.write_at(file, 12, b"!").unwrap(); // past the end: a gap of zeros
        assert_eq!(tree.node(file).data().unwrap(), b"aXYd1234z\0\0\0!");
        assert_eq!(tree.used(), 13);
        assert_eq!(tree.write_at(file, 10, b"12345678"), Err(Error::new(ENOSPC)));
        assert_eq!(tree.node(file).data().unwrap().len(), 13, "a refused write changes nothing");
    }

    #[test]
    fn writes_fill_gaps_with_zeros_and_respect_the_limit() {
        let mut tree = Tree::new(Some(8));
        let file = tree.create(ROOT, "f", Kind::File, 0o644, 0, 0);
        tree.write_at(file, 2, b"ab").unwrap();
        assert_eq!(tree.node(file).data().unwrap(), b"\0\0ab");
        assert_eq!(tree.write_at(file, 4, b"12345"), Err(Error::new(ENOSPC)));
        assert_eq!(tree.node(file).data().unwrap(), b"\0\0ab");
        tree.set_len(file, 8).unwrap();
        assert_eq!(tree.set_len(file, 9), Err(Error::new(ENOSPC)));
        tree.set_len(file, 1).unwrap();
        assert_eq!(tree.used(), 1);
    }

    #[test]
    fn reads_past_the_end_return_nothing() {
        let mut tree = Tree::new(None);
        let file = tree.create(ROOT, "f", Kind::File, 0o644, 0, 0);
        tree.write_at(file, 0, b"abc").unwrap();
        let mut buf = [0; 8];
        assert_eq!(tree.read_at(file, 1, &mut buf), 2);
        assert_eq!(&buf[..2], b"bc");
        assert_eq!(tree.read_at(file, 3, &mut buf), 0);
        assert_eq!(tree.read_at(file, u64::MAX, &mut buf), 0);
    }

    #[test]
    fn ancestry_and_paths_follow_parent_links() {
        let mut tree = Tree::new(None);
        let a = tree.create(ROOT, "a", Kind::Dir, 0o755, 0, 0);
        let b = tree.create(a, "b", Kind::Dir, 0o755, 0, 0);
        assert_eq!(tree.dir_path(b), "a/b");
        assert_eq!(tree.dir_path(ROOT), "");
        assert!(tree.is_ancestor(a, b) && tree.is_ancestor(b, b) && tree.is_ancestor(ROOT, b));
        assert!(!tree.is_ancestor(b, a));
    }
}
