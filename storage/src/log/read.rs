//! Reads: whole batches from the tail cache (recently written batches, zero-copy) or from the
//! segment files, and the search by timestamp.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::readahead::ReadAhead;
use super::Log;
use crate::checkpoint::read_optional;
use crate::config::IoMode;
use crate::error::StorageError;
use crate::runtime::File;
use crate::segment::{open_direct_read, read_at, read_batches, read_len, ReadVia};
use crate::txn::AbortedTxn;
use crate::txnindex::in_segment;

/// Window for forward scans by timestamp.
const TIME_SCAN_WINDOW_BYTES: usize = 1 << 20;

/// Result of [`Log::read`].
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Whole batches in offset order; a chunk holds one or more whole batches.
    pub chunks: Vec<Bytes>,
    pub bytes: usize,
    pub log_start_offset: i64,
    /// The log's written offset when the read started (see [`Log::written_offset`]).
    pub written_offset: i64,
}

/// The entries of the sealed segment whose `.txnindex` a fetch read last.
#[derive(Default)]
pub(super) struct TxnCache {
    entry: Option<(i64, Rc<[AbortedTxn]>)>,
    /// Bumped by every [`TxnCache::clear`]: a read that began before one is not kept.
    generation: u64,
}

impl TxnCache {
    fn get(&self, base: i64) -> Option<Rc<[AbortedTxn]>> {
        match &self.entry {
            Some((b, e)) if *b == base => Some(e.clone()),
            _ => None,
        }
    }

    fn put(&mut self, generation: u64, base: i64, entries: Rc<[AbortedTxn]>) {
        if generation == self.generation {
            self.entry = Some((base, entries));
        }
    }

    /// A segment's index may have changed (roll, truncation, a cleaner swap).
    pub(super) fn clear(&mut self) {
        self.entry = None;
        self.generation += 1;
    }
}

pub(super) struct CachedBatch {
    pub(super) base_offset: i64,
    pub(super) last_offset: i64,
    pub(super) bytes: Bytes,
}

impl Log {
    /// Aborted transactions (producer id, first offset) whose data meets `from..to`, for a
    /// read_committed fetch of those offsets: from the index files of the sealed segments
    /// whose markers may name them (a marker at or past `from`, a first offset below `to`;
    /// a transaction may span segments) and from the producer state (the active segment).
    pub async fn aborted_transactions(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, i64)>, StorageError> {
        let wanted: Vec<(i64, i64, PathBuf)> = {
            let st = self.state.borrow();
            let sealed = st.segments.len().saturating_sub(1);
            st.segments[..sealed]
                .iter()
                .filter(|s| {
                    s.next_offset > from && s.aborted.is_some_and(|a| a.min_first_offset < to)
                })
                .map(|s| (s.base_offset, s.next_offset, s.txn_index_path()))
                .collect()
        };
        let mut out = Vec::new();
        for (base, next, path) in wanted {
            let (cached, generation) = {
                let c = self.txn_cache.borrow();
                (c.get(base), c.generation)
            };
            let entries = match cached {
                Some(e) => e,
                None => match read_txn_index(&path).await {
                    Ok(e) => {
                        let e: Rc<[AbortedTxn]> = e.into();
                        self.txn_cache.borrow_mut().put(generation, base, e.clone());
                        e
                    }
                    // Retention or a swap removed the segment meanwhile: its data is gone.
                    Err(_) if !self.has_sealed_segment(base) => {
                        return Err(self.out_of_range(from));
                    }
                    Err(e) => return Err(e),
                },
            };
            out.extend(
                in_segment(&entries, base, next)
                    .filter(|a| a.last_offset >= from && a.first_offset < to)
                    .map(|a| (a.producer_id, a.first_offset)),
            );
        }
        out.extend(self.state.borrow().producers.aborted_between(from, to));
        Ok(out)
    }

    /// How to read a segment from the disk: with O_DIRECT when the log writes that way —
    /// the active segment through its write handle, a sealed one through a handle opened on
    /// its first read, which it keeps while it is the log's last one read (one per log: an
    /// idle partition holds no extra descriptor) — else through the page cache.
    ///
    /// `id`, `buffered`, `direct` and `path` are segment `id`'s as the read found it: the
    /// handle opened by path serves the read only if that segment is still in the log when it
    /// is open (a cleaner swap puts another file at the path, which the read's position does
    /// not describe).
    async fn read_via(
        &self,
        id: u64,
        buffered: File,
        direct: Option<File>,
        path: PathBuf,
    ) -> ReadVia {
        if self.io_mode.get() != IoMode::Direct {
            return ReadVia::Buffered(buffered);
        }
        if let Some(f) = direct {
            return ReadVia::Direct(f);
        }
        let Ok(f) = open_direct_read(&path).await else {
            return ReadVia::Buffered(buffered);
        };
        let mut st = self.state.borrow_mut();
        if !st.segments.iter().any(|s| s.id == id) {
            return ReadVia::Buffered(buffered);
        }
        for s in st.segments.iter_mut() {
            s.direct_read = (s.id == id).then(|| f.clone());
        }
        ReadVia::Direct(f)
    }

    fn has_sealed_segment(&self, base: i64) -> bool {
        let st = self.state.borrow();
        let sealed = st.segments.len().saturating_sub(1);
        st.segments[..sealed].iter().any(|s| s.base_offset == base)
    }

    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start: self.log_start.get(),
            log_end: self.leo.get(),
        }
    }

    /// Whole batches from the batch containing `offset`, up to `max_bytes` (at least one batch),
    /// only batches whose base offset is below `min(upper_bound, written_offset())`: empty when
    /// `offset` is at or past that bound. `i64::MAX` reads everything written (the partition
    /// layer passes its high watermark to consumers). `OffsetOutOfRange` when `offset` is below
    /// the log start offset or above the written offset, whatever `upper_bound`.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
    ) -> Result<ReadResult, StorageError> {
        self.read_limited(offset, max_bytes, true, upper_bound)
            .await
    }

    /// [`Log::read`], where without `min_one` nothing comes back if the batch holding `offset`
    /// is larger than `max_bytes` (a partition given part of a fetch response's room: Kafka
    /// returns an oversized batch only for the response's first partition).
    pub async fn read_limited(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        upper_bound: i64,
    ) -> Result<ReadResult, StorageError> {
        let written = self.written.get();
        let lso = self.log_start.get();
        if offset < lso || offset > written {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: lso,
                log_end: written,
            });
        }
        let mut out = ReadResult {
            chunks: Vec::new(),
            bytes: 0,
            log_start_offset: lso,
            written_offset: written,
        };
        let bound = upper_bound.min(written);
        if offset >= bound {
            return Ok(out);
        }
        if self.read_from_cache(offset, max_bytes, min_one, bound, &mut out) {
            return Ok(out);
        }
        let started = std::time::Instant::now();
        let read = self
            .read_from_disk(offset, max_bytes, min_one, bound, &mut out)
            .await;
        self.stats
            .disk_read_seconds
            .observe(started.elapsed().as_secs_f64());
        read.map(|()| out)
    }

    /// [`Log::read_limited`] of what the tail cache does not hold, into `out`.
    async fn read_from_disk(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        bound: i64,
        out: &mut ReadResult,
    ) -> Result<(), StorageError> {
        // The segment containing `offset`, or the first one after it that holds something for
        // it (the cleaner can leave a segment with nothing past some offset, or nothing at
        // all). Bounded by the segment count.
        for attempt in 0.. {
            let target = {
                let st = self.state.borrow();
                let i = st.segments.partition_point(|s| s.base_offset <= offset);
                let i = (i + attempt).saturating_sub(1);
                if attempt > 0 && i == 0 {
                    continue;
                }
                st.segments.get(i).map(|s| {
                    let pos = if attempt == 0 {
                        s.index.lookup(s.rel(offset))
                    } else {
                        0
                    };
                    let direct = s.write_file.clone().or_else(|| s.direct_read.clone());
                    let files = (s.id, s.read_file.clone(), direct, s.path.clone());
                    (files, pos as u64, s.size)
                })
            };
            let Some(((id, buffered, direct, path), index_pos, end)) = target else {
                break;
            };
            let via = self.read_via(id, buffered, direct, path).await;
            // The chunk read ahead for exactly this read (see readahead.rs).
            let ahead = {
                let mut slot = self.readahead.borrow_mut();
                let fits = |r: &ReadAhead| r.segment == id && r.next_offset == offset;
                slot.as_ref()
                    .is_some_and(fits)
                    .then(|| slot.take())
                    .flatten()
            };
            let (pos, prefetched) = match ahead {
                Some(r) => (r.pos, r.take().await),
                None => (index_pos, None),
            };
            let r = read_batches(
                &via, pos, end, offset, max_bytes, min_one, bound, prefetched,
            )
            .await?;
            if let Some((pos, data)) = r.too_big {
                // What was read serves the read that takes this batch (a partition given part
                // of a fetch's room asks again and again while the batch does not fit).
                *self.readahead.borrow_mut() = ReadAhead::ready(id, offset, pos, data);
                return Ok(());
            }
            if !r.chunks.is_empty() {
                if let ReadVia::Direct(f) = &via {
                    if min_one {
                        self.readahead_bytes.set(max_bytes);
                    }
                    let ahead = self.readahead_bytes.get().max(max_bytes);
                    if r.next_pos < end {
                        let len = ((end - r.next_pos) as usize).min(read_len(ahead));
                        let next = ReadAhead::start(f.clone(), id, r.next_offset, r.next_pos, len);
                        *self.readahead.borrow_mut() = next;
                    }
                }
                out.bytes = r.chunks.iter().map(|c| c.len()).sum();
                out.chunks = r.chunks;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Serves the read from the tail cache if it holds `offset`; batches from `bound` on are
    /// left out, and without `min_one` a first batch larger than `max_bytes`.
    fn read_from_cache(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        bound: i64,
        out: &mut ReadResult,
    ) -> bool {
        let st = self.state.borrow();
        let cache = st.cache.batches();
        match cache.front() {
            Some(front) if front.base_offset <= offset => {}
            _ => return false,
        }
        let start = cache.partition_point(|c| c.last_offset < offset);
        for c in cache.iter().skip(start) {
            if c.base_offset >= bound
                || ((!out.chunks.is_empty() || !min_one) && out.bytes + c.bytes.len() > max_bytes)
            {
                break;
            }
            out.bytes += c.bytes.len();
            out.chunks.push(c.bytes.clone());
        }
        true
    }

    /// First batch whose max_timestamp >= `timestamp_ms`: (its base offset, clamped to the log
    /// start offset, and its max timestamp).
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let target = {
            let st = self.state.borrow();
            st.segments
                .iter()
                .find(|s| s.max_timestamp >= timestamp_ms && s.size > 0)
                .map(|s| {
                    let pos = s.index.lookup_time(timestamp_ms) as u64;
                    (s.read_file.clone(), pos, s.size)
                })
        };
        let Some((file, mut pos, end)) = target else {
            return Ok(None);
        };
        // Bounded by the segment size: each window advances `pos` by at least one batch.
        while pos < end {
            let len = ((end - pos) as usize).min(TIME_SCAN_WINDOW_BYTES);
            let buf = read_at(&file, pos, len).await?;
            let mut at = 0usize;
            while at + crate::batch::BATCH_HEADER_BYTES <= buf.len() {
                let h = crate::batch::BatchHeader::parse(&buf[at..])?;
                if h.max_timestamp >= timestamp_ms {
                    let off = h.base_offset.max(self.log_start.get());
                    return Ok(Some((off, h.max_timestamp)));
                }
                at += h.total_size();
            }
            if at == 0 {
                break;
            }
            pos += at as u64;
        }
        Ok(None)
    }

    /// Largest timestamp in the log and the offset it belongs to.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.state.borrow().max_timestamp
    }
}

/// The entries of the `.txnindex` at `path`: a missing or damaged file is `Corrupt` (a sealed
/// segment whose summary names aborted transactions has one).
pub(super) async fn read_txn_index(path: &Path) -> Result<Vec<AbortedTxn>, StorageError> {
    let bytes = read_optional(path)
        .await?
        .ok_or_else(|| StorageError::Corrupt(format!("{} is missing", path.display())))?;
    crate::txnindex::decode(&bytes)
        .ok_or_else(|| StorageError::Corrupt(format!("{} is damaged", path.display())))
}
