//! Redox errno -> Linux errno, in one place. Redox numbers equal Linux's for 1..=131 except
//! `EWOULDBLOCK` (41, Linux 11) and `EDEADLOCK` (58, Linux 35); 132 (`ESKMSG`) is a protocol
//! message and never an error to show. A daemon's `ENOSYS` becomes `EOPNOTSUPP`: from a FUSE
//! reply, ENOSYS makes the kernel stop sending that operation for the whole mount.

use fuser::Errno as LinuxErrno;
use scheme_protocol::Errno;

use crate::client::CallError;

/// The highest Redox errno that means the same on Linux.
const LAST_SHARED: i32 = 131;

/// The Linux errno for a Redox errno the daemon answered.
pub(crate) fn to_linux(errno: Errno) -> LinuxErrno {
    match errno.0 {
        41 => LinuxErrno::EAGAIN,
        58 => LinuxErrno::from_i32(LINUX_EDEADLK),
        38 => LinuxErrno::EOPNOTSUPP,
        n @ 1..=LAST_SHARED => LinuxErrno::from_i32(n),
        _ => LinuxErrno::EIO,
    }
}

/// The Linux errno for a failed call: the daemon's errno, or EIO when the transport failed.
pub(crate) fn of(err: &CallError) -> LinuxErrno {
    to_linux(err.errno())
}

/// Linux `EDEADLK`, which `EDEADLOCK` aliases on Linux.
const LINUX_EDEADLK: i32 = 35;

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(redox: i32) -> i32 {
        i32::from(to_linux(Errno(redox)))
    }

    #[test]
    fn the_rows_that_differ() {
        assert_eq!(linux(41), 11, "EWOULDBLOCK is EAGAIN on Linux");
        assert_eq!(linux(58), 35, "EDEADLOCK is EDEADLK on Linux");
        assert_eq!(linux(132), 5, "ESKMSG is never shown");
        assert_eq!(linux(38), 95, "ENOSYS would switch the operation off");
    }

    #[test]
    fn unknown_values_are_eio() {
        for redox in [0, -1, 133, 4096, i32::MAX, i32::MIN] {
            assert_eq!(linux(redox), 5, "{redox}");
        }
    }

    #[test]
    fn shared_values_pass_through() {
        for redox in [1, 2, 4, 9, 11, 13, 17, 20, 21, 22, 28, 32, 39, 95, 111, 125, 131] {
            assert_eq!(linux(redox), redox);
        }
    }

    #[test]
    fn transport_failures_are_eio() {
        assert_eq!(i32::from(of(&CallError::Disconnected("gone".into()))), 5);
    }
}
