//! Reads: whole batches from the tail cache (recently written batches, zero-copy) or from the
//! segment files, and the search by timestamp.

use bytes::Bytes;

use super::Log;
use crate::error::StorageError;
use crate::segment::{read_at, read_batches};

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

pub(super) struct CachedBatch {
    pub(super) base_offset: i64,
    pub(super) last_offset: i64,
    pub(super) bytes: Bytes,
}

impl Log {
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
        if self.read_from_cache(offset, max_bytes, bound, &mut out) {
            return Ok(out);
        }
        // Disk: the segment containing `offset`, or the first one after it that holds
        // something for it (the cleaner can leave a segment with nothing past some offset, or
        // nothing at all). Bounded by the segment count.
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
                    (s.read_file.clone(), pos as u64, s.size)
                })
            };
            let Some((file, pos, end)) = target else {
                break;
            };
            let chunks = read_batches(&file, pos, end, offset, max_bytes, bound).await?;
            if !chunks.is_empty() {
                out.bytes = chunks.iter().map(|c| c.len()).sum();
                out.chunks = chunks;
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// Serves the read from the tail cache if it holds `offset`; batches from `bound` on are
    /// left out.
    fn read_from_cache(
        &self,
        offset: i64,
        max_bytes: usize,
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
                || (!out.chunks.is_empty() && out.bytes + c.bytes.len() > max_bytes)
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
