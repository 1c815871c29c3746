//! The `rand:` scheme, following randd (BASE `randd/src/main.rs`; 2019 `redox-os/randd`).
//!
//! A non-blocking ChaCha20 CSPRNG (like Linux `/dev/urandom`) behind paths `""` and `urandom`.
//! Each handle reads its own ChaCha stream (stream number = handle id); writes mix the bytes
//! into a reseed. Access is checked against one mutable stat (`MODE_CHR|0o644`, root-owned).

use std::collections::BTreeMap;
use std::io;

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use syscall::{
    Error, EventFlags, Result, SchemeMut, Stat, EBADF, EEXIST, ENOENT, EPERM, EVENT_READ, MODE_CHR,
    MODE_PERM, O_CREAT, O_EXCL, O_RDONLY, O_WRONLY,
};

/// Seed size recommended for ChaCha20: 256 bits.
const SEED_BYTES: usize = 32;
/// Permission bits of the device before any fchmod.
const DEFAULT_MODE: u16 = 0o644;
/// Permission bit masks for one class (owner, group or other), as in a mode's low 3 bits.
const PERM_READ: u16 = 0o4;
const PERM_WRITE: u16 = 0o2;

/// One open handle: who opened it and the device's stat as it was at open time.
///
/// Like randd, read/write/fstat permissions are judged against this snapshot (access is
/// decided when the handle is opened, as on Unix). Ownership for fchmod/fchown is judged
/// against the live stat.
struct OpenHandle {
    uid: u32,
    gid: u32,
    stat_at_open: Stat,
}

impl OpenHandle {
    fn may(&self, op: u16) -> bool {
        has_permission(&self.stat_at_open, self.uid, self.gid, op)
    }
}

/// RedoxFS's permission rule (which randd copies): the "other" bits always apply, the owner
/// bits if `uid` owns the file, the group bits if `gid` matches or is 0, and root may do all.
///
/// randd's transcription tests the *file's* gid against 0 instead of the caller's; that typo
/// is not copied.
fn has_permission(stat: &Stat, uid: u32, gid: u32, op: u16) -> bool {
    let mode = stat.st_mode;
    let mut perm = mode & 0o7;
    if uid == stat.st_uid {
        perm |= (mode >> 6) & 0o7;
    }
    if gid == stat.st_gid || gid == 0 {
        perm |= (mode >> 3) & 0o7;
    }
    if uid == 0 {
        perm |= 0o7;
    }
    perm & op == op
}

/// Permission bits an open with `flags` needs (O_RDONLY ⇒ read, O_WRONLY ⇒ write, O_RDWR ⇒ both;
/// an access mode of 0, e.g. O_STAT, needs nothing).
fn permission_needed_to_open(flags: usize) -> u16 {
    let mut needed = 0;
    if flags & O_RDONLY != 0 {
        needed |= PERM_READ;
    }
    if flags & O_WRONLY != 0 {
        needed |= PERM_WRITE;
    }
    needed
}

fn is_device_path(path: &str) -> bool {
    matches!(path.trim_start_matches('/'), "" | "urandom")
}

fn sha256_seed(bytes: &[u8]) -> [u8; SEED_BYTES] {
    Sha256::digest(bytes).into()
}

fn copy_truncated(dst: &mut [u8], src: &[u8]) -> usize {
    let len = dst.len().min(src.len());
    dst[..len].copy_from_slice(&src[..len]);
    len
}

/// The `rand:` scheme.
pub struct RandScheme {
    prng: ChaCha20Rng,
    device_stat: Stat,
    handles: BTreeMap<usize, OpenHandle>,
    next_id: usize,
}

impl RandScheme {
    /// A scheme whose generator is seeded once from the operating system (getrandom).
    pub fn new() -> io::Result<Self> {
        let prng = ChaCha20Rng::from_rng(OsRng).map_err(|err| io::Error::other(err.to_string()))?;
        Ok(Self::from_prng(prng))
    }

    /// A scheme with a fixed seed: reproducible output, for tests only.
    pub fn from_seed(seed: [u8; SEED_BYTES]) -> Self {
        Self::from_prng(ChaCha20Rng::from_seed(seed))
    }

    fn from_prng(prng: ChaCha20Rng) -> Self {
        Self {
            prng,
            device_stat: Stat {
                st_mode: MODE_CHR | DEFAULT_MODE,
                st_uid: 0,
                st_gid: 0,
                ..Stat::default()
            },
            handles: BTreeMap::new(),
            next_id: 0,
        }
    }

    fn lookup(&self, id: usize) -> Result<&OpenHandle> {
        self.handles.get(&id).ok_or(Error::new(EBADF))
    }

    /// The handle, if its opener may perform `op` (PERM_READ / PERM_WRITE); else EPERM.
    fn handle_allowed(&self, id: usize, op: u16) -> Result<&OpenHandle> {
        let handle = self.lookup(id)?;
        if handle.may(op) {
            Ok(handle)
        } else {
            Err(Error::new(EPERM))
        }
    }

    /// Only the device's current owner or root may change its mode or owner.
    fn require_owner_or_root(&self, id: usize) -> Result<()> {
        let handle = self.lookup(id)?;
        if handle.uid == 0 || handle.uid == self.device_stat.st_uid {
            Ok(())
        } else {
            Err(Error::new(EPERM))
        }
    }

    /// Takes the next id from the wrapping counter, then advances it past any live id.
    fn allocate_id(&mut self) -> usize {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        while self.handles.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        id
    }

    /// New seed = SHA-256(32 bytes of current output ‖ entropy); never the input alone.
    fn reseed_with(&mut self, entropy: &[u8]) {
        let mut material = vec![0u8; SEED_BYTES];
        self.prng.fill_bytes(&mut material);
        material.extend_from_slice(entropy);
        self.prng = ChaCha20Rng::from_seed(sha256_seed(&material));
    }
}

impl SchemeMut for RandScheme {
    fn open(&mut self, path: &str, flags: usize, uid: u32, gid: u32) -> Result<usize> {
        if !is_device_path(path) {
            return Err(Error::new(ENOENT));
        }
        if flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL {
            return Err(Error::new(EEXIST));
        }
        let needed = permission_needed_to_open(flags);
        if !has_permission(&self.device_stat, uid, gid, needed) {
            return Err(Error::new(EPERM));
        }
        let handle = OpenHandle { uid, gid, stat_at_open: self.device_stat };
        let id = self.allocate_id();
        self.handles.insert(id, handle);
        Ok(id)
    }

    fn read(&mut self, id: usize, buf: &mut [u8]) -> Result<usize> {
        self.handle_allowed(id, PERM_READ)?;
        self.prng.set_stream(id as u64);
        self.prng.fill_bytes(buf);
        Ok(buf.len())
    }

    fn write(&mut self, id: usize, buf: &[u8]) -> Result<usize> {
        self.handle_allowed(id, PERM_WRITE)?;
        self.reseed_with(buf);
        Ok(buf.len())
    }

    fn fchmod(&mut self, id: usize, mode: u16) -> Result<usize> {
        self.require_owner_or_root(id)?;
        self.device_stat.st_mode = MODE_CHR | (mode & MODE_PERM);
        Ok(0)
    }

    fn fchown(&mut self, id: usize, uid: u32, gid: u32) -> Result<usize> {
        self.require_owner_or_root(id)?;
        self.device_stat.st_uid = uid;
        self.device_stat.st_gid = gid;
        Ok(0)
    }

    fn fcntl(&mut self, id: usize, _cmd: usize, _arg: usize) -> Result<usize> {
        self.lookup(id)?;
        Ok(0)
    }

    /// Reads never block, so READ is always ready.
    fn fevent(&mut self, id: usize, _flags: EventFlags) -> Result<EventFlags> {
        self.lookup(id)?;
        Ok(EVENT_READ)
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8]) -> Result<usize> {
        self.lookup(id)?;
        Ok(copy_truncated(buf, b"rand"))
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat) -> Result<usize> {
        self.handle_allowed(id, PERM_READ)?;
        *stat = self.device_stat;
        Ok(0)
    }

    fn close(&mut self, id: usize) -> Result<usize> {
        self.handles.remove(&id).ok_or(Error::new(EBADF))?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syscall::{O_RDWR, O_STAT};

    const SEED: [u8; 32] = [42; 32];

    fn scheme() -> RandScheme {
        RandScheme::from_seed(SEED)
    }

    fn read_bytes(scheme: &mut RandScheme, id: usize, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        assert_eq!(scheme.read(id, &mut buf), Ok(len));
        buf
    }

    #[test]
    fn seeds_from_the_operating_system() {
        let mut a = RandScheme::new().unwrap();
        let mut b = RandScheme::new().unwrap();
        let id_a = a.open("", O_RDONLY, 0, 0).unwrap();
        let id_b = b.open("", O_RDONLY, 0, 0).unwrap();
        assert_ne!(read_bytes(&mut a, id_a, 32), read_bytes(&mut b, id_b, 32));
    }

    #[test]
    fn opens_only_root_and_urandom() {
        let mut s = scheme();
        for path in ["", "/", "urandom", "/urandom", "//urandom"] {
            assert!(s.open(path, O_RDONLY, 0, 0).is_ok(), "{path:?}");
        }
        for path in ["random", "urandom/", "x", "/urandom/x"] {
            assert_eq!(s.open(path, O_RDONLY, 0, 0), Err(Error::new(ENOENT)), "{path:?}");
        }
    }

    #[test]
    fn create_exclusive_is_eexist() {
        let mut s = scheme();
        assert_eq!(s.open("", O_CREAT | O_EXCL | O_RDWR, 0, 0), Err(Error::new(EEXIST)));
        assert!(s.open("", O_CREAT | O_RDWR, 0, 0).is_ok());
    }

    #[test]
    fn default_mode_lets_others_read_but_not_write() {
        let mut s = scheme();
        assert!(s.open("", O_RDONLY, 1000, 1000).is_ok());
        assert_eq!(s.open("", O_WRONLY, 1000, 1000), Err(Error::new(EPERM)));
        assert_eq!(s.open("", O_RDWR, 1000, 1000), Err(Error::new(EPERM)));
        assert!(s.open("", O_RDWR, 0, 0).is_ok());
    }

    #[test]
    fn open_checks_owner_group_and_other_bits() {
        let mut s = scheme();
        s.device_stat.st_uid = 1;
        s.device_stat.st_gid = 1;
        s.device_stat.st_mode = MODE_CHR | 0o400;
        assert!(s.open("", O_RDONLY, 1, 5).is_ok());
        assert_eq!(s.open("", O_RDONLY, 2, 2), Err(Error::new(EPERM)));
        assert_eq!(s.open("", O_RDWR, 1, 5), Err(Error::new(EPERM)));
        s.device_stat.st_mode = MODE_CHR | 0o060;
        assert!(s.open("", O_RDWR, 2, 1).is_ok());
        assert_eq!(s.open("", O_RDONLY, 2, 2), Err(Error::new(EPERM)));
        s.device_stat.st_mode = MODE_CHR;
        assert!(s.open("", O_RDWR, 0, 0).is_ok(), "root may do anything");
        assert!(s.open("", O_STAT, 2, 2).is_ok(), "stat-only open needs no permission");
    }

    #[test]
    fn read_and_write_need_permission_on_the_handle() {
        let mut s = scheme();
        s.device_stat.st_mode = MODE_CHR;
        let id = s.open("", O_STAT, 2, 2).unwrap();
        assert_eq!(s.read(id, &mut [0u8; 4]), Err(Error::new(EPERM)));
        assert_eq!(s.write(id, b"x"), Err(Error::new(EPERM)));
        assert_eq!(s.fstat(id, &mut Stat::default()), Err(Error::new(EPERM)));
    }

    #[test]
    fn read_fills_the_whole_buffer() {
        let mut s = scheme();
        let id = s.open("", O_RDONLY, 0, 0).unwrap();
        let bytes = read_bytes(&mut s, id, 1000);
        assert!(bytes.iter().any(|&b| b != 0));
        assert_eq!(s.read(id, &mut []), Ok(0));
    }

    #[test]
    fn each_handle_reads_its_own_stream() {
        let mut s = scheme();
        let a = s.open("", O_RDONLY, 0, 0).unwrap();
        let b = s.open("", O_RDONLY, 0, 0).unwrap();
        assert_ne!(read_bytes(&mut s, a, 32), read_bytes(&mut s, b, 32));

        let mut expected = ChaCha20Rng::from_seed(SEED);
        expected.set_stream(7);
        let mut want = [0u8; 16];
        expected.fill_bytes(&mut want);
        let mut fresh = scheme();
        fresh.next_id = 7;
        let id = fresh.open("", O_RDONLY, 0, 0).unwrap();
        assert_eq!(id, 7);
        assert_eq!(read_bytes(&mut fresh, id, 16), want);
    }

    #[test]
    fn write_reseeds_from_output_and_input() {
        let mut s = scheme();
        let id = s.open("", O_RDWR, 0, 0).unwrap();
        assert_eq!(s.write(id, b"entropy"), Ok(7));

        let mut old = ChaCha20Rng::from_seed(SEED);
        let mut material = vec![0u8; 32];
        old.fill_bytes(&mut material);
        material.extend_from_slice(b"entropy");
        let mut expected = ChaCha20Rng::from_seed(sha256_seed(&material));
        expected.set_stream(id as u64);
        let mut want = [0u8; 16];
        expected.fill_bytes(&mut want);
        assert_eq!(read_bytes(&mut s, id, 16), want);
    }

    #[test]
    fn fchmod_and_fchown_only_by_owner_or_root() {
        let mut s = scheme();
        let user = s.open("", O_RDONLY, 1000, 1000).unwrap();
        let root = s.open("", O_RDONLY, 0, 0).unwrap();
        assert_eq!(s.fchmod(user, 0o666), Err(Error::new(EPERM)));
        assert_eq!(s.fchown(user, 1000, 1000), Err(Error::new(EPERM)));
        assert_eq!(s.fchown(root, 1000, 100), Ok(0));
        assert_eq!(s.fchmod(user, 0o600), Ok(0), "user now owns the device");

        let mut stat = Stat::default();
        assert_eq!(s.fstat(root, &mut stat), Ok(0));
        assert_eq!(stat.st_mode, MODE_CHR | 0o600);
        assert_eq!((stat.st_uid, stat.st_gid), (1000, 100));
        assert_eq!(s.open("", O_RDONLY, 2000, 2000), Err(Error::new(EPERM)));
    }

    #[test]
    fn fchmod_keeps_the_character_device_type() {
        let mut s = scheme();
        let id = s.open("", O_RDONLY, 0, 0).unwrap();
        assert_eq!(s.fchmod(id, 0xF1FF), Ok(0));
        let mut stat = Stat::default();
        s.fstat(id, &mut stat).unwrap();
        assert_eq!(stat.st_mode, MODE_CHR | 0o777);
    }

    #[test]
    fn fstat_returns_the_device_stat() {
        let mut s = scheme();
        let id = s.open("", O_RDONLY, 1000, 1000).unwrap();
        let mut stat = Stat::default();
        assert_eq!(s.fstat(id, &mut stat), Ok(0));
        assert_eq!(stat.st_mode, MODE_CHR | 0o644);
        assert_eq!((stat.st_uid, stat.st_gid), (0, 0));
    }

    #[test]
    fn control_calls() {
        let mut s = scheme();
        let id = s.open("", O_RDONLY, 0, 0).unwrap();
        assert_eq!(s.fcntl(id, 3, 0), Ok(0));
        assert_eq!(s.fevent(id, EventFlags::empty()), Ok(EVENT_READ));
        let mut buf = [0u8; 16];
        let len = s.fpath(id, &mut buf).unwrap();
        assert_eq!(&buf[..len], b"rand");
        assert_eq!(s.close(id), Ok(0));
    }

    #[test]
    fn unknown_ids_are_ebadf() {
        let mut s = scheme();
        let id = s.open("", O_RDWR, 0, 0).unwrap();
        s.close(id).unwrap();
        let ebadf = Err(Error::new(EBADF));
        assert_eq!(s.read(id, &mut [0u8; 4]), ebadf);
        assert_eq!(s.write(id, b"x"), ebadf);
        assert_eq!(s.fchmod(id, 0o777), ebadf);
        assert_eq!(s.fchown(id, 0, 0), ebadf);
        assert_eq!(s.fcntl(id, 0, 0), ebadf);
        assert_eq!(s.fevent(id, EVENT_READ).map(|f| f.bits()), ebadf);
        assert_eq!(s.fpath(id, &mut [0u8; 8]), ebadf);
        assert_eq!(s.fstat(id, &mut Stat::default()), ebadf);
        assert_eq!(s.close(id), ebadf);
        assert_eq!(s.dup(id, b"x"), ebadf);
    }

    #[test]
    fn ids_wrap_and_skip_live_ones() {
        let mut s = scheme();
        let first = s.open("", O_RDONLY, 0, 0).unwrap();
        let second = s.open("", O_RDONLY, 0, 0).unwrap();
        assert_eq!((first, second), (0, 1));

        s.next_id = usize::MAX;
        assert_eq!(s.open("", O_RDONLY, 0, 0), Ok(usize::MAX));
        assert_eq!(s.open("", O_RDONLY, 0, 0), Ok(2), "wrapped past live 0 and 1");
        s.close(first).unwrap();
        s.next_id = usize::MAX - 1;
        assert_eq!(s.open("", O_RDONLY, 0, 0), Ok(usize::MAX - 1));
        assert_eq!(s.open("", O_RDONLY, 0, 0), Ok(0), "skips live MAX, reuses closed 0");
    }
}
