//! One segment: `<base>.log` plus its in-memory sparse indexes, and the file-level helpers
//! (open/create with O_DIRECT fallback, preallocation, chunked scanning, batch reads).
//!
//! Invariants: `size` is the logical length of the segment (bytes of complete, written batches);
//! the physical file may be longer (O_DIRECT block padding, zeros) until the segment is sealed or
//! the log is closed, when it is truncated to `size`. `next_offset` is one past the last written
//! batch. Only the active (last) segment has a `write_file` and a `tail` (the partial last 4 KiB
//! block, `size % 4096` bytes, rewritten with the next write).

use std::io;
use std::path::{Path, PathBuf};

use crate::runtime::{AsyncReadAt, AsyncReadAtExt};
use crate::runtime::{File, OpenOptions};
use bytes::Bytes;

use crate::aligned::{round_down, AlignedBuf, BLOCK_BYTES};
use crate::batch::{BatchHeader, BATCH_HEADER_BYTES};
use crate::config::IoMode;
use crate::index::{IndexSummary, SegmentIndex};
use crate::scan::{scan_from, ScanStop, ScannedBatch};
use crate::txnindex::TxnSummary;

/// Largest chunk read at once by the recovery scanner.
const SCAN_CHUNK_BYTES: u64 = 8 << 20;
/// Its first chunk, doubled after each chunk of whole batches: where the valid data ends
/// soon (an active segment's preallocated zeros after a crash), little of the zeros is read.
const SCAN_FIRST_CHUNK_BYTES: u64 = 256 << 10;
/// Read-ahead beyond `max_bytes` for disk reads (covers the skip from the index entry).
const READ_SLACK_BYTES: usize = 64 << 10;

pub(crate) fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// Base offset of a `<20 digits>.log` file name.
pub(crate) fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub(crate) struct Segment {
    /// Unique in the process: a segment replaced under a read (a cleaner swap, a truncation)
    /// is a new `Segment` with the same path but another id.
    pub id: u64,
    pub base_offset: i64,
    pub path: PathBuf,
    pub read_file: File,
    pub write_file: Option<File>,
    pub size: u64,
    pub next_offset: i64,
    pub index: SegmentIndex,
    pub max_timestamp: i64,
    pub max_timestamp_offset: i64,
    pub tail: Vec<u8>,
    /// An O_DIRECT read handle, opened for reads from the disk when the log writes with
    /// O_DIRECT (see `Log::read`); at most one sealed segment of a log keeps one.
    pub direct_read: Option<File>,
    /// End of the space reserved with fallocate (see [`PREALLOCATE_STEP_BYTES`]).
    pub allocated_end: u64,
    /// A sealed segment's aborted transactions, summed up (`None`: none); the entries are in
    /// its `.txnindex` (see `txnindex.rs`). Unused on the active segment.
    pub aborted: Option<TxnSummary>,
}

impl Segment {
    pub fn new(base_offset: i64, path: PathBuf, read_file: File) -> Segment {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Segment {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            base_offset,
            path,
            read_file,
            write_file: None,
            size: 0,
            next_offset: base_offset,
            index: SegmentIndex::default(),
            max_timestamp: -1,
            max_timestamp_offset: -1,
            tail: Vec::new(),
            direct_read: None,
            allocated_end: 0,
            aborted: None,
        }
    }

    pub fn rel(&self, offset: i64) -> u32 {
        (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32
    }

    /// Bookkeeping for a batch now complete in the file at `pos`.
    pub fn on_batch(&mut self, b: &ScannedBatch, interval: u32) {
        if b.max_timestamp > self.max_timestamp {
            self.max_timestamp = b.max_timestamp;
            self.max_timestamp_offset = b.last_offset;
        }
        let rel = self.rel(b.base_offset);
        self.index
            .on_batch(rel, b.position as u32, b.size, self.max_timestamp, interval);
        self.size = b.position + b.size as u64;
        self.next_offset = b.last_offset + 1;
    }

    pub fn summary(&self) -> IndexSummary {
        IndexSummary {
            base_offset: self.base_offset,
            log_size: self.size,
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            max_timestamp_offset: self.max_timestamp_offset,
        }
    }

    pub fn index_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.path.with_extension("index"),
            self.path.with_extension("timeindex"),
        )
    }

    pub fn txn_index_path(&self) -> PathBuf {
        self.path.with_extension("txnindex")
    }
}

pub(crate) async fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).open(path).await
}

/// Opens (creating) the write handle. Returns the mode actually used: Direct falls back to
/// Buffered when the file system refuses O_DIRECT (EINVAL, e.g. tmpfs).
pub(crate) async fn open_write(path: &Path, mode: IoMode) -> io::Result<(File, IoMode)> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true);
    if mode == IoMode::Direct {
        let mut direct = opts.clone();
        direct.custom_flags(libc::O_DIRECT);
        match direct.open(path).await {
            Ok(f) => return Ok((f, IoMode::Direct)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(path = %path.display(), "O_DIRECT refused (EINVAL); using buffered I/O");
            }
            Err(e) => return Err(e),
        }
    }
    Ok((opts.open(path).await?, IoMode::Buffered))
}

/// Largest disk space window reserved ahead of the write position of an active segment.
/// Reserving a whole default segment (1 GiB) per partition would claim 100 GiB for 100
/// partitions before a byte is written; even 8 MiB per partition at creation filled a 60 GB
/// disk with 10,000 empty partitions. So nothing is reserved until a partition is written, the
/// window starts at [`PREALLOCATE_MIN_BYTES`] and doubles each time the writes reach it (a busy
/// partition gets the full window after a few writes, an idle one keeps a small one).
pub const PREALLOCATE_STEP_BYTES: u64 = 8 << 20;
/// First preallocation window of a partition (see [`PREALLOCATE_STEP_BYTES`]).
pub const PREALLOCATE_MIN_BYTES: u64 = 64 << 10;

/// Reserves `[offset, offset + len)` of the file behind `fd` and extends its size to cover it
/// (the active segment ends in zeros, which recovery truncates; close and roll cut it to the
/// exact length). Writes then stay inside the file: ext4 cannot issue an O_DIRECT write that
/// extends the file without blocking, so io_uring would hand every such write to a worker
/// thread. Best effort: returns false (and logs at debug) where fallocate is unsupported or the
/// disk is full. It blocks (see `Log::start_preallocation`, which runs it off the shard).
pub(crate) fn preallocate_range(fd: std::os::fd::BorrowedFd<'_>, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `fd` is borrowed, so it stays open for the duration of the call.
    let rc =
        unsafe { libc::fallocate(fd.as_raw_fd(), 0, offset as libc::off_t, len as libc::off_t) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            tracing::debug!(error = %e, "fallocate failed; continuing without preallocation");
        }
        return false;
    }
    true
}

/// Reads exactly `len` bytes at `pos`.
pub(crate) async fn read_at(file: &File, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    let buf = Vec::with_capacity(len);
    let crate::runtime::BufResult(res, buf) = file.read_exact_at(buf, pos).await;
    res?;
    Ok(buf)
}

/// Outcome of scanning a segment file from some position.
pub(crate) struct FileScan {
    pub batches: Vec<ScannedBatch>,
    /// Absolute end of the valid prefix.
    pub valid_end: u64,
    /// Why the scan stopped (`End`/`Zeros` are clean).
    pub stop: ScanStop,
    /// Bytes read from the file.
    pub read: u64,
}

/// Scans `file` from `start` to `file_len` in bounded chunks. Batch positions are absolute.
/// A batch claiming more than `batch_bytes_max` is treated as invalid (bounds memory). `each`
/// sees every valid batch's bytes with its absolute position, in file order.
pub(crate) async fn scan_file(
    file: &File,
    start: u64,
    file_len: u64,
    previous_last: Option<i64>,
    batch_bytes_max: u64,
    mut each: impl FnMut(u64, &[u8]),
) -> io::Result<FileScan> {
    let mut batches = Vec::new();
    let mut pos = start;
    let mut prev = previous_last;
    let mut chunk = SCAN_FIRST_CHUNK_BYTES;
    let mut read = 0;
    loop {
        let remaining = file_len.saturating_sub(pos);
        if remaining == 0 {
            return Ok(FileScan {
                batches,
                valid_end: pos,
                stop: ScanStop::End,
                read,
            });
        }
        let len = remaining.min(chunk);
        let buf = read_at(file, pos, len as usize).await?;
        read += len;
        let r = scan_from(&buf, prev);
        for b in &r.batches {
            let at = b.position as usize;
            if let Some(bytes) = buf.get(at..at + b.size as usize) {
                each(pos + b.position, bytes);
            }
            let mut b = *b;
            b.position += pos;
            prev = Some(b.last_offset);
            batches.push(b);
        }
        let end = pos + r.valid_len;
        match r.stop {
            ScanStop::Incomplete { needed } if len < remaining => {
                if needed > batch_bytes_max {
                    return Ok(FileScan {
                        batches,
                        valid_end: end,
                        stop: ScanStop::Incomplete { needed },
                        read,
                    });
                }
                // The chunk ended inside a batch: continue from its start, big enough to hold it.
                chunk = chunk.max(needed);
                pos = end;
            }
            ScanStop::End if len < remaining => {
                chunk = (chunk * 2).min(SCAN_CHUNK_BYTES).max(chunk);
                pos = end;
            }
            stop => {
                return Ok(FileScan {
                    batches,
                    valid_end: end,
                    stop,
                    read,
                })
            }
        }
    }
}

/// How [`read_batches`] reads a segment file.
pub(crate) enum ReadVia {
    /// Through the page cache (the segment's `read_file`).
    Buffered(File),
    /// An O_DIRECT handle: the disk reads into our buffer, nothing passes the page cache.
    Direct(File),
}

impl ReadVia {
    /// Exactly `len` bytes at `pos`.
    pub(crate) async fn read(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        match self {
            ReadVia::Buffered(file) => Ok(Bytes::from(read_at(file, pos, len).await?)),
            ReadVia::Direct(file) => read_direct(file, pos, len).await,
        }
    }
}

/// Opens an O_DIRECT read handle (`EINVAL`: the file system refuses O_DIRECT).
pub(crate) async fn open_direct_read(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).custom_flags(libc::O_DIRECT);
    opts.open(path).await
}

/// Exactly `len` bytes at `pos` through an O_DIRECT handle: the whole blocks around them are
/// read into an aligned buffer, and the bytes asked for come back as a slice of it.
///
/// Why: a buffered read of data the writer wrote with O_DIRECT misses the page cache, and
/// filling fresh page-cache pages cost 2 s of CPU per GB on this VM (perf: 83 % of the broker's
/// samples in `_copy_to_iter` during a cold consume); the aligned buffers come from the heap,
/// warm after the first reads.
async fn read_direct(file: &File, pos: u64, len: usize) -> io::Result<Bytes> {
    let start = round_down(pos);
    let skip = (pos - start) as usize;
    let buf = AlignedBuf::with_capacity(skip + len);
    let crate::runtime::BufResult(res, buf) = file.read_at(buf, start).await;
    let n = res?;
    if n < skip + len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("O_DIRECT read at {start}: {n} bytes, wanted {}", skip + len),
        ));
    }
    Ok(Bytes::from_owner(buf).slice(skip..skip + len))
}

/// What [`read_batches`] found: whole batches, and where the next ones start.
#[derive(Default)]
pub(crate) struct BatchesRead {
    pub chunks: Vec<Bytes>,
    /// File position and offset right after the last batch in `chunks` (meaningless if empty).
    pub next_pos: u64,
    pub next_offset: i64,
    /// Nothing came back because the batch holding `offset` is larger than `max_bytes` (only
    /// without `min_one`): the file position and the bytes from it that were read.
    pub too_big: Option<(u64, Bytes)>,
}

/// Bytes a read asks for beyond what it returns (the batch before `offset` the sparse index
/// points at, and room to finish the last batch).
pub(crate) fn read_len(max_bytes: usize) -> usize {
    max_bytes.saturating_add(READ_SLACK_BYTES)
}

/// Whole batches from the one containing `offset`, reading the file from `pos` (a position at
/// or before that batch, from the index) and never past `end`, at most `max_bytes` (with
/// `min_one`, at least one batch however large; without, none if the first is larger: see
/// [`BatchesRead::too_big`]), only batches whose base offset is below `below`; none if no such
/// batch holds `offset`. `prefetched`: bytes of the file from `pos` already read (a read-ahead),
/// used before reading more.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_batches(
    via: &ReadVia,
    mut pos: u64,
    end: u64,
    offset: i64,
    max_bytes: usize,
    min_one: bool,
    below: i64,
    mut prefetched: Option<Bytes>,
) -> io::Result<BatchesRead> {
    let mut want = read_len(max_bytes);
    // Bounded: each iteration returns, advances `pos`, or grows `want` to hold the next batch
    // (after which the next iteration advances or returns).
    for _ in 0..1024 {
        if pos >= end {
            return Ok(BatchesRead::default());
        }
        let buf = match prefetched.take() {
            Some(b) if !b.is_empty() => b.slice(..b.len().min((end - pos) as usize)),
            _ => via.read(pos, ((end - pos) as usize).min(want)).await?,
        };
        let len = buf.len();
        let mut at = 0usize;
        let mut first: Option<usize> = None;
        let mut taken = 0usize;
        let mut next_offset = offset;
        let mut next_size: Option<usize> = None;
        while at < buf.len() {
            let rest = &buf[at..];
            if rest.len() < BATCH_HEADER_BYTES {
                next_size = Some(BATCH_HEADER_BYTES);
                break;
            }
            let h = BatchHeader::parse(rest).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad batch at position {}: {e}", pos + at as u64),
                )
            })?;
            if h.base_offset >= below {
                break; // with `next_size` unset: nothing more to return
            }
            let size = h.total_size();
            let wanted = h.last_offset() >= offset;
            if wanted && first.is_none() && !min_one && size > max_bytes {
                return Ok(BatchesRead {
                    too_big: Some((pos, buf)),
                    ..BatchesRead::default()
                });
            }
            if rest.len() < size {
                next_size = Some(size);
                break;
            }
            if wanted {
                if first.is_some() && taken + size > max_bytes {
                    break;
                }
                first.get_or_insert(at);
                taken += size;
                next_offset = h.last_offset() + 1;
            }
            at += size;
        }
        if let Some(f) = first {
            return Ok(BatchesRead {
                chunks: vec![buf.slice(f..at)],
                next_pos: pos + at as u64,
                next_offset,
                too_big: None,
            });
        }
        match next_size {
            None => return Ok(BatchesRead::default()), // reached `end` without a batch containing `offset`
            Some(size) => {
                if at == 0 && len as u64 >= end - pos {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("batch at position {pos} extends past the segment end {end}"),
                    ));
                }
                want = want.max(size);
                pos += at as u64;
            }
        }
    }
    Err(io::Error::other("read_batches: no progress"))
}

/// The partial last block of a segment of logical size `size`, for O_DIRECT rewrites.
pub(crate) async fn load_tail(file: &File, size: u64) -> io::Result<Vec<u8>> {
    let start = round_down(size);
    let len = (size - start) as usize;
    debug_assert!(len < BLOCK_BYTES);
    if len == 0 {
        return Ok(Vec::new());
    }
    read_at(file, start, len).await
}
