//! Attributes: fchmod, fchown, futimens with RedoxFS's owner-or-root checks (by the handle's
//! opener), and which times each operation changes.

use syscall::{
    SchemeMut, TimeSpec, EACCES, EINVAL, EPERM, MODE_DIR, MODE_FILE, O_RDONLY, O_STAT, O_WRONLY,
};

use super::*;
use crate::ramfs::attr::{UTIME_NOW, UTIME_OMIT};

fn spec(tv_sec: i64, tv_nsec: i32) -> TimeSpec {
    TimeSpec { tv_sec, tv_nsec }
}

/// A file "f" owned by ALICE with mode 0o644, and a stat-only handle on it opened by `who`.
fn alices_file(fs: &mut RamFs, who: (u32, u32)) -> usize {
    let id = create_as(fs, ROOT, "f", 0o644).unwrap();
    fs.fchown(id, ALICE.0, ALICE.1).unwrap();
    open_as(fs, who, "f", O_STAT).unwrap()
}

#[test]
fn fchmod_by_the_owner_or_root_keeps_the_type() {
    let mut fs = fs();
    let alice = alices_file(&mut fs, ALICE);
    let bob = open_as(&mut fs, BOB, "f", O_STAT).unwrap();
    let root = open_as(&mut fs, ROOT, "f", O_STAT).unwrap();
    assert_eq!(fs.fchmod(alice, 0o4600 | MODE_DIR), Ok(0));
    assert_eq!(fstat(&mut fs, alice).st_mode, MODE_FILE | 0o4600);
    assert_eq!(fs.fchmod(bob, 0o777), err(EPERM));
    assert_eq!(fs.fchmod(root, 0o751), Ok(0));
    assert_eq!(fstat(&mut fs, bob).st_mode, MODE_FILE | 0o751);
}

#[test]
fn fchmod_changes_only_the_ctime() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "f", 0o644).unwrap();
    let before = fstat(&mut fs, id);
    std::thread::sleep(std::time::Duration::from_millis(2));
    fs.fchmod(id, 0o600).unwrap();
    let after = fstat(&mut fs, id);
    assert_eq!((after.st_mtime, after.st_mtime_nsec), (before.st_mtime, before.st_mtime_nsec));
    assert_ne!((after.st_ctime, after.st_ctime_nsec), (before.st_ctime, before.st_ctime_nsec));
}

#[test]
fn fchown_root_changes_both_and_max_means_unchanged() {
    let mut fs = fs();
    let root = alices_file(&mut fs, ROOT);
    assert_eq!(fs.fchown(root, 7, u32::MAX), Ok(0));
    let stat = fstat(&mut fs, root);
    assert_eq!((stat.st_uid, stat.st_gid), (7, ALICE.1));
    fs.fchown(root, u32::MAX, 9).unwrap();
    let stat = fstat(&mut fs, root);
    assert_eq!((stat.st_uid, stat.st_gid), (7, 9));
}

#[test]
fn fchown_the_owner_may_change_only_the_group() {
    let mut fs = fs();
    let alice = alices_file(&mut fs, ALICE);
    fs.fchmod(alice, 0o6755).unwrap();
    assert_eq!(fs.fchown(alice, u32::MAX, 4242), Ok(0));
    let stat = fstat(&mut fs, alice);
    assert_eq!((stat.st_uid, stat.st_gid, stat.st_mode), (ALICE.0, 4242, MODE_FILE | 0o755));
    assert_eq!(fs.fchown(alice, ALICE.0, u32::MAX), Ok(0), "to itself");
    assert_eq!(fs.fchown(alice, BOB.0, u32::MAX), err(EPERM));
    let bob = open_as(&mut fs, BOB, "f", O_STAT).unwrap();
    assert_eq!(fs.fchown(bob, u32::MAX, BOB.1), err(EPERM));
}

#[test]
fn futimens_sets_explicit_times_for_the_owner() {
    let mut fs = fs();
    let alice = alices_file(&mut fs, ALICE);
    assert_eq!(fs.futimens(alice, &[spec(1000, 5), spec(-86400, 999_999_999)]), Ok(0));
    let stat = fstat(&mut fs, alice);
    assert_eq!((stat.st_atime, stat.st_atime_nsec), (1000, 5));
    assert_eq!((stat.st_mtime as i64, stat.st_mtime_nsec), (-86400, 999_999_999));
    assert!(stat.st_ctime > 1_600_000_000);
    assert_eq!(fs.futimens(alice, &[spec(0, 1_000_000_000)]), err(EINVAL));
}

#[test]
fn futimens_omit_and_now() {
    let mut fs = fs();
    let alice = alices_file(&mut fs, ALICE);
    fs.futimens(alice, &[spec(1, 0), spec(2, 0)]).unwrap();
    fs.futimens(alice, &[spec(0, UTIME_OMIT), spec(0, UTIME_NOW)]).unwrap();
    let stat = fstat(&mut fs, alice);
    assert_eq!(stat.st_atime, 1);
    assert!(stat.st_mtime > 1_600_000_000);
    fs.futimens(alice, &[spec(5, 0)]).unwrap();
    let stat = fstat(&mut fs, alice);
    assert_eq!(stat.st_atime, 5);
    assert!(stat.st_mtime > 1_600_000_000, "a missing mtime is omitted");
}

#[test]
fn futimens_others_may_only_touch_to_now_with_write_permission() {
    let mut fs = fs();
    let bob = alices_file(&mut fs, BOB);
    let now = [spec(0, UTIME_NOW), spec(0, UTIME_NOW)];
    assert_eq!(fs.futimens(bob, &[spec(1, 0), spec(1, 0)]), err(EPERM));
    assert_eq!(fs.futimens(bob, &now), err(EACCES));
    assert_eq!(fs.futimens(bob, &[spec(0, UTIME_OMIT), spec(0, UTIME_OMIT)]), Ok(0));
    let root = open(&mut fs, "f", O_STAT).unwrap();
    fs.fchmod(root, 0o666).unwrap();
    assert_eq!(fs.futimens(bob, &now), Ok(0));
    assert_eq!(fs.futimens(bob, &[spec(1, 0), spec(0, UTIME_NOW)]), err(EPERM));
}

#[test]
fn entry_changes_touch_the_parent_and_node_ctime() {
    let mut fs = fs();
    mkdir(&mut fs, "d");
    let dir = open(&mut fs, "d", O_RDONLY).unwrap();
    let old = [spec(1, 0), spec(1, 0)];
    fs.futimens(dir, &old).unwrap();
    write_file(&mut fs, "d/f", b"");
    assert!(fstat(&mut fs, dir).st_mtime > 1);
    fs.futimens(dir, &old).unwrap();
    fs.unlink("d/f", 0, 0).unwrap();
    let stat = fstat(&mut fs, dir);
    assert!(stat.st_mtime > 1 && stat.st_ctime > 1);
    let file = create_as(&mut fs, ROOT, "g", 0o644).unwrap();
    fs.futimens(file, &old).unwrap();
    let writer = open(&mut fs, "g", O_WRONLY).unwrap();
    fs.write(writer, b"x").unwrap();
    let stat = fstat(&mut fs, file);
    assert!(stat.st_mtime > 1 && stat.st_atime == 1);
}
