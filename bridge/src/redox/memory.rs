//! Caller memory: the kernel's pointer+length fields (`Packet.b/c/d`, `Sqe.args`) turned into
//! copies of the caller's bytes and back. The Redox kernel maps the caller's buffers into this
//! process until the request is answered; this file is the only place that touches them, and
//! every copy is bounded by the length the kernel gave. No Rust reference to caller memory is
//! ever formed: other threads of the caller may use it meanwhile, so only raw copies are made.

#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use scheme_protocol::Errno;

/// The promise that every pointer+length pair in the requests the translator reads is caller
/// memory mapped into this process until that request is answered. The Redox kernel keeps it
/// for its scheme sockets ([`super::sys`] hands one out with the socket); anything else that
/// feeds the translator (a test kernel) must keep it itself, which is why making one is
/// `unsafe`.
#[derive(Debug, Clone, Copy)]
pub struct CallerMemory {
    _promise: (),
}

impl CallerMemory {
    /// Promises that caller memory is mapped as the kernel says.
    ///
    /// # Safety
    ///
    /// For as long as the translator given this value runs, every request it reads must carry,
    /// in the fields the protocol defines as pointer and length, memory that is mapped in this
    /// process, readable for in-buffers (paths, write data, dup buffers, times) and writable
    /// for out-buffers (read data, fpath, stat, statvfs, dirents), for at least that many
    /// bytes, and that stays so until the translator has written the answer to that request
    /// (requests that are never answered, such as one-way messages, until the translator
    /// stops). A pointer of 0 is refused (`EFAULT`) unless its length is 0.
    pub unsafe fn assume_mapped() -> CallerMemory {
        CallerMemory { _promise: () }
    }

    /// For a socket just registered with the Redox kernel, which maps caller memory itself.
    #[cfg(target_os = "redox")]
    pub(crate) fn from_redox_kernel() -> CallerMemory {
        CallerMemory { _promise: () }
    }

    /// The `len` bytes at `addr` in caller memory. `EFAULT` for a null pointer with a length,
    /// or a range that wraps around the address space.
    pub(crate) fn region(self, addr: usize, len: usize) -> Result<Region, Errno> {
        if len == 0 {
            return Ok(Region { addr: 0, len: 0 });
        }
        if addr == 0 || addr.checked_add(len).is_none() {
            return Err(Errno::EFAULT);
        }
        Ok(Region { addr, len })
    }
}

/// A caller buffer. Only [`CallerMemory::region`] makes one, so it is covered by that promise;
/// it is neither `Clone` nor `Copy`, and writing consumes it, so each out-buffer is written at
/// most once, before its request is answered.
#[derive(Debug)]
pub(crate) struct Region {
    /// Address in this process (0 when `len` is 0).
    addr: usize,
    len: usize,
}

/// The daemon's answer did not fit in the caller's buffer; nothing was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

impl Region {
    /// The buffer's length, as the kernel gave it.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first `len` bytes (or all of them, if fewer).
    pub(crate) fn prefix(self, len: usize) -> Region {
        Region { addr: self.addr, len: len.min(self.len) }
    }

    /// Copies the first `max` bytes (at most the whole buffer) out of caller memory.
    pub(crate) fn read(&self, max: usize) -> Vec<u8> {
        let len = max.min(self.len);
        let mut copy = vec![0u8; len];
        if len > 0 {
            let src = std::ptr::with_exposed_provenance::<u8>(self.addr);
            // SAFETY: `src..src + len` lies inside the region the kernel gave (len <= self.len),
            // which the `CallerMemory` promise says is mapped and readable until the request is
            // answered; requests are only answered after their buffers are copied. `copy` is a
            // fresh allocation of `len` bytes; `ptr::copy` tolerates overlap anyway.
            unsafe { std::ptr::copy(src, copy.as_mut_ptr(), len) };
        }
        copy
    }

    /// Copies `data` to the start of the buffer, or nothing if it does not fit.
    pub(crate) fn write(self, data: &[u8]) -> Result<(), TooLarge> {
        if data.len() > self.len {
            return Err(TooLarge);
        }
        if !data.is_empty() {
            let dst = std::ptr::with_exposed_provenance_mut::<u8>(self.addr);
            // SAFETY: `dst..dst + data.len()` lies inside the region (checked just above), which
            // the `CallerMemory` promise says is mapped and writable until the request is
            // answered, and this runs before the answer is written. `data` is our own memory;
            // `ptr::copy` tolerates overlap anyway.
            unsafe { std::ptr::copy(data.as_ptr(), dst, data.len()) };
        }
        Ok(())
    }
}
