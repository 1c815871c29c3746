//! Unit tests of `ramfs:` through its `SchemeMut` and `Getdents` methods, one file per area
//! (open, data, attributes, names, directories), and the helpers they share. Callers are root
//! (uid 0), [`ALICE`] and [`BOB`]; paths and flags are exactly what the FUSE bridge sends.

mod attr;
mod dirs;
mod io;
mod names;
mod open;

use syscall::{
    Error, Result, SchemeMut, Stat, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_RDWR,
    O_STAT, O_SYMLINK, O_WRONLY,
};

use super::RamFs;

/// An ordinary user.
pub const ALICE: (u32, u32) = (1000, 1000);
/// Another ordinary user, in another group.
pub const BOB: (u32, u32) = (1001, 1001);
/// Root.
pub const ROOT: (u32, u32) = (0, 0);

pub fn fs() -> RamFs {
    RamFs::new(None)
}

pub fn err<T>(errno: i32) -> Result<T> {
    Err(Error::new(errno))
}

/// Opens as root.
pub fn open(fs: &mut RamFs, path: &str, flags: usize) -> Result<usize> {
    fs.open(path, flags, 0, 0)
}

pub fn open_as(fs: &mut RamFs, who: (u32, u32), path: &str, flags: usize) -> Result<usize> {
    fs.open(path, flags, who.0, who.1)
}

/// Creates (or truncates nothing: opens) a file with `perm` as `who`, returning an O_RDWR handle.
pub fn create_as(fs: &mut RamFs, who: (u32, u32), path: &str, perm: usize) -> Result<usize> {
    open_as(fs, who, path, O_CREAT | O_RDWR | perm)
}

/// Creates a file as root holding `data`, and closes it.
pub fn write_file(fs: &mut RamFs, path: &str, data: &[u8]) {
    let id = create_as(fs, ROOT, path, 0o644).unwrap();
    assert_eq!(fs.write(id, data), Ok(data.len()));
    fs.close(id).unwrap();
}

/// mkdir as `who`.
pub fn mkdir_as(fs: &mut RamFs, who: (u32, u32), path: &str, perm: usize) -> Result<()> {
    let id = open_as(fs, who, path, O_CREAT | O_DIRECTORY | O_EXCL | perm)?;
    fs.close(id).map(|_| ())
}

pub fn mkdir(fs: &mut RamFs, path: &str) {
    mkdir_as(fs, ROOT, path, 0o755).unwrap();
}

/// symlink(target, path) the way relibc does it.
pub fn symlink(fs: &mut RamFs, path: &str, target: &str) {
    let id = open(fs, path, O_CREAT | O_WRONLY | O_SYMLINK | 0o777).unwrap();
    assert_eq!(fs.write(id, target.as_bytes()), Ok(target.len()));
    fs.close(id).unwrap();
}

/// Reads from the handle until 0, in chunks of `chunk` bytes.
pub fn read_chunks(fs: &mut RamFs, id: usize, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0; chunk];
    loop {
        let count = fs.read(id, &mut buf).unwrap();
        if count == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..count]);
    }
}

pub fn read_all(fs: &mut RamFs, id: usize) -> Vec<u8> {
    read_chunks(fs, id, 4096)
}

/// The contents of a file, read as root.
pub fn contents(fs: &mut RamFs, path: &str) -> Vec<u8> {
    let id = open(fs, path, O_RDONLY).unwrap();
    let data = read_all(fs, id);
    fs.close(id).unwrap();
    data
}

pub fn fstat(fs: &mut RamFs, id: usize) -> Stat {
    let mut stat = Stat::default();
    assert_eq!(fs.fstat(id, &mut stat), Ok(0));
    stat
}

/// lstat as root: open O_STAT|O_NOFOLLOW, fstat, close.
pub fn lstat(fs: &mut RamFs, path: &str) -> Result<Stat> {
    let id = open(fs, path, O_STAT | O_NOFOLLOW)?;
    let stat = fstat(fs, id);
    fs.close(id)?;
    Ok(stat)
}

/// fpath as a string.
pub fn fpath(fs: &mut RamFs, id: usize) -> String {
    let mut buf = [0; 256];
    let len = fs.fpath(id, &mut buf).unwrap();
    String::from_utf8(buf[..len].to_vec()).unwrap()
}

#[test]
fn handle_ids_count_up_from_1() {
    let mut fs = fs();
    assert_eq!(open(&mut fs, "", O_STAT), Ok(1));
    assert_eq!(open(&mut fs, "", O_STAT), Ok(2));
    fs.close(1).unwrap();
    assert_eq!(open(&mut fs, "", O_RDONLY | O_DIRECTORY), Ok(3));
    assert_eq!(fs.close(1), err(syscall::EBADF));
}
