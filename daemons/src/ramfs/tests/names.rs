//! Names: frename (replacing, directories, subtree EINVAL, permissions), flink and nlink,
//! unlink, rmdir, fpath, and how handles keep their paths across renames.

use syscall::{
    SchemeMut, EACCES, EBUSY, EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY, EPERM,
    O_NOFOLLOW, O_RDONLY, O_RDWR, O_STAT,
};

use super::*;

/// rename(from, to) the way relibc does it: open the source O_STAT|O_NOFOLLOW, frename.
fn rename_as(fs: &mut RamFs, who: (u32, u32), from: &str, to: &str) -> syscall::Result<usize> {
    let id = open_as(fs, who, from, O_STAT | O_NOFOLLOW)?;
    let result = fs.frename(id, to, who.0, who.1);
    fs.close(id).unwrap();
    result
}

fn rename(fs: &mut RamFs, from: &str, to: &str) -> syscall::Result<usize> {
    rename_as(fs, ROOT, from, to)
}

fn ino(fs: &mut RamFs, path: &str) -> u64 {
    lstat(fs, path).unwrap().st_ino
}

#[test]
fn frename_moves_a_file_and_its_handles_path() {
    let mut fs = fs();
    mkdir(&mut fs, "d");
    write_file(&mut fs, "f", b"data");
    let reader = open(&mut fs, "f", O_RDONLY).unwrap();
    let inode = ino(&mut fs, "f");
    let id = open(&mut fs, "f", O_STAT | O_NOFOLLOW).unwrap();
    assert_eq!(fs.frename(id, "/d/g", 0, 0), Ok(0));
    assert_eq!(fpath(&mut fs, id), "ramfs:/d/g");
    assert_eq!(fpath(&mut fs, reader), "ramfs:/d/g", "every handle of that name moves");
    assert_eq!(lstat(&mut fs, "f").map(|_| ()), err(ENOENT));
    assert_eq!((ino(&mut fs, "d/g"), contents(&mut fs, "d/g")), (inode, b"data".to_vec()));
    assert_eq!(fs.frename(id, "d/h", 0, 0), Ok(0), "twice through the same handle");
    assert_eq!(contents(&mut fs, "d/h"), b"data");
}

#[test]
fn frename_over_a_file_replaces_it() {
    let mut fs = fs();
    write_file(&mut fs, "new", b"new");
    write_file(&mut fs, "old", b"old");
    let stat_only = open(&mut fs, "old", O_STAT).unwrap();
    fs.flink(stat_only, "old2", 0, 0).unwrap();
    let old = open(&mut fs, "old", O_RDONLY).unwrap();
    assert_eq!(rename(&mut fs, "new", "old"), Ok(0));
    assert_eq!(contents(&mut fs, "old"), b"new");
    assert_eq!(fstat(&mut fs, old).st_nlink, 1, "the replaced file lost a link");
    assert_eq!(read_all(&mut fs, old), b"old");
}

#[test]
fn frename_of_directories() {
    let mut fs = fs();
    for dir in ["a", "a/sub", "empty", "full", "full/x"] {
        mkdir(&mut fs, dir);
    }
    write_file(&mut fs, "file", b"");
    assert_eq!(rename(&mut fs, "a", "full"), err(ENOTEMPTY));
    assert_eq!(rename(&mut fs, "a", "file"), err(ENOTDIR));
    assert_eq!(rename(&mut fs, "file", "empty"), err(EISDIR));
    assert_eq!(rename(&mut fs, "a", "a/sub/inside"), err(EINVAL));
    assert_eq!(rename(&mut fs, "a", "a/sub"), err(EINVAL));
    assert_eq!(rename(&mut fs, "a", "a"), Ok(0));
    assert_eq!(rename(&mut fs, "a", "empty"), Ok(0));
    assert_eq!(lstat(&mut fs, "empty/sub").unwrap().st_mode & 0xF000, syscall::MODE_DIR);
    assert_eq!(lstat(&mut fs, "").unwrap().st_nlink, 2 + 2, "root holds empty and full");
}

#[test]
fn a_directory_move_carries_the_paths_of_handles_inside() {
    let mut fs = fs();
    mkdir(&mut fs, "a");
    mkdir(&mut fs, "a/b");
    write_file(&mut fs, "a/b/f", b"");
    let file = open(&mut fs, "a/b/f", O_RDONLY).unwrap();
    let dir = open(&mut fs, "a/b", O_RDONLY).unwrap();
    mkdir(&mut fs, "z");
    assert_eq!(rename(&mut fs, "a", "z/moved"), Ok(0));
    assert_eq!(fpath(&mut fs, file), "ramfs:/z/moved/b/f");
    assert_eq!(fpath(&mut fs, dir), "ramfs:/z/moved/b");
}

#[test]
fn frename_between_links_of_one_file_does_nothing() {
    let mut fs = fs();
    write_file(&mut fs, "f", b"");
    let id = open(&mut fs, "f", O_STAT).unwrap();
    fs.flink(id, "g", 0, 0).unwrap();
    assert_eq!(rename(&mut fs, "f", "g"), Ok(0));
    assert!(lstat(&mut fs, "f").is_ok() && lstat(&mut fs, "g").is_ok());
    assert_eq!(fstat(&mut fs, id).st_nlink, 2);
}

#[test]
fn frename_needs_write_and_search_on_both_parents() {
    let mut fs = fs();
    mkdir_as(&mut fs, ROOT, "shared", 0o777).unwrap();
    mkdir_as(&mut fs, ROOT, "closed", 0o755).unwrap();
    write_file(&mut fs, "closed/f", b"");
    create_as(&mut fs, ALICE, "shared/a", 0o644).unwrap();
    assert_eq!(rename_as(&mut fs, ALICE, "shared/a", "closed/a"), err(EACCES));
    assert_eq!(rename_as(&mut fs, ALICE, "closed/f", "shared/f"), err(EACCES));
    assert_eq!(rename_as(&mut fs, ALICE, "shared/a", "shared/b"), Ok(0));
}

#[test]
fn frename_of_the_root_or_onto_it_is_ebusy() {
    let mut fs = fs();
    mkdir(&mut fs, "d");
    assert_eq!(rename(&mut fs, "", "x"), err(EBUSY));
    assert_eq!(rename(&mut fs, "d", ""), err(EBUSY));
}

#[test]
fn flink_makes_hard_links_of_non_directories() {
    let mut fs = fs();
    write_file(&mut fs, "f", b"shared");
    mkdir(&mut fs, "d");
    let id = open(&mut fs, "f", O_STAT).unwrap();
    assert_eq!(fs.flink(id, "d/g", 0, 0), Ok(0));
    assert_eq!(fstat(&mut fs, id).st_nlink, 2);
    assert_eq!(ino(&mut fs, "d/g"), ino(&mut fs, "f"));
    assert_eq!(contents(&mut fs, "d/g"), b"shared");
    assert_eq!(fs.flink(id, "d/g", 0, 0), err(EEXIST));
    assert_eq!(fs.flink(id, "d", 0, 0), err(EEXIST));
    let dir = open(&mut fs, "d", O_STAT).unwrap();
    assert_eq!(fs.flink(dir, "d2", 0, 0), err(EPERM));
    assert_eq!(fs.flink(id, "g", ALICE.0, ALICE.1), err(EACCES));
    fs.unlink("f", 0, 0).unwrap();
    assert_eq!(fstat(&mut fs, id).st_nlink, 1);
    assert_eq!(contents(&mut fs, "d/g"), b"shared");
}

#[test]
fn unlink_removes_files_and_links_not_directories() {
    let mut fs = fs();
    write_file(&mut fs, "f", b"target");
    symlink(&mut fs, "link", "f");
    mkdir(&mut fs, "d");
    assert_eq!(fs.unlink("link", 0, 0), Ok(0));
    assert_eq!(contents(&mut fs, "f"), b"target");
    assert_eq!(fs.unlink("d", 0, 0), err(EISDIR));
    assert_eq!(fs.unlink("", 0, 0), err(EISDIR));
    assert_eq!(fs.unlink("missing", 0, 0), err(ENOENT));
    assert_eq!(fs.unlink("f", ALICE.0, ALICE.1), err(EACCES));
    assert_eq!(fs.unlink("f", 0, 0), Ok(0));
    assert_eq!(fs.unlink("f", 0, 0), err(ENOENT));
}

#[test]
fn rmdir_removes_only_empty_directories() {
    let mut fs = fs();
    mkdir(&mut fs, "d");
    mkdir(&mut fs, "d/sub");
    write_file(&mut fs, "f", b"");
    assert_eq!(fs.rmdir("d", 0, 0), err(ENOTEMPTY));
    assert_eq!(fs.rmdir("f", 0, 0), err(ENOTDIR));
    assert_eq!(fs.rmdir("", 0, 0), err(EBUSY));
    assert_eq!(fs.rmdir("nope", 0, 0), err(ENOENT));
    assert_eq!(fs.rmdir("d/sub", ALICE.0, ALICE.1), err(EACCES));
    assert_eq!(fs.rmdir("d/sub", 0, 0), Ok(0));
    assert_eq!(lstat(&mut fs, "d").unwrap().st_nlink, 2);
    assert_eq!(fs.rmdir("d", 0, 0), Ok(0));
    assert_eq!(lstat(&mut fs, "").unwrap().st_nlink, 2);
}

#[test]
fn a_removed_open_directory_takes_no_new_entries() {
    let mut fs = fs();
    mkdir(&mut fs, "d");
    let dir = open(&mut fs, "d", O_RDONLY).unwrap();
    fs.rmdir("d", 0, 0).unwrap();
    assert_eq!(fstat(&mut fs, dir).st_nlink, 0);
    assert_eq!(read_all(&mut fs, dir), b"");
    mkdir(&mut fs, "d");
    write_file(&mut fs, "d/f", b"fresh");
    assert_eq!(contents(&mut fs, "d/f"), b"fresh");
}

#[test]
fn fpath_names_the_handle_under_the_scheme() {
    let mut fs = fs();
    mkdir(&mut fs, "dir");
    write_file(&mut fs, "dir/file", b"");
    let root = open(&mut fs, "", O_RDONLY).unwrap();
    let file = open(&mut fs, "/dir//./file", O_RDWR).unwrap();
    assert_eq!(fpath(&mut fs, root), "ramfs:/");
    assert_eq!(fpath(&mut fs, file), "ramfs:/dir/file");
    let mut short = [0; 9];
    assert_eq!(fs.fpath(file, &mut short), Ok(9));
    assert_eq!(&short, b"ramfs:/di");
}
