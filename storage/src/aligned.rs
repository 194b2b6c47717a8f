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

    /// Appends `src` like [`AlignedBuf::extend_from_slice`], but with non-temporal stores on
    /// x86-64: the bytes go to memory without first reading the destination's cache lines in.
    /// For large write buffers, whose memory is cold (it last held batches the tail cache has
    /// since evicted): an ordinary copy reads every destination line from memory before
    /// overwriting it. Measured with a C loop on this project's 2-core AMD EPYC VM, copying
    /// 1 MiB into a 64 MiB ring of buffers: 13.5 GB/s ordinary, 22 GB/s streaming (and
    /// 41 vs 27 GB/s into a 4 MiB ring that stays cached, which is why small buffers keep
    /// the ordinary copy). Readers of the stored bytes (the device's DMA, the tail cache)
    /// read them from memory as before.
    pub fn extend_from_slice_streaming(&mut self, src: &[u8]) {
        assert!(self.len + src.len() <= self.cap, "AlignedBuf overflow");
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: destination range len..len+src.len() is inside the allocation (checked
            // above) and cannot overlap `src` (borrowed immutably from elsewhere).
            unsafe { stream_copy(self.ptr.as_ptr().add(self.len), src) };
            self.len += src.len();
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.extend_from_slice(src);
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

/// Copies `src` to `dst` with 16-byte non-temporal stores (SSE2, part of every x86-64 CPU),
/// then fences them so later ordinary stores and the io_uring submission see the bytes.
///
/// # Safety
/// `dst..dst + src.len()` must be writable and must not overlap `src`.
#[cfg(target_arch = "x86_64")]
unsafe fn stream_copy(dst: *mut u8, src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    const CHUNK: usize = 64;
    let n = src.len();
    // Up to the first 16-byte aligned destination address, and everything if the copy is too
    // short for streaming to matter, an ordinary copy.
    let head = (dst as usize).wrapping_neg() % 16;
    if n < head + 4 * CHUNK {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, n);
        return;
    }
    std::ptr::copy_nonoverlapping(src.as_ptr(), dst, head);
    let mut i = head;
    while i + CHUNK <= n {
        let s = src.as_ptr().add(i);
        let d = dst.add(i);
        let a = _mm_loadu_si128(s.cast::<__m128i>());
        let b = _mm_loadu_si128(s.add(16).cast::<__m128i>());
        let c = _mm_loadu_si128(s.add(32).cast::<__m128i>());
        let e = _mm_loadu_si128(s.add(48).cast::<__m128i>());
        // `d` is 16-byte aligned: dst + head is, and i - head is a multiple of 64.
        _mm_stream_si128(d.cast::<__m128i>(), a);
        _mm_stream_si128(d.add(16).cast::<__m128i>(), b);
        _mm_stream_si128(d.add(32).cast::<__m128i>(), c);
        _mm_stream_si128(d.add(48).cast::<__m128i>(), e);
        i += CHUNK;
    }
    std::ptr::copy_nonoverlapping(src.as_ptr().add(i), dst.add(i), n - i);
    _mm_sfence();
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

    #[test]
    fn streaming_copy_matches_ordinary_copy_at_every_alignment() {
        let src: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for start in [0usize, 1, 3, 15, 16, 17, 63, 4095] {
            for len in [0usize, 1, 255, 256, 300, 4096, 65_537, 69_000] {
                let from = start % 13;
                let piece = &src[from..from + len];
                let mut a = AlignedBuf::with_capacity(start + len + 16);
                a.extend_from_slice(&vec![9u8; start]);
                a.extend_from_slice_streaming(piece);
                a.extend_from_slice_streaming(&[1, 2]);
                assert_eq!(a.len(), start + len + 2);
                assert_eq!(
                    &a.as_slice()[start..start + len],
                    piece,
                    "start {start} len {len}"
                );
                assert_eq!(&a.as_slice()[start + len..], &[1, 2]);
                assert!(a.as_slice()[..start].iter().all(|&x| x == 9));
            }
        }
    }
}
