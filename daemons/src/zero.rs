//! The `null:` and `zero:` devices, following zerod/nulld (BASE `zerod/src/*.rs`, redox-os/nulld).
//!
//! Stateless: every open (any path) returns handle id 0 and ids are never checked. `null:` reads
//! EOF, `zero:` reads zeros, both swallow writes. Two deliberate differences from zerod: fpath
//! names the right scheme (zerod answers `zero:` for both) and fevent reports READ|WRITE.

use syscall::{
    Error, EventFlags, Result, SchemeMut, Stat, EINVAL, EVENT_READ, EVENT_WRITE, MODE_CHR,
};

/// Which device a [`ZeroScheme`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `null:` reads return 0 (end of file).
    Null,
    /// `zero:` reads fill the whole buffer with zero bytes.
    Zero,
}

impl Kind {
    /// The scheme name, as registered and as shown by fpath.
    pub fn scheme_name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Zero => "zero",
        }
    }
}

/// The only handle id this scheme hands out.
const THE_HANDLE: usize = 0;
/// Block size reported by fstat, as zerod does.
const BLOCK_SIZE: u32 = 4096;

/// The `null:` or `zero:` scheme.
pub struct ZeroScheme {
    kind: Kind,
}

impl ZeroScheme {
    pub fn new(kind: Kind) -> Self {
        Self { kind }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// Copies as much of `src` as fits into `dst`, returning the count.
fn copy_truncated(dst: &mut [u8], src: &[u8]) -> usize {
    let len = dst.len().min(src.len());
    dst[..len].copy_from_slice(&src[..len]);
    len
}

impl SchemeMut for ZeroScheme {
    fn open(&mut self, _path: &str, _flags: usize, _uid: u32, _gid: u32) -> Result<usize> {
        Ok(THE_HANDLE)
    }

    fn dup(&mut self, _old_id: usize, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            Ok(THE_HANDLE)
        } else {
            Err(Error::new(EINVAL))
        }
    }

    fn read(&mut self, _id: usize, buf: &mut [u8]) -> Result<usize> {
        match self.kind {
            Kind::Null => Ok(0),
            Kind::Zero => {
                buf.fill(0);
                Ok(buf.len())
            }
        }
    }

    fn write(&mut self, _id: usize, buf: &[u8]) -> Result<usize> {
        Ok(buf.len())
    }

    fn seek(&mut self, _id: usize, _pos: isize, _whence: usize) -> Result<isize> {
        Ok(0)
    }

    fn fcntl(&mut self, _id: usize, _cmd: usize, _arg: usize) -> Result<usize> {
        Ok(0)
    }

    /// A device that never blocks is always ready (what poll says for /dev/zero on Linux);
    /// zerod has no fevent at all.
    fn fevent(&mut self, _id: usize, _flags: EventFlags) -> Result<EventFlags> {
        Ok(EVENT_READ | EVENT_WRITE)
    }

    fn fpath(&mut self, _id: usize, buf: &mut [u8]) -> Result<usize> {
        let path = format!("{}:", self.kind.scheme_name());
        Ok(copy_truncated(buf, path.as_bytes()))
    }

    fn fstat(&mut self, _id: usize, stat: &mut Stat) -> Result<usize> {
        *stat = Stat {
            st_mode: MODE_CHR | 0o666,
            st_size: 0,
            st_blksize: BLOCK_SIZE,
            st_nlink: 1,
            ..Stat::default()
        };
        Ok(0)
    }

    fn fsync(&mut self, _id: usize) -> Result<usize> {
        Ok(0)
    }

    fn ftruncate(&mut self, _id: usize, _len: usize) -> Result<usize> {
        Ok(0)
    }

    fn close(&mut self, _id: usize) -> Result<usize> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syscall::{EINVAL, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_WRONLY};

    fn null() -> ZeroScheme {
        ZeroScheme::new(Kind::Null)
    }

    fn zero() -> ZeroScheme {
        ZeroScheme::new(Kind::Zero)
    }

    #[test]
    fn every_open_returns_id_zero() {
        for mut scheme in [null(), zero()] {
            assert_eq!(scheme.open("", O_RDONLY, 1000, 1000), Ok(0));
            assert_eq!(scheme.open("/anything/at/all", O_RDWR, 0, 0), Ok(0));
            assert_eq!(scheme.open("x", O_CREAT | O_EXCL | O_WRONLY, 0, 0), Ok(0));
        }
    }

    #[test]
    fn null_reads_end_of_file() {
        let mut buf = [7u8; 32];
        assert_eq!(null().read(0, &mut buf), Ok(0));
        assert_eq!(buf, [7u8; 32], "null must not touch the buffer");
    }

    #[test]
    fn zero_fills_the_whole_buffer() {
        let mut buf = [7u8; 4097];
        assert_eq!(zero().read(0, &mut buf), Ok(4097));
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(zero().read(0, &mut []), Ok(0));
    }

    #[test]
    fn writes_are_accepted_whole() {
        for mut scheme in [null(), zero()] {
            assert_eq!(scheme.write(0, b"hello"), Ok(5));
            assert_eq!(scheme.write(0, &[]), Ok(0));
        }
    }

    #[test]
    fn dup_with_a_name_is_einval() {
        let mut scheme = zero();
        assert_eq!(scheme.dup(0, b"x"), Err(Error::new(EINVAL)));
        assert_eq!(scheme.dup(0, b""), Ok(0));
    }

    #[test]
    fn control_calls_succeed_with_zero() {
        for mut scheme in [null(), zero()] {
            assert_eq!(scheme.fcntl(0, 3, 0), Ok(0));
            assert_eq!(scheme.ftruncate(0, 100), Ok(0));
            assert_eq!(scheme.fsync(0), Ok(0));
            assert_eq!(scheme.seek(0, 42, 0), Ok(0));
            assert_eq!(scheme.close(0), Ok(0));
        }
    }

    #[test]
    fn fstat_is_a_character_device() {
        let mut stat = Stat::default();
        assert_eq!(zero().fstat(0, &mut stat), Ok(0));
        assert_eq!(stat.st_mode, MODE_CHR | 0o666);
        assert_eq!(stat.st_size, 0);
        assert_eq!(stat.st_blksize, 4096);
        assert_eq!(stat.st_nlink, 1);
    }

    #[test]
    fn always_ready_for_read_and_write() {
        for mut scheme in [null(), zero()] {
            assert_eq!(scheme.fevent(0, EVENT_READ), Ok(EVENT_READ | EVENT_WRITE));
        }
    }

    #[test]
    fn fpath_names_each_scheme() {
        let mut buf = [0u8; 16];
        let len = null().fpath(0, &mut buf).unwrap();
        assert_eq!(&buf[..len], b"null:");
        let len = zero().fpath(0, &mut buf).unwrap();
        assert_eq!(&buf[..len], b"zero:");
        let mut short = [0u8; 2];
        assert_eq!(null().fpath(0, &mut short), Ok(2));
        assert_eq!(&short, b"nu");
    }
}
