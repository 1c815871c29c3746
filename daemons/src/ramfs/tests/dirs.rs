//! Directories: getdents records and their opaque cursor while the directory changes, and the
//! legacy newline-separated listing.

use std::collections::BTreeSet;

use scheme_bridge::Getdents;
use syscall::dirent::{DirentIter, DirentKind};
use syscall::{SchemeMut, EACCES, EBADF, EINVAL, ENOTDIR, O_DIRECTORY, O_RDONLY, O_STAT, SEEK_SET};

use super::*;

/// One parsed record: (inode, next cursor, kind, name).
type Record = (u64, u64, u8, String);

fn parse(buf: &[u8]) -> Vec<Record> {
    DirentIter::new(buf)
        .map(|record| {
            let (header, name) = record.unwrap();
            let (inode, next, kind) = (header.inode, header.next_opaque_id, header.kind);
            (inode, next, kind, String::from_utf8(name.to_vec()).unwrap())
        })
        .collect()
}

/// One getdents call with a `size`-byte buffer.
fn page(fs: &mut RamFs, id: usize, size: usize, cursor: u64) -> syscall::Result<Vec<Record>> {
    let mut buf = vec![0; size];
    let len = fs.getdents(id, &mut buf, cursor)?;
    Ok(parse(&buf[..len]))
}

fn names(records: &[Record]) -> Vec<&str> {
    records.iter().map(|record| record.3.as_str()).collect()
}

fn open_dir(fs: &mut RamFs, path: &str) -> usize {
    open(fs, path, O_RDONLY | O_DIRECTORY).unwrap()
}

#[test]
fn getdents_lists_entries_with_inodes_and_kinds_and_ends_with_0() {
    let mut fs = fs();
    write_file(&mut fs, "file", b"");
    mkdir(&mut fs, "dir");
    symlink(&mut fs, "link", "file");
    let id = open_dir(&mut fs, "");
    let records = page(&mut fs, id, 4096, 0).unwrap();
    assert_eq!(names(&records), ["file", "dir", "link"]);
    let kinds: Vec<u8> = records.iter().map(|record| record.2).collect();
    let expected = [DirentKind::Regular, DirentKind::Directory, DirentKind::Symlink];
    assert_eq!(kinds, expected.map(|kind| kind as u8));
    assert_eq!(records[0].0, lstat(&mut fs, "file").unwrap().st_ino);
    let last = records[2].1;
    assert_eq!(page(&mut fs, id, 4096, last), Ok(vec![]));
}

#[test]
fn getdents_fills_what_fits_and_einval_if_nothing_does() {
    let mut fs = fs();
    for name in ["aaaa", "bbbb", "cccc"] {
        write_file(&mut fs, name, b"");
    }
    let id = open_dir(&mut fs, "");
    let record = 19 + 4 + 1;
    assert_eq!(page(&mut fs, id, record - 1, 0), Err(syscall::Error::new(EINVAL)));
    let two = page(&mut fs, id, 2 * record + 5, 0).unwrap();
    assert_eq!(names(&two), ["aaaa", "bbbb"]);
    let mut buf = vec![0; 2 * record + 5];
    assert_eq!(fs.getdents(id, &mut buf, 0), Ok(2 * record));
    assert_eq!(names(&page(&mut fs, id, 4096, two[1].1).unwrap()), ["cccc"]);
}

#[test]
fn the_cursor_survives_entries_added_and_removed_between_calls() {
    let mut fs = fs();
    for i in 0..10 {
        write_file(&mut fs, &format!("f{i}"), b"");
    }
    let id = open_dir(&mut fs, "");
    let mut seen = Vec::new();
    let mut cursor = 0;
    let mut step = 0;
    loop {
        let records = page(&mut fs, id, 19 + 3, cursor).unwrap();
        let Some(record) = records.first() else { break };
        seen.push(record.3.clone());
        cursor = record.1;
        step += 1;
        if step == 3 {
            fs.unlink("f0", 0, 0).unwrap();
            fs.unlink("f7", 0, 0).unwrap();
            write_file(&mut fs, "n1", b"");
        }
        if step == 6 {
            write_file(&mut fs, "n2", b"");
            fs.unlink("n1", 0, 0).unwrap();
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no entry twice: {seen:?}");
    assert_eq!(seen, ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f8", "f9", "n2"]);
}

#[test]
fn getdents_needs_a_readable_directory_handle() {
    let mut fs = fs();
    write_file(&mut fs, "f", b"");
    mkdir_as(&mut fs, ROOT, "private", 0o700).unwrap();
    let file = open(&mut fs, "f", O_RDONLY).unwrap();
    assert_eq!(page(&mut fs, file, 4096, 0), Err(syscall::Error::new(ENOTDIR)));
    let stat_only = open(&mut fs, "", O_STAT).unwrap();
    assert_eq!(page(&mut fs, stat_only, 4096, 0), Err(syscall::Error::new(EBADF)));
    assert_eq!(page(&mut fs, 99, 4096, 0), Err(syscall::Error::new(EBADF)));
    assert_eq!(open_as(&mut fs, ALICE, "private", O_RDONLY | O_DIRECTORY), err(EACCES));
}

#[test]
fn reading_a_directory_gives_the_legacy_listing() {
    let mut fs = fs();
    mkdir(&mut fs, "d");
    for name in ["one", "two", "three"] {
        write_file(&mut fs, &format!("d/{name}"), b"");
    }
    let id = open_dir(&mut fs, "d");
    assert_eq!(read_chunks(&mut fs, id, 3), b"one\ntwo\nthree\n");
    let mut buf = [0; 8];
    assert_eq!(fs.read(id, &mut buf), Ok(0));
    assert_eq!(fs.seek(id, 4, SEEK_SET), Ok(4));
    write_file(&mut fs, "d/four", b"");
    assert_eq!(read_all(&mut fs, id), b"two\nthree\nfour\n", "computed at read time");
    let empty = open_dir(&mut fs, "");
    fs.rmdir("d", 0, 0).unwrap_err();
    assert_eq!(read_all(&mut fs, empty), b"d\n");
}

#[test]
fn directory_link_counts_follow_subdirectories() {
    let mut fs = fs();
    mkdir(&mut fs, "d");
    mkdir(&mut fs, "d/a");
    mkdir(&mut fs, "d/b");
    write_file(&mut fs, "d/f", b"");
    let stat = lstat(&mut fs, "d").unwrap();
    assert_eq!((stat.st_nlink, stat.st_size, stat.st_blocks), (4, 0, 0));
    assert_eq!(stat.st_mode, syscall::MODE_DIR | 0o755);
}
