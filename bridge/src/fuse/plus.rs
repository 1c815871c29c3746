//! READDIRPLUS -> a directory page with every entry's attributes, so `ls -l` needs no lookup
//! per entry. The entries' stats (each an `O_STAT` open, fstat and close) go to the daemon all
//! at once, so a page costs about what one stat costs; only the entries that fit in the
//! kernel's page are statted. The kernel links every entry with a node id, so each one counts
//! as a lookup; "." and ".." and entries without a node id (0) do not.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, PoisonError};

use fuser::{FileAttr, FileHandle, INodeNo, ReplyDirectoryPlus};
use scheme_protocol::Caller;
use scheme_protocol::Stat;

use super::attr::{self, synthetic_dir};
use super::dir::{self, Entry};
use super::inodes::Kind;
use super::shared::{FsResult, Shared};
use super::table::{SchemeFs, GENERATION, SYNTHETIC_FH};

/// The kernel asks for one page per READDIRPLUS.
const PAGE: usize = 4096;
/// `fuse_entry_out` and `fuse_dirent` before the name (`include/uapi/linux/fuse.h`).
const ENTRY_HEAD: usize = 128 + 24;

/// Bytes one entry takes in the reply (8-byte aligned).
fn plus_size(name: &str) -> usize {
    (ENTRY_HEAD + name.len() + 7) & !7
}

/// The first `entries` that fit in a page after `used` bytes.
fn fitting(mut entries: Vec<Entry>, mut used: usize) -> Vec<Entry> {
    let fit = entries
        .iter()
        .take_while(|entry| {
            used += plus_size(&entry.name);
            used <= PAGE
        })
        .count();
    entries.truncate(fit);
    entries
}

impl SchemeFs {
    /// One READDIRPLUS page of directory `ino` (open as `fh`) from FUSE `offset`.
    pub(crate) fn list_plus(
        &self,
        caller: Caller,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut used = 0;
        if offset < dir::AFTER_DOTDOT {
            let dots = [(".", dir::AFTER_DOT), ("..", dir::AFTER_DOTDOT)];
            let attr = synthetic_dir(ino.0, self.shared.owner);
            for (name, cookie) in dots.into_iter().skip(offset as usize) {
                if reply.add(ino, cookie, name, &std::time::Duration::ZERO, &attr, GENERATION) {
                    return reply.ok();
                }
                used += plus_size(name);
            }
        }
        let this = self.clone_ref();
        let stat_all = move |entries: FsResult<Vec<Entry>>| match entries {
            Ok(entries) => this.stat_and_fill(caller, ino, fitting(entries, used), reply),
            Err(err) => reply.error(err),
        };
        if fh.0 == SYNTHETIC_FH {
            return stat_all(Ok(self.namespace_entries(ino, offset)));
        }
        match self.handle(fh) {
            Ok(handle) => {
                self.entries(caller, handle, dir::cursor(offset).unwrap_or(0), PAGE, stat_all)
            }
            Err(err) => stat_all(Err(err)),
        }
    }

    /// Stats every entry (pipelined), then answers the page.
    fn stat_and_fill(
        &self,
        caller: Caller,
        dir: INodeNo,
        entries: Vec<Entry>,
        reply: ReplyDirectoryPlus,
    ) {
        let children: Vec<FsResult<(usize, String)>> =
            entries.iter().map(|entry| self.child(dir, OsStr::new(&entry.name))).collect();
        let targets: Vec<Option<(usize, String)>> =
            children.iter().map(|child| child.as_ref().ok().cloned()).collect();
        let shared = Arc::clone(&self.shared);
        let stats = Collect::new(entries.len(), move |stats| {
            fill_plus(&shared, reply, entries, children, stats);
        });
        for (index, target) in targets.into_iter().enumerate() {
            let Some((scheme, path)) = target else {
                stats.arrive(index, Err(fuser::Errno::ENOENT));
                continue;
            };
            let stats = Arc::clone(&stats);
            self.shared
                .stat_path_stable(scheme, caller, path, move |stat| stats.arrive(index, stat));
        }
    }
}

/// Adds each entry with its attributes until the page is full, counting the lookups.
fn fill_plus(
    shared: &Shared,
    mut reply: ReplyDirectoryPlus,
    entries: Vec<Entry>,
    children: Vec<FsResult<(usize, String)>>,
    stats: Vec<FsResult<Stat>>,
) {
    for ((entry, child), stat) in entries.into_iter().zip(children).zip(stats) {
        let (attr, kind) = match (child, stat) {
            (Ok((scheme, path)), Ok(stat)) => SchemeFs::count_lookup(shared, scheme, &path, &stat),
            (Ok((scheme, path)), Err(_)) if path.is_empty() => {
                // A scheme root that cannot be statted is still a directory of the mount.
                let ino = shared.inodes().lookup(scheme, "", Kind::Dir, 0);
                (synthetic_dir(ino, shared.owner), Kind::Dir)
            }
            // Gone since the listing, or not to be statted: no node id, so the kernel links
            // nothing (and a lookup by name reports why).
            _ => (without_node(shared, &entry), Kind::Stream),
        };
        let ttl = shared.ttl.entry.min(shared.ttl.attr_for(kind));
        if reply.add(attr.ino, entry.cookie, &entry.name, &ttl, &attr, GENERATION) {
            if attr.ino.0 != 0 {
                shared.inodes().forget(attr.ino.0, 1); // not sent, so not linked
            }
            break;
        }
    }
    reply.ok();
}

/// Attributes with node id 0, which the kernel does not link (and `readdir(3)` skips).
fn without_node(shared: &Shared, entry: &Entry) -> FileAttr {
    let mut attr = attr::from_stat(0, &Stat::default(), shared.owner);
    attr.kind = entry.kind;
    attr
}

/// Per-entry answers of pipelined calls, handed on in order once all are in.
struct Collect<T> {
    state: Mutex<CollectState<T>>,
}

/// Answers so far, how many are missing, and what runs when none is.
type CollectState<T> = (Vec<Option<T>>, usize, Option<Box<dyn FnOnce(Vec<T>) + Send>>);

impl<T: Send + 'static> Collect<T> {
    fn new(count: usize, finish: impl FnOnce(Vec<T>) + Send + 'static) -> Arc<Self> {
        let collect = Arc::new(Collect {
            state: Mutex::new(((0..count).map(|_| None).collect(), count, Some(Box::new(finish)))),
        });
        if count == 0 {
            collect.finish();
        }
        collect
    }

    fn arrive(&self, index: usize, value: T) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(slot) = state.0.get_mut(index) else { return }; // finished already
        if slot.replace(value).is_none() {
            state.1 -= 1;
        }
        let done = state.1 == 0;
        drop(state);
        if done {
            self.finish();
        }
    }

    fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(finish) = state.2.take() else { return };
        let values = std::mem::take(&mut state.0).into_iter().flatten().collect();
        drop(state);
        finish(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuser::FileType;

    fn entry(name: &str) -> Entry {
        Entry { inode: 1, name: name.to_owned(), kind: FileType::RegularFile, cookie: 9 }
    }

    #[test]
    fn only_entries_that_fit_in_the_page_are_kept() {
        assert_eq!(plus_size("a"), 160);
        assert_eq!(plus_size("12345678"), 160);
        assert_eq!(plus_size("123456789"), 168);
        let entries: Vec<Entry> = (0..100).map(|i| entry(&format!("f{i:03}"))).collect();
        assert_eq!(fitting(entries.clone(), 0).len(), PAGE / 160);
        assert_eq!(fitting(entries.clone(), 320).len(), (PAGE - 320) / 160);
        assert_eq!(fitting(entries[..3].to_vec(), 320).len(), 3);
    }

    #[test]
    fn collect_hands_on_every_answer_in_order_once() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        let collect = Collect::new(3, move |values: Vec<u32>| sink.lock().unwrap().push(values));
        collect.arrive(2, 30);
        collect.arrive(0, 10);
        assert!(got.lock().unwrap().is_empty());
        collect.arrive(1, 20);
        collect.arrive(1, 21); // a second answer for one index changes nothing
        assert_eq!(*got.lock().unwrap(), vec![vec![10, 20, 30]]);
        let empty = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&empty);
        Collect::new(0, move |values: Vec<u32>| *sink.lock().unwrap() = Some(values));
        assert_eq!(*empty.lock().unwrap(), Some(vec![]));
    }
}
