//! Attributes of `ramfs:` nodes: the fstat `Stat`, fstatvfs (4096-byte blocks of the limit), and
//! changes with RedoxFS's owner-or-root rule (scheme.rs `fchmod`/`fchown`), judged by the
//! uid/gid that opened the handle since 0.5.18's calls carry none: fchmod, fchown (the owner may
//! change only the group), futimens (UTIME_NOW/UTIME_OMIT as in POSIX `utimensat`).

use syscall::{
    Error, Result, Stat, StatVfs, TimeSpec, EACCES, EINVAL, EPERM, MODE_PERM, MODE_SETGID,
    MODE_SETUID, MODE_TYPE,
};

use super::path::{permits, Caller, PERM_WRITE};
use super::scheme::RamFs;
use super::tree::{Node, NodeId, Time, BLOCK_SIZE};

/// `tv_nsec` meaning "set this time to now".
pub const UTIME_NOW: i32 = 0x3fff_ffff;
/// `tv_nsec` meaning "leave this time alone".
pub const UTIME_OMIT: i32 = 0x3fff_fffe;
/// `f_blocks` reported when there is no limit.
const UNLIMITED_BLOCKS: u64 = 1 << 30;

/// What futimens does with one of the two times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetTime {
    Omit,
    Now,
    At(Time),
}

impl SetTime {
    fn parse(spec: Option<&TimeSpec>) -> Result<SetTime> {
        let Some(spec) = spec else { return Ok(SetTime::Omit) };
        match spec.tv_nsec {
            UTIME_OMIT => Ok(SetTime::Omit),
            UTIME_NOW => Ok(SetTime::Now),
            nsec if (0..1_000_000_000).contains(&nsec) => {
                Ok(SetTime::At(Time { sec: spec.tv_sec, nsec: nsec as u32 }))
            }
            _ => Err(Error::new(EINVAL)),
        }
    }

    fn apply(self, time: &mut Time, now: Time) {
        match self {
            SetTime::Omit => {}
            SetTime::Now => *time = now,
            SetTime::At(at) => *time = at,
        }
    }
}

/// The `Stat` of `node`, whose id is `id` (`st_ino`). Times before 1970 are stored as the
/// two's complement of the negative seconds (`Stat` has only `u64`).
pub(super) fn stat_of(node: &Node, id: NodeId) -> Stat {
    let size = node.size();
    Stat {
        st_dev: 0,
        st_ino: id,
        st_mode: node.mode,
        st_nlink: node.nlink(),
        st_uid: node.uid,
        st_gid: node.gid,
        st_size: size,
        st_blksize: BLOCK_SIZE as u32,
        st_blocks: size.div_ceil(512),
        st_mtime: node.mtime.sec as u64,
        st_mtime_nsec: node.mtime.nsec,
        st_atime: node.atime.sec as u64,
        st_atime_nsec: node.atime.nsec,
        st_ctime: node.ctime.sec as u64,
        st_ctime_nsec: node.ctime.nsec,
    }
}

impl RamFs {
    /// Sets the permission bits (type bits kept); the owner or root only, else EPERM.
    pub(super) fn chmod_handle(&mut self, id: usize, mode: u16) -> Result<()> {
        let handle = self.lookup(id)?;
        let (caller, id) = (handle.caller, handle.node);
        let node = self.tree.node_mut(id);
        if !caller.owns(node) {
            return Err(Error::new(EPERM));
        }
        node.mode = (node.mode & MODE_TYPE) | (mode & MODE_PERM);
        node.touch_ctime();
        Ok(())
    }

    /// Changes the owner and/or group (`u32::MAX` = unchanged). Root may change both; the owner
    /// may change the group to any gid (group membership is unknown here) but not the owner.
    /// A non-root change of a regular file clears its set-user-ID and set-group-ID bits.
    pub(super) fn chown_handle(&mut self, id: usize, uid: u32, gid: u32) -> Result<()> {
        let handle = self.lookup(id)?;
        let (caller, id) = (handle.caller, handle.node);
        let node = self.tree.node_mut(id);
        let new_uid = (uid != u32::MAX).then_some(uid);
        let new_gid = (gid != u32::MAX).then_some(gid);
        if !caller.is_root() {
            if caller.uid != node.uid || new_uid.is_some_and(|uid| uid != node.uid) {
                return Err(Error::new(EPERM));
            }
            if !node.is_dir() && !node.is_symlink() {
                node.mode &= !(MODE_SETUID | MODE_SETGID);
            }
        }
        node.uid = new_uid.unwrap_or(node.uid);
        node.gid = new_gid.unwrap_or(node.gid);
        node.touch_ctime();
        Ok(())
    }

    /// futimens(`[atime, mtime]`): explicit times need the owner or root (EPERM); setting both
    /// to now also works with write permission (else EACCES). The ctime becomes now; omitting
    /// both changes nothing and always succeeds.
    pub(super) fn set_times(&mut self, id: usize, times: &[TimeSpec]) -> Result<()> {
        let handle = self.lookup(id)?;
        let (caller, id) = (handle.caller, handle.node);
        let atime = SetTime::parse(times.first())?;
        let mtime = SetTime::parse(times.get(1))?;
        if (atime, mtime) == (SetTime::Omit, SetTime::Omit) {
            return Ok(());
        }
        let node = self.tree.node_mut(id);
        check_times_allowed(node, caller, [atime, mtime])?;
        let now = Time::now();
        atime.apply(&mut node.atime, now);
        mtime.apply(&mut node.mtime, now);
        node.ctime = now;
        Ok(())
    }

    /// `f_bsize` 4096, `f_blocks` = limit / 4096 (2^30 when unlimited), free = the rest.
    pub(super) fn statvfs(&self) -> StatVfs {
        let blocks = self.tree.max_bytes().map_or(UNLIMITED_BLOCKS, |max| max / BLOCK_SIZE);
        let used = self.tree.used().div_ceil(BLOCK_SIZE);
        let free = blocks.saturating_sub(used);
        StatVfs { f_bsize: BLOCK_SIZE as u32, f_blocks: blocks, f_bfree: free, f_bavail: free }
    }
}

fn check_times_allowed(node: &Node, caller: Caller, times: [SetTime; 2]) -> Result<()> {
    if caller.owns(node) {
        return Ok(());
    }
    if times.iter().any(|time| matches!(time, SetTime::At(_))) {
        return Err(Error::new(EPERM));
    }
    if !permits(node, caller, PERM_WRITE) {
        return Err(Error::new(EACCES));
    }
    Ok(())
}
