//! A page-aligned byte buffer for O_DIRECT, without `unsafe`: a `Vec` one alignment larger than
//! needed, used from its first aligned byte. The `Vec` is never resized, so its heap block (and
//! the alignment of the window into it) stays put for the buffer's life.

use anyhow::{ensure, Result};

/// The alignment O_DIRECT asks for on every file system here (the page size).
pub(crate) const ALIGN: usize = 4096;

/// `len` bytes starting at an address that is a multiple of [`ALIGN`].
#[derive(Debug)]
pub(crate) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` bytes, each set to a repeating non-zero pattern (so no file system can
    /// store it as a hole).
    pub(crate) fn new(len: usize) -> Result<AlignedBuf> {
        let storage: Vec<u8> = (0..len + ALIGN).map(|i| (i % 251) as u8 | 1).collect();
        let start = storage.as_ptr().align_offset(ALIGN);
        ensure!(start < ALIGN, "cannot align a buffer to {ALIGN} bytes");
        Ok(AlignedBuf { storage, start, len })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_aligned_and_as_long_as_asked() {
        for len in [1, 4096, 128 << 10] {
            let mut buf = AlignedBuf::new(len).unwrap();
            assert_eq!(buf.as_slice().as_ptr() as usize % ALIGN, 0);
            assert_eq!(buf.as_mut_slice().len(), len);
            assert!(buf.as_slice().iter().all(|&b| b != 0));
        }
    }
}
