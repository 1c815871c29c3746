//! Data: read/write offsets, lseek, O_APPEND, ftruncate, ENOSPC, fstat, fstatvfs, fcntl,
//! and the lifetime of unlinked-but-open files.

use syscall::{
    SchemeMut, StatVfs, EBADF, EINVAL, ENOSPC, EVENT_READ, EVENT_WRITE, F_GETFL, F_SETFL, O_APPEND,
    O_CREAT, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, SEEK_CUR, SEEK_END, SEEK_SET,
};

use super::*;

fn statvfs(fs: &mut RamFs, id: usize) -> StatVfs {
    let mut vfs = StatVfs::default();
    assert_eq!(fs.fstatvfs(id, &mut vfs), Ok(0));
    vfs
}

#[test]
fn reads_and_writes_move_the_offset() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "f", 0o644).unwrap();
    assert_eq!(fs.write(id, b"hello "), Ok(6));
    assert_eq!(fs.write(id, b"world"), Ok(5));
    assert_eq!(fs.seek(id, 0, SEEK_SET), Ok(0));
    assert_eq!(read_chunks(&mut fs, id, 4), b"hello world");
    let mut buf = [0; 4];
    assert_eq!(fs.read(id, &mut buf), Ok(0));
}

#[test]
fn lseek_whences_and_holes() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "f", 0o644).unwrap();
    fs.write(id, b"0123456789").unwrap();
    assert_eq!(fs.seek(id, 2, SEEK_SET), Ok(2));
    assert_eq!(fs.seek(id, 3, SEEK_CUR), Ok(5));
    assert_eq!(fs.seek(id, -1, SEEK_END), Ok(9));
    assert_eq!(fs.seek(id, -11, SEEK_END), err(EINVAL));
    assert_eq!(fs.seek(id, -1, SEEK_SET), err(EINVAL));
    assert_eq!(fs.seek(id, 0, 7), err(EINVAL));
    assert_eq!(fs.seek(id, 4, SEEK_END), Ok(14));
    fs.write(id, b"!").unwrap();
    assert_eq!(contents(&mut fs, "f"), b"0123456789\0\0\0\0!");
}

#[test]
fn o_append_writes_at_the_end_for_every_handle() {
    let mut fs = fs();
    write_file(&mut fs, "log", b"start\n");
    let one = open(&mut fs, "log", O_WRONLY | O_APPEND).unwrap();
    let two = open(&mut fs, "log", O_WRONLY | O_APPEND).unwrap();
    fs.write(one, b"one\n").unwrap();
    fs.seek(two, 0, SEEK_SET).unwrap();
    fs.write(two, b"two\n").unwrap();
    fs.write(one, b"three\n").unwrap();
    assert_eq!(contents(&mut fs, "log"), b"start\none\ntwo\nthree\n");
    assert_eq!(fs.seek(two, 0, SEEK_CUR), Ok(14));
}

#[test]
fn access_mode_decides_read_and_write() {
    let mut fs = fs();
    write_file(&mut fs, "f", b"x");
    let read_only = open(&mut fs, "f", O_RDONLY).unwrap();
    let write_only = open(&mut fs, "f", O_WRONLY).unwrap();
    let no_access = open(&mut fs, "f", 0).unwrap();
    let mut buf = [0; 1];
    assert_eq!(fs.write(read_only, b"y"), err(EBADF));
    assert_eq!(fs.read(write_only, &mut buf), err(EBADF));
    assert_eq!(fs.read(no_access, &mut buf), err(EBADF));
    assert_eq!(fs.read(99, &mut buf), err(EBADF));
}

#[test]
fn ftruncate_grows_with_zeros_and_shrinks() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "f", 0o644).unwrap();
    fs.write(id, b"abc").unwrap();
    assert_eq!(fs.ftruncate(id, 6), Ok(0));
    assert_eq!(contents(&mut fs, "f"), b"abc\0\0\0");
    assert_eq!(fs.ftruncate(id, 1), Ok(0));
    assert_eq!(contents(&mut fs, "f"), b"a");
    let read_only = open(&mut fs, "f", O_RDONLY).unwrap();
    assert_eq!(fs.ftruncate(read_only, 0), err(EINVAL));
}

#[test]
fn the_byte_limit_makes_enospc_and_writes_nothing() {
    let mut fs = RamFs::new(Some(8192));
    let id = create_as(&mut fs, ROOT, "f", 0o644).unwrap();
    assert_eq!(fs.write(id, &[1; 8000]), Ok(8000));
    let vfs = statvfs(&mut fs, id);
    assert_eq!((vfs.f_bsize, vfs.f_blocks, vfs.f_bfree, vfs.f_bavail), (4096, 2, 0, 0));
    assert_eq!(fs.write(id, &[2; 193]), err(ENOSPC));
    assert_eq!(fstat(&mut fs, id).st_size, 8000);
    assert_eq!(fs.ftruncate(id, 8193), err(ENOSPC));
    let other = create_as(&mut fs, ROOT, "g", 0o644).unwrap();
    assert_eq!(fs.write(other, &[3; 192]), Ok(192));
    assert_eq!(fs.write(other, b"x"), err(ENOSPC));
    fs.ftruncate(id, 0).unwrap();
    assert_eq!(statvfs(&mut fs, id).f_bfree, 1);
    assert_eq!(fs.write(other, &[4; 4000]), Ok(4000));
}

#[test]
fn unlimited_statvfs_reports_a_large_size() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "f", 0o644).unwrap();
    fs.write(id, &[0; 4097]).unwrap();
    let vfs = statvfs(&mut fs, id);
    assert_eq!((vfs.f_blocks, vfs.f_bfree), (1 << 30, (1 << 30) - 2));
}

#[test]
fn fstat_reports_size_blocks_and_times() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "f", 0o644).unwrap();
    let before = fstat(&mut fs, id);
    std::thread::sleep(std::time::Duration::from_millis(2));
    fs.write(id, &[7; 1000]).unwrap();
    let after = fstat(&mut fs, id);
    assert_eq!(
        (after.st_dev, after.st_size, after.st_blocks, after.st_blksize),
        (0, 1000, 2, 4096)
    );
    let nanos = |sec: u64, nsec: u32| u128::from(sec) * 1_000_000_000 + u128::from(nsec);
    assert!(
        nanos(after.st_mtime, after.st_mtime_nsec) > nanos(before.st_mtime, before.st_mtime_nsec)
    );
    assert_eq!((after.st_mtime, after.st_mtime_nsec), (after.st_ctime, after.st_ctime_nsec));
    assert_eq!((after.st_atime, after.st_atime_nsec), (before.st_atime, before.st_atime_nsec));
    assert!(before.st_mtime > 1_600_000_000);
}

#[test]
fn an_unlinked_open_file_stays_usable_until_closed() {
    let mut fs = RamFs::new(Some(4096 * 4));
    write_file(&mut fs, "f", &[1; 5000]);
    let id = open(&mut fs, "f", O_RDWR).unwrap();
    fs.unlink("f", 0, 0).unwrap();
    assert_eq!(open(&mut fs, "f", O_RDONLY), err(syscall::ENOENT));
    assert_eq!(fstat(&mut fs, id).st_nlink, 0);
    fs.seek(id, 0, SEEK_END).unwrap();
    fs.write(id, b"more").unwrap();
    fs.seek(id, 4999, SEEK_SET).unwrap();
    assert_eq!(read_all(&mut fs, id), b"\x01more");
    assert_eq!(statvfs(&mut fs, id).f_bfree, 2);
    let root = open(&mut fs, "", O_RDONLY).unwrap();
    fs.close(id).unwrap();
    assert_eq!(statvfs(&mut fs, root).f_bfree, 4, "data freed with the last handle");
}

#[test]
fn fcntl_reports_and_replaces_the_status_flags() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "f", 0o644).unwrap();
    assert_eq!(fs.fcntl(id, F_GETFL, 0), Ok(O_CREAT | O_RDWR | 0o644));
    assert_eq!(fs.fcntl(id, F_SETFL, O_APPEND | O_NONBLOCK | O_RDONLY), Ok(0));
    assert_eq!(fs.fcntl(id, F_GETFL, 0), Ok(O_RDWR | O_APPEND | O_NONBLOCK));
    fs.write(id, b"ab").unwrap();
    fs.seek(id, 0, SEEK_SET).unwrap();
    fs.write(id, b"c").unwrap();
    assert_eq!(contents(&mut fs, "f"), b"abc");
    assert_eq!(fs.fcntl(id, 1, 0), Ok(0));
}

#[test]
fn fevent_fsync_and_close() {
    let mut fs = fs();
    let id = create_as(&mut fs, ROOT, "f", 0o644).unwrap();
    assert_eq!(fs.fevent(id, EVENT_READ), Ok(EVENT_READ | EVENT_WRITE));
    assert_eq!(fs.fsync(id), Ok(0));
    assert_eq!(fs.close(id), Ok(0));
    assert_eq!(fs.fsync(id), err(EBADF));
    assert_eq!(fs.fevent(id, EVENT_READ), err(EBADF));
}
