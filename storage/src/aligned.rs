//! A heap buffer aligned to 4 KiB for O_DIRECT writes and reads.
//!
//! Invariants: the allocation is `cap` bytes (a non-zero multiple of [`BLOCK_BYTES`]) aligned to
//! [`BLOCK_BYTES`]; bytes `0..len` are initialised; `len <= cap`. The buffer is filled once and
//! then handed to io_uring (via compio's [`IoBuf`]) and finally to `Bytes::from_owner` so the tail
//! cache can serve slices of it without a copy.

use std::alloc::{alloc, dealloc, Layout};
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use crate::runtime::{IoBuf, IoBufMut, SetLen};

/// O_DIRECT alignment for buffer address, file position and length.
pub const BLOCK_BYTES: usize = 4096;

pub(crate) fn round_up(n: usize) -> usize {
    n.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

pub(crate) fn round_down(n: u64) -> u64 {
    n & !(BLOCK_BYTES as u64 - 1)
}

/// Keeps large allocations (write buffers up to 16 MiB) on the malloc heap instead of fresh
/// mmaps: with glibc's default threshold every writer buffer was a new mapping, and filling it
/// cost one page fault per 4 KiB (about one fault per 4 KiB written, measured by the storage
/// bench). Process-wide; call once at start-up (the broker and the storage benchmark do).
pub fn keep_large_buffers_in_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; called before heavy allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Returns the allocator's free memory to the kernel (glibc's `malloc_trim`, every arena).
/// For idle moments: it walks the heaps, and other threads' allocations wait meanwhile.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A fixed-capacity 4 KiB-aligned byte buffer.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation (like Vec<u8>); no interior shared state.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]` to initialised bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates at least `min_cap` bytes (rounded up to whole blocks, at least one). The bytes
    /// are not zeroed (a 16 MiB memset per write showed up in the writer's profile): only
    /// `0..len` is ever read, and every byte below `len` was written first.
    pub fn with_capacity(min_cap: usize) -> AlignedBuf {
        let cap = round_up(min_cap.max(1));
        let layout = Self::layout(cap);
        // SAFETY: layout has non-zero size (cap >= BLOCK_BYTES) and valid power-of-two alignment.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len: 0, cap }
    }

    fn layout(cap: usize) -> Layout {
        match Layout::from_size_align(cap, BLOCK_BYTES) {
            Ok(l) => l,
            // cap is a multiple of 4096 far below isize::MAX for any buffer we build.
            Err(_) => panic!("invalid aligned buffer layout {cap}"),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: 0..len is inside the allocation and initialised (written by extend_from_slice
        // or pad_to_block before len moved past it).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Appends `src`. Panics if capacity would be exceeded (a sizing bug, not an input problem).
    pub fn extend_from_slice(&mut self, src: &[u8]) {
        assert!(self.len + src.len() <= self.cap, "AlignedBuf overflow");
        // SAFETY: destination range len..len+src.len() is inside the allocation (checked above)
        // and cannot overlap `src`, which is borrowed immutably from elsewhere.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(self.len), src.len());
        }
        self.len += src.len();
    }

    /// Extends `len` to the next block boundary, writing zeros into the padding (it reaches the
    /// disk past the logical end of the segment, where recovery expects zeros or garbage).
    pub fn pad_to_block(&mut self) {
        let padded = round_up(self.len);
        assert!(padded <= self.cap);
        // SAFETY: len..padded is inside the allocation (padded <= cap, checked above).
        unsafe {
            std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, padded - self.len);
        }
        self.len = padded;
    }

    /// Shrinks the visible length (e.g. to hide padding before sharing as `Bytes`).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated in with_capacity with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl IoBuf for AlignedBuf {
    fn as_init(&self) -> &[u8] {
        self.as_slice()
    }
}

// An O_DIRECT read fills the buffer from its start (compio reads into `as_uninit` and then sets
// the length to what was read).
impl SetLen for AlignedBuf {
    unsafe fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "AlignedBuf overflow");
        self.len = len;
    }
}

impl IoBufMut for AlignedBuf {
    fn as_uninit(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: the allocation is `cap` bytes; MaybeUninit makes no claim about their
        // contents, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.cap) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_padding() {
        let mut b = AlignedBuf::with_capacity(5000);
        assert_eq!(b.capacity(), 8192);
        assert_eq!(b.as_slice().as_ptr() as usize % BLOCK_BYTES, 0);
        b.extend_from_slice(&[1, 2, 3]);
        b.pad_to_block();
        assert_eq!(b.len(), 4096);
        assert_eq!(&b.as_slice()[..4], &[1, 2, 3, 0]);
        let bytes = bytes::Bytes::from_owner(b);
        assert_eq!(bytes.len(), 4096);
    }
}
