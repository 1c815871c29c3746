//! The payload region: a shared memory file that a spawned daemon and its caller side both map,
//! so large read and write payloads skip the pipe (PROTOCOL.md, "Payload region"). The caller
//! side makes it and divides it into slots; a `ReadRegion`/`WriteRegion` call names a slot by
//! byte offset, and only small frames cross the pipe.
//!
//! Each side treats the region as the other side's memory: the only accesses are the bounded
//! raw copies below, atomics (the frame rings' indices and flags, `ring.rs`), and the one slice
//! ever formed over it (`Region::shared_bytes`), which goes straight to the kernel, never read
//! by Rust code. So a peer that writes to it at any time can garble payload bytes and ring
//! indices (which the rings check) but break nothing else.

#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::fs::{
    fcntl_add_seals, fcntl_get_seals, fstat, ftruncate, memfd_create, MemfdFlags, SealFlags,
};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// The environment variable that tells a spawned daemon which descriptor is its region.
pub const ENV_FD: &str = "SCHEME_BRIDGE_REGION_FD";

/// The environment variable that turns regions off (`0`) for a caller side.
pub const ENV_ENABLE: &str = "SCHEME_BRIDGE_REGION";

/// A mapped shared memory file.
#[derive(Debug)]
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    file: OwnedFd,
}

// SAFETY: the mapping is plain shared memory owned by this value; every access is a raw copy
// bounded by `len`, valid from any thread, and it is unmapped only on drop.
unsafe impl Send for Region {}
// SAFETY: as above; the only references into the mapping that methods hand out are to atomics,
// which are `Sync` themselves, and the slice of `shared_bytes`, which only the kernel reads.
unsafe impl Sync for Region {}

impl Region {
    /// A new zeroed region of `len` bytes (a memfd, closed on exec), sealed at that size: a
    /// peer that could shrink it would make our next access to the cut pages a SIGBUS.
    pub fn create(len: usize) -> io::Result<Region> {
        let file =
            memfd_create("scheme-bridge-region", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        ftruncate(&file, len as u64)?;
        fcntl_add_seals(&file, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        Region::map(file)
    }

    /// Maps the shared memory file `file` (its whole size). It must be sealed against
    /// shrinking, so no peer can cut pages out from under the mapping.
    pub fn map(file: OwnedFd) -> io::Result<Region> {
        if !fcntl_get_seals(&file).is_ok_and(|seals| seals.contains(SealFlags::SHRINK)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "region not sealed against shrinking",
            ));
        }
        let len = usize::try_from(fstat(&file)?.st_size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "region size"))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty region"));
        }
        let flags = ProtFlags::READ | ProtFlags::WRITE;
        // SAFETY: a fresh shared mapping of a file we own, at an address the kernel picks; it
        // aliases no Rust object, and it stays mapped until `drop` unmaps it.
        let addr = unsafe { mmap(std::ptr::null_mut(), len, flags, MapFlags::SHARED, &file, 0)? };
        let base = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Region { base, len, file })
    }

    /// Bytes in the region.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes (never, once mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of `len` bytes at `at`, if they lie inside the region (for a packet's
    /// pointer, which the daemon's scheme reads or writes like caller memory).
    pub(crate) fn address(&self, at: u64, len: u64) -> Option<usize> {
        let (at, len) = (usize::try_from(at).ok()?, usize::try_from(len).ok()?);
        (at.checked_add(len)? <= self.len).then(|| self.base.as_ptr() as usize + at)
    }

    /// Copies `data` into the region at `at`; `false` (nothing copied) if it does not fit.
    pub fn copy_in(&self, at: u64, data: &[u8]) -> bool {
        let Some(addr) = self.address(at, data.len() as u64) else { return false };
        // SAFETY: `address` checked that the range lies inside our live mapping, which no Rust
        // reference aliases; `data` is a separate allocation. A peer writing the same bytes
        // meanwhile garbles them, which is its own payload.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
        true
    }

    /// The `len` bytes at `at` as a slice, to hand to a system call that copies them (the reply
    /// to a FUSE read: this skips copying a read's answer out of its slot first); `None` if
    /// they do not lie inside the region.
    ///
    /// # Safety
    ///
    /// The peer may change these bytes at any moment, so no Rust code may read through the
    /// slice: it may only be given to the kernel, which copies whatever is there.
    pub(crate) unsafe fn shared_bytes(&self, at: u64, len: u64) -> Option<&[u8]> {
        let addr = self.address(at, len)?;
        // SAFETY: `address` checked that the range lies inside our mapping, which is readable
        // and initialised (file pages, zero-filled when new) and lives as long as `self`; the
        // caller lets only the kernel read it.
        Some(unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) })
    }

    /// A copy of the `len` bytes at `at`; `None` if they do not lie inside the region.
    pub fn copy_out(&self, at: u64, len: u64) -> Option<Vec<u8>> {
        let addr = self.address(at, len)?;
        let len = len as usize;
        let mut out = Vec::with_capacity(len);
        // SAFETY: as in `copy_in`, the source range is inside our live mapping; `out` has room
        // for `len` bytes, and all `len` are initialised by the copy before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), len);
            out.set_len(len);
        }
        Some(out)
    }

    /// Copies the bytes at `at` into `out`; `false` (nothing copied) if they do not lie
    /// inside the region.
    pub fn copy_to(&self, at: u64, out: &mut [u8]) -> bool {
        let Some(addr) = self.address(at, out.len() as u64) else { return false };
        // SAFETY: as in `copy_in`, the source range is inside our live mapping and `out` is a
        // separate allocation of exactly that length.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), out.len()) };
        true
    }

    /// The 8 bytes at `at` as an atomic, shared with the peer; `None` if they are outside the
    /// region or not 8-aligned.
    pub fn atomic_u64(&self, at: u64) -> Option<&AtomicU64> {
        let addr = self.address(at, 8).filter(|addr| addr % 8 == 0)?;
        // SAFETY: inside our mapping (checked), aligned (checked), initialised (file pages),
        // and mapped as long as `self` lives, which bounds the reference. `AtomicU64` has the
        // layout of a `u64`, and atomics may be changed at any time by the peer's atomics.
        Some(unsafe { &*(addr as *const AtomicU64) })
    }

    /// The 4 bytes at `at` as an atomic (a futex word), as [`Region::atomic_u64`].
    pub(crate) fn atomic_u32(&self, at: u64) -> Option<&AtomicU32> {
        let addr = self.address(at, 4).filter(|addr| addr % 4 == 0)?;
        // SAFETY: as in `atomic_u64`.
        Some(unsafe { &*(addr as *const AtomicU32) })
    }

    /// The shared memory file, for handing to a daemon.
    pub fn file(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no reference into it exists.
        if let Err(err) = unsafe { munmap(self.base.as_ptr().cast::<c_void>(), self.len) } {
            log::warn!("cannot unmap the payload region: {err}");
        }
    }
}

/// A region divided into equal slots, handed out one per call in flight.
#[derive(Debug)]
pub struct Slots {
    region: Arc<Region>,
    size: usize,
    free: Mutex<Vec<u64>>,
}

impl Slots {
    /// `count` slots of `size` bytes in a new region.
    pub fn create(count: usize, size: usize) -> io::Result<Arc<Slots>> {
        Slots::create_with_room(count, size, 0)
    }

    /// `count` slots of `size` bytes at the start of a new region with `room` bytes more after
    /// them (the frame rings).
    fn create_with_room(count: usize, size: usize, room: usize) -> io::Result<Arc<Slots>> {
        let region = Arc::new(Region::create(count * size + room)?);
        let free = (0..count).rev().map(|i| (i * size) as u64).collect();
        Ok(Arc::new(Slots { region, size, free: Mutex::new(free) }))
    }

    /// The region the slots are in.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The region the slots are in, shared (for the frame rings after the slots).
    pub(crate) fn shared_region(&self) -> Arc<Region> {
        Arc::clone(&self.region)
    }

    /// Bytes per slot: the largest payload that goes through the region.
    pub fn slot_size(&self) -> usize {
        self.size
    }

    /// A free slot, or `None` when all are in use (the call then carries its payload inline).
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        let at = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop()?;
        Some(Slot { slots: Arc::clone(self), at, kept: false })
    }
}

/// One slot while a call uses it; it goes back to the free list when dropped, unless
/// [`Slot::keep_out`] said the daemon may still be using it.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    at: u64,
    kept: bool,
}

impl Slot {
    /// The slot's byte offset in the region (what the call names).
    pub fn at(&self) -> u64 {
        self.at
    }

    /// The region the slot is in.
    pub fn region(&self) -> &Region {
        &self.slots.region
    }

    /// Never reuse this slot: its call ended without the daemon's answer (interrupted), so
    /// the daemon may still read or write it.
    pub fn keep_out(mut self) {
        self.kept = true;
        log::debug!(
            "payload slot at {} retired: its call ended before the daemon answered",
            self.at
        );
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.kept {
            self.slots.free.lock().unwrap_or_else(PoisonError::into_inner).push(self.at);
        }
    }
}

/// Slots per region: calls in flight with a payload in the region; more go inline.
pub const SLOTS: usize = 8;

/// Bytes per slot: the largest FUSE read or write (256 pages).
pub const SLOT_SIZE: usize = 1 << 20;

/// Whether the daemon `command` starts should get a region: not if [`ENV_ENABLE`] is `0` in
/// its environment (set on `command`, or inherited from this process).
pub fn enabled_for(command: &Command) -> bool {
    let set = command.get_envs().find(|(key, _)| *key == ENV_ENABLE).map(|(_, value)| value);
    let value = match set {
        Some(value) => value.map(|v| v.to_string_lossy().into_owned()),
        None => std::env::var(ENV_ENABLE).ok(),
    };
    value.is_none_or(|v| v.trim() != "0")
}

/// Makes a region for the daemon `command` will start, if regions are enabled, and arranges
/// for the daemon to inherit it: its descriptor stays open across exec in that child only,
/// and [`ENV_FD`] names it. `None` (nothing changed) if disabled or the memfd cannot be made.
pub(crate) fn offer(command: &mut Command) -> Option<Arc<Slots>> {
    if !enabled_for(command) {
        return None;
    }
    let slots = match Slots::create_with_room(SLOTS, SLOT_SIZE, crate::ring::AREA) {
        Ok(slots) => slots,
        Err(err) => {
            log::warn!("no payload region ({err}); payloads go through the pipe");
            return None;
        }
    };
    let raw = slots.region().file().as_raw_fd();
    command.env(ENV_FD, raw.to_string());
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: it makes one fcntl system call and allocates nothing. `raw` is open in
    // the child (a copy of ours, which `slots` keeps open until `spawn` has returned).
    unsafe {
        command.pre_exec(move || {
            let file = BorrowedFd::borrow_raw(raw);
            rustix::io::fcntl_setfd(file, rustix::io::FdFlags::empty())?;
            Ok(())
        })
    };
    Some(slots)
}

/// The region a spawning caller side handed this daemon ([`ENV_FD`]), mapped. Only a
/// descriptor that is this project's memfd is taken (opened anew through `/proc/self/fd`), so
/// a stray variable naming some other file maps nothing.
pub(crate) fn from_env() -> Option<Region> {
    if std::env::var(ENV_ENABLE).is_ok_and(|v| v.trim() == "0") {
        return None;
    }
    let raw: i32 = std::env::var(ENV_FD).ok()?.trim().parse().ok()?;
    let link = std::fs::read_link(format!("/proc/self/fd/{raw}")).ok()?;
    if !link.to_string_lossy().starts_with("/memfd:scheme-bridge-region") {
        log::warn!("{ENV_FD}={raw} is not a payload region ({}); not used", link.display());
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{raw}"))
        .map_err(|err| log::warn!("cannot open the payload region: {err}"))
        .ok()?;
    Region::map(OwnedFd::from(file))
        .map_err(|err| log::warn!("cannot map the payload region: {err}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_file_share_bytes_and_refuse_ranges_outside() {
        let ours = Region::create(8192).unwrap();
        let theirs = Region::map(rustix::io::dup(ours.file()).unwrap()).unwrap();
        assert_eq!(theirs.len(), 8192);
        assert!(ours.copy_in(4000, b"shared bytes"));
        assert_eq!(theirs.copy_out(4000, 12).unwrap(), b"shared bytes");
        assert!(!ours.copy_in(8190, b"abc"), "past the end");
        assert!(theirs.copy_out(8192, 1).is_none());
        assert!(theirs.copy_out(u64::MAX, 2).is_none(), "wrapping range");
        assert_eq!(theirs.copy_out(8192, 0).unwrap(), b"", "an empty range at the end");
        assert!(ours.address(0, 8193).is_none() && ours.address(1, 8191).is_some());
    }

    #[test]
    fn slots_are_handed_out_once_returned_on_drop_and_retired_when_kept_out() {
        let slots = Slots::create(2, 4096).unwrap();
        let first = slots.take().unwrap();
        let second = slots.take().unwrap();
        assert_ne!(first.at(), second.at());
        assert!(slots.take().is_none(), "both in use");
        drop(first);
        let again = slots.take().unwrap();
        second.keep_out();
        assert!(slots.take().is_none(), "one in use, one retired");
        drop(again);
        assert!(slots.take().is_some());
    }

    #[test]
    fn an_unsealed_or_empty_file_is_no_region() {
        let empty = memfd_create("empty", MemfdFlags::CLOEXEC).unwrap();
        assert!(Region::map(empty).is_err());
        let unsealed = memfd_create("unsealed", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&unsealed, 8192).unwrap();
        assert!(Region::map(unsealed).is_err(), "a peer could shrink it under the mapping");
    }

    #[test]
    fn nobody_can_resize_a_region() {
        let region = Region::create(8192).unwrap();
        let peer = rustix::io::dup(region.file()).unwrap();
        assert!(ftruncate(&peer, 0).is_err(), "shrinking would SIGBUS the other side");
        assert!(ftruncate(&peer, 1 << 20).is_err());
        let seals = fcntl_get_seals(&peer).unwrap();
        assert!(fcntl_add_seals(&peer, SealFlags::WRITE).is_err(), "seals are final: {seals:?}");
        assert!(region.copy_in(8000, b"still writable"));
    }
}
