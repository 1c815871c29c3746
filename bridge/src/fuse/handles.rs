//! FUSE file handles -> daemon handles. Each FUSE open gets its own daemon handle (its own
//! Redox open file description); the table remembers the daemon's idea of the file position,
//! so a seek is sent only when the kernel's offset differs, and the poll handles to wake when
//! the daemon posts an event for that daemon handle.

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use fuser::PollNotifier;
use scheme_protocol::Fd;

use super::limits::HandleSlot;

/// One open FUSE file.
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) scheme: usize,
    pub(crate) fd: Fd,
    /// No position, no page cache: reads and writes go straight to the daemon.
    pub(crate) stream: bool,
    /// Opened with O_APPEND: the daemon places writes, never seek.
    pub(crate) append: bool,
    /// The kernel node it was opened through (0: none), whose attributes an fstat of this
    /// handle gives.
    pub(crate) ino: u64,
    io: Mutex<Io>,
    /// This file's place in its opener's quota, given back when the handle goes.
    _slot: HandleSlot,
}

/// The mutable part of a handle.
#[derive(Debug, Default)]
pub(crate) struct Io {
    /// Where the daemon's position is believed to be; `None` = unknown, seek first.
    pub(crate) pos: Option<u64>,
    /// The Redox flags the daemon handle has now (for `F_SETFL` when `O_NONBLOCK` changes).
    pub(crate) flags: usize,
    /// The latest kernel poll handle waiting for this file.
    pub(crate) poll: Option<PollNotifier>,
    /// For directories: listing with the legacy newline format (no getdents).
    pub(crate) legacy_listing: bool,
}

impl Handle {
    pub(crate) fn new(
        (scheme, fd): (usize, Fd),
        stream: bool,
        flags: usize,
        slot: HandleSlot,
    ) -> Handle {
        let append = flags & syscall::flag::O_APPEND != 0;
        let io = Io { pos: Some(0), flags, ..Io::default() };
        Handle { scheme, fd, stream, append, ino: 0, io: Mutex::new(io), _slot: slot }
    }

    /// The same handle, opened through kernel node `ino`.
    pub(crate) fn of_node(self, ino: u64) -> Handle {
        Handle { ino, ..self }
    }

    pub(crate) fn io(&self) -> MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// All open FUSE files, and an index from daemon handle to FUSE handles for events. Maps keyed
/// by numbers we hand out (FUSE handles, inode numbers) use the fast FxHash; the one keyed by
/// the daemon's handle ids keeps std's keyed hash, so a daemon cannot choose colliding ids.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    open: RwLock<FxHashMap<u64, Arc<Handle>>>,
    by_daemon_fd: Mutex<HashMap<(usize, Fd), HashSet<u64>>>,
    by_node: Mutex<FxHashMap<u64, HashSet<u64>>>,
    next: AtomicU64,
}

impl Handles {
    pub(crate) fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let key = (handle.scheme, handle.fd);
        let ino = handle.ino;
        self.open.write().unwrap_or_else(PoisonError::into_inner).insert(fh, Arc::new(handle));
        self.index().entry(key).or_default().insert(fh);
        if ino != 0 {
            self.nodes().entry(ino).or_default().insert(fh);
        }
        fh
    }

    pub(crate) fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.open.read().unwrap_or_else(PoisonError::into_inner).get(&fh).cloned()
    }

    pub(crate) fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        let handle = self.open.write().unwrap_or_else(PoisonError::into_inner).remove(&fh)?;
        let key = (handle.scheme, handle.fd);
        forget_in(&mut self.index(), &key, fh);
        forget_in(&mut self.nodes(), &handle.ino, fh);
        Some(handle)
    }

    /// Some open handle of kernel node `ino` that is the node's file itself, if any. A stream
    /// handle is not: opening a stream scheme's name makes a new object (a chan connection),
    /// whose stat is not the name's.
    pub(crate) fn any_file_of_node(&self, ino: u64) -> Option<Arc<Handle>> {
        let fhs: Vec<u64> = self.nodes().get(&ino).into_iter().flatten().copied().collect();
        fhs.into_iter().filter_map(|fh| self.get(fh)).find(|handle| !handle.stream)
    }

    /// The FUSE handles that use daemon handle `fd` of `scheme`.
    pub(crate) fn for_daemon_fd(&self, scheme: usize, fd: Fd) -> Vec<Arc<Handle>> {
        let fhs: Vec<u64> =
            self.index().get(&(scheme, fd)).into_iter().flatten().copied().collect();
        fhs.into_iter().filter_map(|fh| self.get(fh)).collect()
    }

    fn index(&self) -> MutexGuard<'_, HashMap<(usize, Fd), HashSet<u64>>> {
        self.by_daemon_fd.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nodes(&self) -> MutexGuard<'_, FxHashMap<u64, HashSet<u64>>> {
        self.by_node.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes `fh` from `key`'s set, and the set once empty.
fn forget_in<K: std::hash::Hash + Eq, S: std::hash::BuildHasher>(
    index: &mut HashMap<K, HashSet<u64>, S>,
    key: &K,
    fh: u64,
) {
    if let Some(set) = index.get_mut(key) {
        set.remove(&fh);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::{Counters, MountLimits};
    use super::*;

    #[test]
    fn a_node_is_answered_for_by_its_open_files_but_not_by_its_streams() {
        let counters = Counters::new(MountLimits::default());
        let handle = |fd: u64, stream: bool| {
            Handle::new((0, Fd(fd)), stream, 0, counters.handle(0).unwrap()).of_node(7)
        };
        let handles = Handles::default();
        let stream = handles.insert(handle(1, true));
        assert!(handles.any_file_of_node(7).is_none(), "a stream is not the node's file");
        let file = handles.insert(handle(2, false));
        let other = handles.insert(Handle::new((0, Fd(3)), false, 0, counters.handle(0).unwrap()));
        assert_eq!(handles.any_file_of_node(7).unwrap().fd, Fd(2));
        assert!(handles.any_file_of_node(0).is_none(), "handles of no node are not indexed");
        handles.remove(file);
        assert!(handles.any_file_of_node(7).is_none());
        handles.remove(stream);
        handles.remove(other);
        assert!(handles.nodes().is_empty() && handles.index().is_empty(), "indexes emptied");
    }
}
