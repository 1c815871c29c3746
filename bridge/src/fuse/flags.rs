//! Linux open flags -> Redox open flags, bit by bit (every bit has a different value), and the
//! mode, which rides in the low 16 bits of the Redox flags on create and mkdir.

use syscall::flag as redox;

/// Linux x86_64 `O_*` values (`asm-generic/fcntl.h`).
mod linux {
    pub(super) const O_ACCMODE: i32 = 0o3;
    pub(super) const O_WRONLY: i32 = 0o1;
    pub(super) const O_RDWR: i32 = 0o2;
    pub(super) const O_CREAT: i32 = 0o100;
    pub(super) const O_EXCL: i32 = 0o200;
    pub(super) const O_TRUNC: i32 = 0o1000;
    pub(super) const O_APPEND: i32 = 0o2000;
    pub(super) const O_NONBLOCK: i32 = 0o4000;
    pub(super) const O_DSYNC: i32 = 0o10000;
    pub(super) const O_ASYNC: i32 = 0o20000;
    pub(super) const O_DIRECTORY: i32 = 0o200000;
    pub(super) const O_NOFOLLOW: i32 = 0o400000;
    pub(super) const O_PATH: i32 = 0o10000000;
}

/// Bits that map one to one.
const SAME_MEANING: [(i32, usize); 8] = [
    (linux::O_CREAT, redox::O_CREAT),
    (linux::O_EXCL, redox::O_EXCL),
    (linux::O_TRUNC, redox::O_TRUNC),
    (linux::O_APPEND, redox::O_APPEND),
    (linux::O_NONBLOCK, redox::O_NONBLOCK),
    (linux::O_ASYNC, redox::O_ASYNC),
    (linux::O_DIRECTORY, redox::O_DIRECTORY),
    (linux::O_NOFOLLOW, redox::O_NOFOLLOW),
];

/// The Redox flags for a Linux `open(2)` flag word. `O_SYNC`/`O_DSYNC` become `O_FSYNC`,
/// `O_PATH` becomes `O_STAT`; bits with no Redox meaning (`O_CLOEXEC`, `O_NOCTTY`,
/// `O_LARGEFILE`, `O_DIRECT`, `O_NOATIME`) are dropped: the kernel handles them.
pub(crate) fn to_redox(flags: i32) -> usize {
    let access = match flags & linux::O_ACCMODE {
        linux::O_WRONLY => redox::O_WRONLY,
        linux::O_RDWR => redox::O_RDWR,
        _ => redox::O_RDONLY,
    };
    let mut out = if flags & linux::O_PATH != 0 { redox::O_STAT } else { access };
    for (linux_bit, redox_bit) in SAME_MEANING {
        if flags & linux_bit != 0 {
            out |= redox_bit;
        }
    }
    if flags & linux::O_DSYNC != 0 {
        out |= redox::O_FSYNC;
    }
    out
}

/// `flags` with the permission bits of `mode` (after `umask`) in the low 16 bits, as relibc
/// sends them for `open(O_CREAT)` and `mkdir` (the file type bits are not sent).
pub(crate) fn with_mode(flags: usize, mode: u32, umask: u32) -> usize {
    (flags & !0xFFFF) | (mode & !umask & 0o7777) as usize
}

/// Whether a Linux flag word asks for non-blocking I/O.
pub(crate) fn is_nonblocking(flags: i32) -> bool {
    flags & linux::O_NONBLOCK != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_modes() {
        assert_eq!(to_redox(0), redox::O_RDONLY);
        assert_eq!(to_redox(1), redox::O_WRONLY);
        assert_eq!(to_redox(2), redox::O_RDWR);
    }

    #[test]
    fn every_bit_moves() {
        let all = 2 | 0o100 | 0o200 | 0o1000 | 0o2000 | 0o4000 | 0o20000 | 0o200000 | 0o400000;
        let expected = redox::O_RDWR
            | redox::O_CREAT
            | redox::O_EXCL
            | redox::O_TRUNC
            | redox::O_APPEND
            | redox::O_NONBLOCK
            | redox::O_ASYNC
            | redox::O_DIRECTORY
            | redox::O_NOFOLLOW;
        assert_eq!(to_redox(all), expected);
    }

    #[test]
    fn sync_path_and_dropped_bits() {
        assert_eq!(to_redox(0o4010000), redox::O_RDONLY | redox::O_FSYNC, "O_SYNC");
        assert_eq!(to_redox(0o10000000), redox::O_STAT, "O_PATH");
        let cloexec_noctty_largefile_direct_noatime =
            0o2000000 | 0o400 | 0o100000 | 0o40000 | 0o1000000;
        assert_eq!(to_redox(cloexec_noctty_largefile_direct_noatime), redox::O_RDONLY);
    }

    #[test]
    fn mode_rides_in_the_low_bits() {
        let flags = redox::O_CREAT | redox::O_RDWR;
        assert_eq!(with_mode(flags, 0o100666, 0o022), flags | 0o644);
        assert_eq!(with_mode(flags | 0o777, 0o600, 0), flags | 0o600);
    }
}
