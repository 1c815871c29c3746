//! open: creation, O_EXCL, O_TRUNC, O_DIRECTORY, O_STAT, symlinks (O_SYMLINK, O_NOFOLLOW, ELOOP)
//! and the permission checks RedoxFS makes on every open (search on parents, read/write bits).

use syscall::{
    SchemeMut, EACCES, EBADF, EEXIST, EINVAL, EISDIR, ELOOP, ENOENT, ENOTDIR, MODE_DIR, MODE_FILE,
    MODE_SYMLINK, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_RDWR, O_STAT, O_SYMLINK,
    O_TRUNC, O_WRONLY,
};

use super::*;

#[test]
fn o_creat_makes_a_file_with_the_flags_mode_and_the_callers_identity() {
    let mut fs = fs();
    mkdir_as(&mut fs, ROOT, "home", 0o777).unwrap();
    let id = open_as(&mut fs, (1000, 100), "home/f", O_CREAT | O_WRONLY | 0o640).unwrap();
    let stat = fstat(&mut fs, id);
    assert_eq!(stat.st_mode, MODE_FILE | 0o640);
    assert_eq!((stat.st_uid, stat.st_gid, stat.st_nlink, stat.st_size), (1000, 100, 1, 0));
    assert!(stat.st_ino > 1);
}

#[test]
fn a_created_file_is_open_as_asked_whatever_its_mode() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "ro", 0o444).unwrap();
    assert_eq!(fs.write(id, b"x"), Ok(1));
}

#[test]
fn o_creat_opens_an_existing_file_and_o_excl_refuses_it() {
    let mut fs = fs();
    write_file(&mut fs, "f", b"keep");
    let id = open(&mut fs, "f", O_CREAT | O_RDONLY).unwrap();
    assert_eq!(read_all(&mut fs, id), b"keep");
    assert_eq!(open(&mut fs, "f", O_CREAT | O_EXCL | O_RDWR), err(EEXIST));
}

#[test]
fn o_creat_o_directory_is_mkdir() {
    let mut fs = fs();
    mkdir_as(&mut fs, ROOT, "d", 0o750).unwrap();
    assert_eq!(lstat(&mut fs, "d").unwrap().st_mode, MODE_DIR | 0o750);
    assert_eq!(mkdir_as(&mut fs, ROOT, "d", 0o750), err(EEXIST));
    assert_eq!(open(&mut fs, "d", O_CREAT | O_DIRECTORY), err(EEXIST));
    write_file(&mut fs, "f", b"");
    assert_eq!(mkdir_as(&mut fs, ROOT, "f", 0o755), err(EEXIST));
    assert_eq!(mkdir_as(&mut fs, ROOT, "", 0o755), err(EEXIST));
}

#[test]
fn missing_paths_and_parents() {
    let mut fs = fs();
    write_file(&mut fs, "f", b"");
    assert_eq!(open(&mut fs, "nope", O_RDONLY), err(ENOENT));
    assert_eq!(open(&mut fs, "nope/x", O_CREAT | O_RDWR), err(ENOENT));
    assert_eq!(open(&mut fs, "f/x", O_CREAT | O_RDWR), err(ENOTDIR));
    assert_eq!(open(&mut fs, "f/x", O_RDONLY), err(ENOTDIR));
}

#[test]
fn directory_flags_and_write_access() {
    let mut fs = fs();
    mkdir(&mut fs, "d");
    write_file(&mut fs, "f", b"");
    assert_eq!(open(&mut fs, "f", O_RDONLY | O_DIRECTORY), err(ENOTDIR));
    assert_eq!(open(&mut fs, "d", O_WRONLY), err(EISDIR));
    assert_eq!(open(&mut fs, "d", O_RDWR | O_DIRECTORY), err(EISDIR));
    assert_eq!(open(&mut fs, "d", O_CREAT | O_RDONLY), err(EISDIR));
    assert!(open(&mut fs, "d", O_RDONLY | O_DIRECTORY).is_ok());
    assert!(open(&mut fs, "/d/", O_RDONLY).is_ok());
}

#[test]
fn o_trunc_empties_a_file_and_needs_write_permission() {
    let mut fs = fs();
    write_file(&mut fs, "f", b"data");
    let id = open(&mut fs, "f", O_WRONLY | O_TRUNC).unwrap();
    assert_eq!(fstat(&mut fs, id).st_size, 0);
    write_file(&mut fs, "g", b"data");
    assert_eq!(open_as(&mut fs, ALICE, "g", O_RDONLY | O_TRUNC), err(EACCES));
    assert_eq!(contents(&mut fs, "g"), b"data");
}

#[test]
fn o_stat_handles_need_no_access_but_cannot_read_or_write() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "secret", 0o000).unwrap();
    fs.write(id, b"hidden").unwrap();
    let stat_id = open_as(&mut fs, ALICE, "secret", O_STAT).unwrap();
    assert_eq!(fstat(&mut fs, stat_id).st_size, 6);
    let mut buf = [0; 8];
    assert_eq!(fs.read(stat_id, &mut buf), err(EBADF));
    assert_eq!(fs.write(stat_id, b"x"), err(EBADF));
    assert_eq!(fs.ftruncate(stat_id, 0), err(EBADF));
    assert_eq!(open_as(&mut fs, ALICE, "secret", O_STAT | O_RDONLY | O_TRUNC).map(|_| ()), Ok(()));
    assert_eq!(contents(&mut fs, "secret"), b"hidden");
}

#[test]
fn every_parent_needs_search_permission_even_for_o_stat() {
    let mut fs = fs();
    mkdir_as(&mut fs, ROOT, "locked", 0o700).unwrap();
    mkdir(&mut fs, "locked/inner");
    write_file(&mut fs, "locked/inner/f", b"");
    assert_eq!(open_as(&mut fs, ALICE, "locked/inner/f", O_STAT), err(EACCES));
    assert_eq!(open_as(&mut fs, ALICE, "locked/new", O_CREAT | O_RDWR), err(EACCES));
    assert!(open_as(&mut fs, ALICE, "locked", O_STAT).is_ok());
}

#[test]
fn read_and_write_follow_the_owner_group_and_other_bits() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "f", 0o640).unwrap();
    fs.fchown(id, ALICE.0, 50).unwrap();
    fs.fchmod(id, 0o460).unwrap();
    let alice_in_group = (ALICE.0, 50);
    let bob_in_group = (BOB.0, 50);
    assert!(open_as(&mut fs, alice_in_group, "f", O_RDONLY).is_ok());
    assert_eq!(open_as(&mut fs, alice_in_group, "f", O_WRONLY), err(EACCES), "owner bits only");
    assert!(open_as(&mut fs, bob_in_group, "f", O_RDWR).is_ok());
    assert_eq!(open_as(&mut fs, BOB, "f", O_RDONLY), err(EACCES));
    assert!(open_as(&mut fs, ROOT, "f", O_RDWR).is_ok());
}

#[test]
fn creating_needs_write_and_search_on_the_parent() {
    let mut fs = fs();
    assert_eq!(create_as(&mut fs, ALICE, "f", 0o644), err(EACCES));
    assert_eq!(mkdir_as(&mut fs, ALICE, "d", 0o755), err(EACCES));
    mkdir_as(&mut fs, ROOT, "wx", 0o733).unwrap();
    assert!(create_as(&mut fs, ALICE, "wx/f", 0o644).is_ok());
    mkdir_as(&mut fs, ROOT, "w", 0o722).unwrap();
    assert_eq!(create_as(&mut fs, ALICE, "w/f", 0o644), err(EACCES));
}

#[test]
fn o_symlink_creates_a_link_and_reads_its_target() {
    let mut fs = fs();
    symlink(&mut fs, "link", "some/target");
    let stat = lstat(&mut fs, "link").unwrap();
    assert_eq!((stat.st_mode, stat.st_size), (MODE_SYMLINK | 0o777, 11));
    let id = open(&mut fs, "link", O_SYMLINK | O_RDONLY).unwrap();
    assert_eq!(read_all(&mut fs, id), b"some/target");
    assert_eq!(open(&mut fs, "link", O_CREAT | O_WRONLY | O_SYMLINK), err(EEXIST));
    write_file(&mut fs, "f", b"");
    assert_eq!(open(&mut fs, "f", O_SYMLINK | O_RDONLY), err(EINVAL));
}

#[test]
fn final_links_are_followed_unless_told_otherwise() {
    let mut fs = fs();
    write_file(&mut fs, "target", b"through");
    symlink(&mut fs, "link", "target");
    assert_eq!(contents(&mut fs, "link"), b"through");
    assert_eq!(open(&mut fs, "link", O_RDONLY | O_NOFOLLOW), err(ELOOP));
    assert_eq!(lstat(&mut fs, "link").unwrap().st_mode & 0xF000, MODE_SYMLINK);
    let id = open(&mut fs, "link", O_STAT).unwrap();
    assert_eq!(fstat(&mut fs, id).st_mode & 0xF000, MODE_FILE);
    assert_eq!(open(&mut fs, "link", O_CREAT | O_EXCL | O_RDWR), err(EEXIST));
}

#[test]
fn relative_absolute_and_intermediate_links() {
    let mut fs = fs();
    mkdir(&mut fs, "a");
    mkdir(&mut fs, "a/b");
    write_file(&mut fs, "a/b/f", b"f");
    symlink(&mut fs, "a/rel", "b/f");
    symlink(&mut fs, "a/abs", "/a/b/f");
    symlink(&mut fs, "dir", "a/b");
    symlink(&mut fs, "up", "a/b/../../a");
    assert_eq!(contents(&mut fs, "a/rel"), b"f");
    assert_eq!(contents(&mut fs, "a/abs"), b"f");
    assert_eq!(contents(&mut fs, "dir/f"), b"f");
    assert_eq!(contents(&mut fs, "up/rel"), b"f");
}

#[test]
fn dangling_links_are_enoent_and_o_creat_makes_their_target() {
    let mut fs = fs();
    mkdir(&mut fs, "d");
    symlink(&mut fs, "dangling", "d/made");
    assert_eq!(open(&mut fs, "dangling", O_RDONLY), err(ENOENT));
    let id = open(&mut fs, "dangling", O_CREAT | O_WRONLY | 0o600).unwrap();
    fs.write(id, b"via link").unwrap();
    assert_eq!(contents(&mut fs, "d/made"), b"via link");
    assert_eq!(fpath(&mut fs, id), "ramfs:/d/made");
}

#[test]
fn more_than_32_links_is_eloop() {
    let mut fs = fs();
    write_file(&mut fs, "l0", b"end");
    for i in 1..=33 {
        symlink(&mut fs, &format!("l{i}"), &format!("l{}", i - 1));
    }
    assert_eq!(contents(&mut fs, "l32"), b"end");
    assert_eq!(open(&mut fs, "l33", O_RDONLY), err(ELOOP));
    symlink(&mut fs, "loop", "loop");
    assert_eq!(open(&mut fs, "loop/x", O_STAT), err(ELOOP));
}
