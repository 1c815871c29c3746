//! Redox `Stat` -> FUSE `FileAttr`. Directories, symlinks and regular files keep their type and
//! size; everything else (chan streams, devices, clocks) is shown as an empty regular file,
//! because for FIFOs and device nodes the kernel would serve the open itself and the daemon
//! would never see the reads.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use scheme_protocol::Stat;
use syscall::flag::{MODE_DIR, MODE_FILE, MODE_SYMLINK, MODE_TYPE};

use super::inodes::Kind;

/// Owner overrides from `-o uid=N,gid=N`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Owner {
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

/// The node kind a stat describes.
pub(crate) fn kind_of(stat: &Stat) -> Kind {
    match stat.st_mode & MODE_TYPE {
        MODE_DIR => Kind::Dir,
        MODE_SYMLINK => Kind::Symlink,
        MODE_FILE => Kind::File,
        _ => Kind::Stream,
    }
}

/// The attributes the kernel sees for `stat` at inode `ino`.
pub(crate) fn from_stat(ino: u64, stat: &Stat, owner: Owner) -> FileAttr {
    let kind = kind_of(stat);
    let (file_type, size, blocks) = match kind {
        Kind::Dir => (FileType::Directory, stat.st_size, stat.st_blocks),
        Kind::Symlink => (FileType::Symlink, stat.st_size, stat.st_blocks),
        Kind::File => (FileType::RegularFile, stat.st_size, stat.st_blocks),
        Kind::Stream => (FileType::RegularFile, 0, 0),
    };
    FileAttr {
        // fuser takes this as the FUSE node id too: it must be the bridge's inode number
        // (which is the daemon's st_ino where possible, see inodes.rs).
        ino: INodeNo(ino),
        size,
        blocks,
        atime: time(stat.st_atime, stat.st_atime_nsec),
        mtime: time(stat.st_mtime, stat.st_mtime_nsec),
        ctime: time(stat.st_ctime, stat.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: file_type,
        perm: stat.st_mode & 0o7777,
        nlink: stat.st_nlink.max(1),
        uid: owner.uid.unwrap_or(stat.st_uid),
        gid: owner.gid.unwrap_or(stat.st_gid),
        rdev: 0,
        blksize: if stat.st_blksize == 0 { 4096 } else { stat.st_blksize },
        flags: 0,
    }
}

/// The attributes of a directory the daemon cannot describe (a namespace root, or a scheme
/// root that is not a directory, like `zero:`).
pub(crate) fn synthetic_dir(ino: u64, owner: Owner) -> FileAttr {
    let stat = Stat { st_mode: MODE_DIR | 0o755, st_nlink: 2, ..Stat::default() };
    let mut attr = from_stat(ino, &stat, owner);
    attr.uid = owner.uid.unwrap_or_else(|| rustix::process::geteuid().as_raw());
    attr.gid = owner.gid.unwrap_or_else(|| rustix::process::getegid().as_raw());
    attr.atime = SystemTime::now();
    attr.mtime = attr.atime;
    attr.ctime = attr.atime;
    attr
}

fn time(secs: u64, nsecs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nsecs.min(999_999_999))
}

#[cfg(test)]
mod tests {
    use super::*;
    use syscall::flag::{MODE_CHR, MODE_SOCK};

    #[test]
    fn streams_are_empty_regular_files() {
        for mode in [MODE_SOCK | 0o666, MODE_CHR | 0o666, 0o644] {
            let stat = Stat { st_mode: mode, st_size: 99, st_blocks: 3, ..Stat::default() };
            let attr = from_stat(5, &stat, Owner::default());
            assert_eq!((attr.kind, attr.size, attr.blocks), (FileType::RegularFile, 0, 0));
            assert_eq!(kind_of(&stat), Kind::Stream);
        }
    }

    #[test]
    fn files_keep_size_times_and_the_given_node_id() {
        let stat = Stat {
            st_mode: MODE_FILE | 0o640,
            st_ino: 77,
            st_size: 12,
            st_mtime: 10,
            st_mtime_nsec: 5,
            st_uid: 3,
            ..Stat::default()
        };
        let attr = from_stat(5, &stat, Owner { uid: None, gid: Some(9) });
        assert_eq!(
            (attr.ino, attr.size, attr.perm, attr.uid, attr.gid),
            (INodeNo(5), 12, 0o640, 3, 9)
        );
        assert_eq!(attr.mtime, UNIX_EPOCH + Duration::new(10, 5));
    }
}
