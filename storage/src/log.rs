//! A partition log: an ordered list of segments in one directory, the append path, the background
//! writer task, reads, recovery, retention and truncation.
//!
//! ```text
//! <dir>/
//!   00000000000000000000.log        RecordBatch v2 bytes, back to back (sealed: exact length)
//!   00000000000000000000.index      sparse offset index  } written on roll, close and after
//!   00000000000000000000.timeindex  sparse time index    } recovery (see index.rs)
//!   00000000000000001234.log        active segment (may end with zero padding / torn bytes)
//!   sluice.checkpoint               recovery point + log start offset (see checkpoint.rs)
//!   leader-epoch-checkpoint         (epoch, start offset) entries
//! ```
//!
//! Offsets: `log_start_offset <= high_watermark <= log_end_offset`. `append` assigns offsets
//! synchronously (LEO moves at once) and queues the bytes; the writer task coalesces what is
//! queued into 4 KiB-aligned writes of up to 2 MiB (rewriting the partial last block it keeps in
//! memory, as a separate 4 KiB write; one write in flight, the next one built meanwhile), and
//! after each write publishes:
//! the segment's size and index, the tail cache, and the high watermark (first offset not yet
//! written). Readers only see offsets below the high watermark.
//!
//! Threading: a `Log` lives on one shard thread (`!Send`), shared as `Rc<Log>`; all methods take
//! `&self`; no `RefCell` borrow is ever held across an `.await`. Maintenance operations (roll,
//! truncate, retention, close) and writes are serialised by a small async lock.
//!
//! I/O failure: the failed write's batches and everything queued behind them are dropped, LEO goes
//! back to the high watermark (acknowledged data is untouched), waiters for those offsets get the
//! error, and the next `append` retries from the last good position. Offsets of failed appends
//! are reused, so a wait must know which append it waits for: `AppendInfo::fail_gen` is the
//! failure generation at the append, and `wait_append_written` / `wait_append_durable` fail if
//! any failure after it dropped the appended offsets, even when a later append has since written
//! other batches at those offsets.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::task::Poll;

use bytes::Bytes;
use compio::buf::IntoInner;
use compio::io::AsyncWriteAtExt;

use crate::aligned::{round_down, AlignedBuf, BLOCK_BYTES};
use crate::batch::{rewrite_header, validate_for_append, BatchHeader};
use crate::checkpoint::{
    decode_checkpoint, decode_epochs, encode_checkpoint, encode_epochs, read_optional,
    write_atomic, Checkpoint, CHECKPOINT_FILE, EPOCH_FILE, PRODUCER_FILE,
};
use crate::config::{FlushPolicy, IoMode, LogConfig, TimestampType};
use crate::error::{clone_io, StorageError};
use crate::index::SegmentIndex;
use crate::notify::Notify;
use crate::producer::{Check, ProducerStates};
use crate::scan::{ScanStop, ScannedBatch};
use crate::segment::{
    file_name, load_tail, open_read, open_write, parse_log_name, preallocate_range, read_at,
    read_batches, scan_file, Segment, PREALLOCATE_MIN_BYTES, PREALLOCATE_STEP_BYTES,
};

/// Largest single write the writer issues (bounds the aligned buffer). Small enough that a
/// backlog is several writes, so building one overlaps the device writing another; and the
/// bytes in flight on a shard stay moderate with many partitions (A/B in the storage bench on
/// a virtual disk: 8 partitions never-flush ran +50 % with 1 MiB writes than with 4 MiB; one
/// partition the same or slightly better with 4 MiB — 2 MiB keeps most of both).
const WRITE_BYTES_MAX: usize = 2 << 20;
/// Writes per writer step before it releases the log's lock (see `Log::write_pipeline`).
const PIPELINE_WRITES_MAX: usize = 64;
/// Recovery treats a batch claiming more than this (or max.message.bytes, if larger) as garbage.
const RECOVERY_BATCH_BYTES_MIN: u64 = 128 << 20;
/// Window for forward scans by timestamp.
const TIME_SCAN_WINDOW_BYTES: usize = 1 << 20;

/// Result of a successful [`Log::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped on the batches for LogAppendTime, -1 for CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub max_timestamp: i64,
    /// The log's failure generation when this append was made (see `Log::wait_append_written`).
    pub fail_gen: u64,
}

/// Result of [`Log::read`].
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Whole batches in offset order; a chunk holds one or more whole batches.
    pub chunks: Vec<Bytes>,
    pub bytes: usize,
    pub log_start_offset: i64,
    pub high_watermark: i64,
}

struct BatchPlan {
    pos: usize,
    size: usize,
    base_offset: i64,
}

struct PendingAppend {
    records: Bytes,
    batches: Vec<BatchPlan>,
    leader_epoch: i32,
    log_append_time_ms: Option<i64>,
}

enum Pending {
    Append(PendingAppend),
    Roll { seq: u64 },
}

/// A write built by `Log::prepare_write`, not yet on disk.
struct PreparedWrite {
    file: compio::fs::File,
    /// Block-aligned file position of `buf`.
    start: u64,
    buf: AlignedBuf,
    /// Bytes of `buf` that are log data (the rest is zero padding to a whole block).
    logical_len: usize,
    /// Each batch and its position in `buf`.
    placed: Vec<(ScannedBatch, i32)>,
}

struct CachedBatch {
    base_offset: i64,
    last_offset: i64,
    bytes: Bytes,
}

struct Failure {
    gen: u64,
    from_offset: i64,
    error: io::Error,
}

/// Failures that waits may still need to see: generations increasing and, since a failure
/// dominates every earlier one with a higher `from_offset`, `from_offset` increasing too. So
/// the first entry newer than a wait's generation has the lowest `from_offset` of all failures
/// after it. Bounded: a wait older than a forgotten entry is told it failed (a retry is safe,
/// an acknowledgement for a dropped batch is not).
const FAILURES_KEPT: usize = 64;

#[derive(Default)]
struct Failures {
    kept: VecDeque<Failure>,
    /// Generation of the newest forgotten entry (0: none forgotten).
    forgotten_gen: u64,
}

impl Failures {
    fn push(&mut self, f: Failure) {
        while self
            .kept
            .back()
            .is_some_and(|last| last.from_offset >= f.from_offset)
        {
            self.kept.pop_back();
        }
        self.kept.push_back(f);
        if self.kept.len() > FAILURES_KEPT {
            if let Some(old) = self.kept.pop_front() {
                self.forgotten_gen = old.gen;
            }
        }
    }

    fn last(&self) -> Option<&Failure> {
        self.kept.back()
    }

    /// The failure that dropped `offset` if it was appended at generation `gen0`.
    fn dropped(&self, gen0: u64, offset: i64) -> Option<io::Error> {
        if gen0 < self.forgotten_gen {
            let newest = self.kept.back()?;
            return Some(clone_io(&newest.error));
        }
        self.kept
            .iter()
            .find(|f| f.gen > gen0)
            .filter(|f| offset >= f.from_offset)
            .map(|f| clone_io(&f.error))
    }
}

struct State {
    segments: Vec<Segment>,
    pending: VecDeque<Pending>,
    cache: VecDeque<CachedBatch>,
    cache_bytes: usize,
    epochs: Vec<(i32, i64)>,
    epochs_dirty: bool,
    failures: Failures,
    /// A failure dropped everything queued and no append came since.
    failed: bool,
    /// Bytes the active segment will hold once everything queued is written.
    active_projected_bytes: u64,
    active_projected_base: i64,
    active_created_ms: Option<i64>,
    max_timestamp: Option<(i64, i64)>,
    /// Idempotent-producer state (sequence numbers, recent batches), see producer.rs.
    producers: ProducerStates,
}

/// A partition log. See the module documentation.
pub struct Log {
    dir: PathBuf,
    config: RefCell<LogConfig>,
    io_mode: Cell<IoMode>,
    state: RefCell<State>,
    log_start: Cell<i64>,
    leo: Cell<i64>,
    hw: Cell<i64>,
    durable: Cell<i64>,
    recovery_point: Cell<i64>,
    fail_gen: Cell<u64>,
    /// Current preallocation window (see `extend_preallocation`).
    prealloc_step: Cell<u64>,
    /// Contents of the small state files as last read or written (see `write_small`).
    on_disk: RefCell<HashMap<&'static str, Vec<u8>>>,
    closed: Cell<bool>,
    deleted: Cell<bool>,
    roll_seq_next: Cell<u64>,
    roll_seq_done: Cell<u64>,
    locked: Cell<bool>,
    flusher_running: Cell<bool>,
    /// Test hook: successful writes left before one fails with ENOSPC.
    inject_write_failure: Cell<Option<u32>>,
    self_weak: RefCell<Weak<Log>>,
    work: Rc<Notify>,
    progress: Notify,
    stats: crate::stats::LogStats,
}

struct LockGuard<'a>(&'a Log);

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.0.locked.set(false);
        self.0.progress.notify_all();
    }
}

fn io_err(e: io::Error) -> StorageError {
    StorageError::Io(e)
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovers it and starts its writer task on the
    /// current compio runtime.
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<Rc<Log>, StorageError> {
        compio::fs::create_dir_all(&dir).await?;
        let rec = recover(&dir, &config).await?;
        let leo = rec.segments.last().map_or(0, |s| s.next_offset);
        let active = rec.segments.last();
        let state = State {
            active_projected_bytes: active.map_or(0, |s| s.size),
            active_projected_base: active.map_or(0, |s| s.base_offset),
            active_created_ms: active.filter(|s| s.size > 0).map(|_| now_ms()),
            max_timestamp: max_timestamp_of(&rec.segments),
            segments: rec.segments,
            pending: VecDeque::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            epochs: rec.epochs,
            epochs_dirty: false,
            failures: Failures::default(),
            failed: false,
            producers: ProducerStates::default(),
        };
        let log = Rc::new(Log {
            dir,
            config: RefCell::new(config.clone()),
            io_mode: Cell::new(rec.io_mode),
            state: RefCell::new(state),
            log_start: Cell::new(rec.log_start_offset),
            leo: Cell::new(leo),
            hw: Cell::new(leo),
            durable: Cell::new(leo),
            recovery_point: Cell::new(leo),
            fail_gen: Cell::new(0),
            prealloc_step: Cell::new(PREALLOCATE_MIN_BYTES),
            on_disk: RefCell::new(rec.files.iter().cloned().collect()),
            closed: Cell::new(false),
            deleted: Cell::new(false),
            roll_seq_next: Cell::new(0),
            roll_seq_done: Cell::new(0),
            locked: Cell::new(false),
            flusher_running: Cell::new(false),
            inject_write_failure: Cell::new(None),
            self_weak: RefCell::new(Weak::new()),
            work: Rc::new(Notify::default()),
            progress: Notify::default(),
            stats: crate::stats::LogStats::default(),
        });
        *log.self_weak.borrow_mut() = Rc::downgrade(&log);
        compio::runtime::spawn(writer_loop(Rc::downgrade(&log), log.work.clone())).detach();
        log.load_producer_state().await?;
        log.write_checkpoint().await?;
        log.write_epochs().await?;
        log.start_flusher_if_needed();
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// I/O statistics (writes, fdatasync latency, group-commit batch sizes).
    pub fn stats(&self) -> &crate::stats::LogStats {
        &self.stats
    }

    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    pub fn set_config(&self, c: LogConfig) {
        *self.config.borrow_mut() = c;
        self.start_flusher_if_needed();
    }

    /// The I/O mode actually in use (Direct may have fallen back to Buffered).
    pub fn io_mode(&self) -> IoMode {
        self.io_mode.get()
    }

    fn start_flusher_if_needed(&self) {
        if let FlushPolicy::Interval(_) = self.config.borrow().flush {
            if !self.flusher_running.replace(true) {
                let me = self.self_weak.borrow().clone();
                compio::runtime::spawn(flusher_loop(me)).detach();
            }
        }
    }

    /// Validates, assigns offsets and queues `records` for the writer. Synchronous.
    pub fn append(
        &self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let headers = validate_for_append(&records)?;
        if let Some(dup) = self.check_producers(&headers)? {
            return Ok(AppendInfo {
                log_start_offset: self.log_start.get(),
                ..dup
            });
        }
        let cfg = self.config.borrow();
        let max = cfg.max_message_bytes as usize;
        if let Some(h) = headers.iter().find(|h| h.total_size() > max) {
            return Err(StorageError::MessageTooLarge {
                size: h.total_size(),
                max,
            });
        }
        let log_append_time_ms =
            (cfg.timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let base = self.leo.get();
        let mut next = base;
        let mut plans = Vec::with_capacity(headers.len());
        let mut max_timestamp = -1i64;
        let mut pos = 0usize;
        for h in &headers {
            plans.push(BatchPlan {
                pos,
                size: h.total_size(),
                base_offset: next,
            });
            pos += h.total_size();
            next = next.checked_add(h.last_offset_delta as i64 + 1).ok_or(
                crate::batch::BatchError::OffsetOverflow {
                    base_offset: next,
                    last_offset_delta: h.last_offset_delta,
                },
            )?;
            max_timestamp = max_timestamp.max(log_append_time_ms.unwrap_or(h.max_timestamp));
        }
        let last = next - 1;

        let mut st = self.state.borrow_mut();
        st.failed = false; // retry after an I/O failure
        let len = records.len() as u64;
        let needs_roll = st.active_projected_bytes > 0
            && (st.active_projected_bytes + len > cfg.segment_bytes_effective()
                || st
                    .active_created_ms
                    .is_some_and(|c| now_ms.saturating_sub(c) >= cfg.segment_ms)
                || last - st.active_projected_base > u32::MAX as i64);
        if needs_roll {
            let seq = self.roll_seq_next.get() + 1;
            self.roll_seq_next.set(seq);
            st.pending.push_back(Pending::Roll { seq });
            st.active_projected_bytes = 0;
            st.active_projected_base = base;
            st.active_created_ms = None;
        }
        st.active_projected_bytes += len;
        st.active_created_ms.get_or_insert(now_ms);
        if leader_epoch >= 0 && st.epochs.last().is_none_or(|&(e, _)| leader_epoch > e) {
            st.epochs.push((leader_epoch, base));
            st.epochs_dirty = true;
        }
        for (h, plan) in headers.iter().zip(&plans) {
            st.producers.record(h, plan.base_offset, now_ms);
        }
        st.pending.push_back(Pending::Append(PendingAppend {
            records,
            batches: plans,
            leader_epoch,
            log_append_time_ms,
        }));
        drop(st);
        self.leo.set(next);
        self.work.notify_all();
        Ok(AppendInfo {
            base_offset: base,
            last_offset: last,
            log_append_time_ms: log_append_time_ms.unwrap_or(-1),
            log_start_offset: self.log_start.get(),
            max_timestamp,
            fail_gen: self.fail_gen.get(),
        })
    }

    /// Resolves when the batches of `info`'s append are written, or with the I/O error that
    /// dropped them.
    pub async fn wait_append_written(&self, info: &AppendInfo) -> Result<(), StorageError> {
        self.wait_until(info.last_offset, false, info.fail_gen)
            .await
    }

    /// Resolves when the batches of `info`'s append are durable per the flush policy, or with
    /// the I/O error that dropped them.
    pub async fn wait_append_durable(&self, info: &AppendInfo) -> Result<(), StorageError> {
        let always = self.config.borrow().flush == FlushPolicy::Always;
        self.wait_until(info.last_offset, always, info.fail_gen)
            .await
    }

    /// Resolves when everything up to and including `offset` is written, or with the I/O error
    /// of a failure after this call that dropped it. Prefer `wait_append_written`: offsets of
    /// an append that failed before this call may hold another append's batches by now.
    pub fn wait_written(&self, offset: i64) -> impl Future<Output = Result<(), StorageError>> + '_ {
        self.wait_until(offset, false, self.fail_gen.get())
    }

    /// Resolves when everything up to `offset` is durable per the flush policy (see
    /// `wait_written` for which failures it reports).
    pub fn wait_durable(&self, offset: i64) -> impl Future<Output = Result<(), StorageError>> + '_ {
        let always = self.config.borrow().flush == FlushPolicy::Always;
        self.wait_until(offset, always, self.fail_gen.get())
    }

    /// `gen0`: the failure generation when the awaited offsets were appended. A failure after
    /// it that dropped `offset` is reported even if `offset` was written again since.
    async fn wait_until(&self, offset: i64, durable: bool, gen0: u64) -> Result<(), StorageError> {
        loop {
            let notified = self.progress.notified();
            {
                let st = self.state.borrow();
                if let Some(error) = st.failures.dropped(gen0, offset) {
                    return Err(StorageError::Io(error));
                }
                if st.failed {
                    if let Some(f) = st.failures.last() {
                        if offset >= f.from_offset {
                            // Nothing is queued there until the next append.
                            return Err(StorageError::Io(clone_io(&f.error)));
                        }
                    }
                }
            }
            let reached = if durable {
                self.durable.get()
            } else {
                self.hw.get()
            };
            if reached > offset {
                return Ok(());
            }
            {
                let st = self.state.borrow();
                if self.closed.get() && st.pending.is_empty() && !self.locked.get() {
                    return Err(StorageError::Closed);
                }
            }
            notified.await;
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start.get()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.leo.get()
    }

    pub fn high_watermark(&self) -> i64 {
        self.hw.get()
    }

    /// Offsets below this are fsynced (per the last completed fdatasync).
    pub fn durable_offset(&self) -> i64 {
        self.durable.get()
    }

    /// Bytes of written batches in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.state
            .borrow()
            .segments
            .iter()
            .map(|s| s.base_offset)
            .collect()
    }

    /// Whole batches from the batch containing `offset`, up to `max_bytes` (at least one batch).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        let hw = self.hw.get();
        let lso = self.log_start.get();
        if offset < lso || offset > hw {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: lso,
                log_end: hw,
            });
        }
        let mut out = ReadResult {
            chunks: Vec::new(),
            bytes: 0,
            log_start_offset: lso,
            high_watermark: hw,
        };
        if offset == hw {
            return Ok(out);
        }
        if self.read_from_cache(offset, max_bytes, &mut out) {
            return Ok(out);
        }
        // Disk: the segment containing `offset`, or the next one if that holds nothing for it.
        for attempt in 0..2 {
            let target = {
                let st = self.state.borrow();
                let i = st.segments.partition_point(|s| s.base_offset <= offset);
                let i = (i + attempt).saturating_sub(1);
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
            let chunks = read_batches(&file, pos, end, offset, max_bytes).await?;
            if !chunks.is_empty() {
                out.bytes = chunks.iter().map(|c| c.len()).sum();
                out.chunks = chunks;
                return Ok(out);
            }
        }
        Ok(out)
    }

    fn read_from_cache(&self, offset: i64, max_bytes: usize, out: &mut ReadResult) -> bool {
        let st = self.state.borrow();
        match st.cache.front() {
            Some(front) if front.base_offset <= offset => {}
            _ => return false,
        }
        let start = st.cache.partition_point(|c| c.last_offset < offset);
        for c in st.cache.iter().skip(start) {
            if c.base_offset >= out.high_watermark
                || (!out.chunks.is_empty() && out.bytes + c.bytes.len() > max_bytes)
            {
                break;
            }
            out.bytes += c.bytes.len();
            out.chunks.push(c.bytes.clone());
        }
        true
    }

    /// Resolves when `high_watermark() > offset` (or the log is closed). Cancel-safe.
    pub async fn wait_for_data(&self, offset: i64) {
        loop {
            let notified = self.progress.notified();
            if self.hw.get() > offset || self.closed.get() {
                return;
            }
            notified.await;
        }
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

    /// OffsetForLeaderEpoch: (largest epoch <= `epoch`, start offset of the next epoch or LEO).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let st = self.state.borrow();
        let e = &st.epochs;
        if epoch < 0 || e.is_empty() {
            return (-1, -1);
        }
        if e.last().is_some_and(|&(l, _)| l == epoch) {
            return (epoch, self.leo.get());
        }
        let hi = e.partition_point(|&(x, _)| x <= epoch);
        let Some(&(_, higher_start)) = e.get(hi) else {
            return (-1, -1);
        };
        if hi == 0 {
            (epoch, higher_start)
        } else {
            (e[hi - 1].0, higher_start)
        }
    }

    /// The leader epoch cache entries (epoch, start offset).
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.state.borrow().epochs.clone()
    }

    /// DeleteRecords: moves the log start offset up to `offset` (-1 = high watermark; never past
    /// the high watermark). Returns the new log start offset.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let hw = self.hw.get();
        let target = if offset == -1 { hw } else { offset.min(hw) };
        if target > self.log_start.get() {
            let _g = self.lock().await;
            self.log_start.set(target.max(self.log_start.get()));
            self.write_checkpoint().await?;
            self.delete_segments_below_log_start().await?;
        }
        Ok(self.log_start.get())
    }

    /// Deletes sealed segments beyond retention.ms / retention.bytes. Returns how many.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let _g = self.lock().await;
        let cfg = self.config();
        let doomed: Vec<Segment> = {
            let mut st = self.state.borrow_mut();
            let mut total: u64 = st.segments.iter().map(|s| s.size).sum();
            let sealed = st.segments.len().saturating_sub(1);
            let mut n = 0;
            for s in &st.segments[..sealed] {
                let by_time = cfg.retention_ms >= 0
                    && s.max_timestamp >= 0
                    && now_ms.saturating_sub(s.max_timestamp) > cfg.retention_ms;
                let by_bytes = cfg.retention_bytes >= 0
                    && total.saturating_sub(s.size) >= cfg.retention_bytes as u64
                    && total > cfg.retention_bytes as u64;
                if !(by_time || by_bytes) {
                    break;
                }
                total -= s.size;
                n += 1;
            }
            st.segments.drain(..n).collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let first_base = self.state.borrow().segments[0].base_offset;
        if first_base > self.log_start.get() {
            self.log_start.set(first_base);
        }
        self.write_checkpoint().await?;
        let n = doomed.len();
        remove_segment_files(doomed).await;
        self.refresh_max_timestamp();
        Ok(n)
    }

    async fn delete_segments_below_log_start(&self) -> Result<(), StorageError> {
        let lso = self.log_start.get();
        let doomed: Vec<Segment> = {
            let mut st = self.state.borrow_mut();
            let n = st
                .segments
                .windows(2)
                .take_while(|w| w[1].base_offset <= lso)
                .count();
            st.segments.drain(..n).collect()
        };
        remove_segment_files(doomed).await;
        self.refresh_max_timestamp();
        Ok(())
    }

    /// Rolls the active segment if it is non-empty and older than segment.ms.
    pub async fn maybe_roll(&self, now_ms: i64) -> Result<(), StorageError> {
        let seq = {
            let mut st = self.state.borrow_mut();
            let cfg = self.config.borrow();
            let due = st.active_projected_bytes > 0
                && st
                    .active_created_ms
                    .is_some_and(|c| now_ms.saturating_sub(c) >= cfg.segment_ms);
            if !due || self.closed.get() {
                return Ok(());
            }
            let seq = self.roll_seq_next.get() + 1;
            self.roll_seq_next.set(seq);
            st.pending.push_back(Pending::Roll { seq });
            st.active_projected_bytes = 0;
            st.active_projected_base = self.leo.get();
            st.active_created_ms = None;
            seq
        };
        self.work.notify_all();
        let gen0 = self.fail_gen.get();
        loop {
            let notified = self.progress.notified();
            if self.roll_seq_done.get() >= seq {
                return Ok(());
            }
            if self.fail_gen.get() != gen0 {
                if let Some(f) = self.state.borrow().failures.last() {
                    return Err(StorageError::Io(clone_io(&f.error)));
                }
            }
            notified.await;
        }
    }

    /// Truncates so that `log_end_offset()` becomes `offset` (rounded down to a batch boundary
    /// when `offset` falls inside a batch). No-op if `offset >= log_end_offset()`.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        if offset >= self.leo.get() {
            return Ok(());
        }
        if offset < self.log_start.get() {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start.get(),
                log_end: self.leo.get(),
            });
        }
        self.drain_pending().await;
        let _g = self.lock().await;
        let mode = self.io_mode.get();
        // Drop later segments.
        let (doomed, seg_path, read_file, lookup_pos, size, base) = {
            let mut st = self.state.borrow_mut();
            let i = st
                .segments
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1);
            let doomed: Vec<Segment> = st.segments.drain(i + 1..).collect();
            let s = st
                .segments
                .last_mut()
                .ok_or_else(|| StorageError::Corrupt("no segment to truncate".into()))?;
            (
                doomed,
                s.path.clone(),
                s.read_file.clone(),
                s.index.lookup(s.rel(offset)) as u64,
                s.size,
                s.base_offset,
            )
        };
        remove_segment_files(doomed).await;
        let scan = scan_file(&read_file, lookup_pos, size, None, u64::MAX).await?;
        let cut = scan
            .batches
            .iter()
            .find(|b| b.last_offset >= offset)
            .map_or(scan.valid_end, |b| b.position);
        let (write_file, _) = match self.active_write_file() {
            Some(f) => (f, mode),
            None => open_write(&seg_path, mode).await?,
        };
        write_file.set_len(cut).await?;
        let rebuilt = scan_file(&read_file, 0, cut, None, u64::MAX).await?;
        let mut seg = Segment::new(base, seg_path, read_file);
        let interval = self.config.borrow().index_interval_bytes;
        for b in rebuilt.batches.iter().filter(|b| b.base_offset >= base) {
            seg.on_batch(b, interval);
        }
        seg.size = rebuilt.valid_end;
        seg.tail = load_tail(&seg.read_file, seg.size).await?;
        seg.write_file = Some(write_file);
        remove_index_files(&seg).await;
        let new_leo = seg.next_offset;
        {
            let mut st = self.state.borrow_mut();
            st.active_projected_bytes = seg.size;
            st.active_projected_base = seg.base_offset;
            if let Some(last) = st.segments.last_mut() {
                *last = seg;
            }
            st.cache.retain(|c| c.last_offset < new_leo);
            st.cache_bytes = st.cache.iter().map(|c| c.bytes.len()).sum();
            st.epochs.retain(|&(_, start)| start < new_leo);
            st.producers.truncate_from(new_leo);
        }
        self.leo.set(new_leo);
        self.hw.set(new_leo);
        self.durable.set(self.durable.get().min(new_leo));
        self.recovery_point
            .set(self.recovery_point.get().min(new_leo));
        self.refresh_max_timestamp();
        self.write_checkpoint().await?;
        self.write_epochs().await?;
        self.progress.notify_all();
        Ok(())
    }

    /// Flushes everything, fsyncs, writes index files and checkpoints (recovery point = LEO) and
    /// stops the writer task. Later appends fail with `Closed`.
    pub async fn close(&self) -> Result<(), StorageError> {
        if self.closed.replace(true) {
            return Ok(());
        }
        self.work.notify_all();
        self.drain_pending().await;
        let _g = self.lock().await;
        let (file, size, seg_summary) = {
            let st = self.state.borrow();
            match st.segments.last() {
                Some(s) => (s.write_file.clone(), s.size, Some(s.index.clone())),
                None => (None, 0, None),
            }
        };
        // No write handle: nothing was written since the log opened, and the active index
        // on disk is current (or the segment is empty and needs none).
        if let Some(f) = file {
            f.sync_data().await?;
            f.set_len(size).await?;
            f.sync_all().await?;
            if seg_summary.is_some() {
                self.write_active_index().await?;
            }
        }
        self.durable.set(self.hw.get());
        self.recovery_point.set(self.hw.get());
        self.write_checkpoint().await?;
        self.write_epochs().await?;
        self.progress.notify_all();
        self.work.notify_all();
        Ok(())
    }

    /// Stops the writer and deletes the log directory.
    pub async fn delete(&self) -> Result<(), StorageError> {
        self.delete_inner(None).await
    }

    /// Stops the writer, renames the log directory to `aside` (durably: the directory's name
    /// is free at once), then removes it (DeleteTopics). A crash in between leaves only
    /// `aside`, for the owner of the naming scheme to sweep.
    pub async fn delete_as(&self, aside: PathBuf) -> Result<(), StorageError> {
        self.delete_inner(Some(aside)).await
    }

    async fn delete_inner(&self, aside: Option<PathBuf>) -> Result<(), StorageError> {
        self.closed.set(true);
        self.deleted.set(true);
        self.work.notify_all();
        self.drain_pending().await;
        let _g = self.lock().await;
        {
            let mut st = self.state.borrow_mut();
            st.segments.clear();
            st.cache.clear();
            st.cache_bytes = 0;
        }
        let dir = self.dir.clone();
        let res = compio::runtime::spawn_blocking(move || {
            let target = match aside {
                Some(aside) => {
                    std::fs::rename(&dir, &aside)?;
                    if let Some(parent) = aside.parent() {
                        std::fs::File::open(parent)?.sync_all()?;
                    }
                    aside
                }
                None => dir,
            };
            std::fs::remove_dir_all(target)
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Ok(Err(e)) => return Err(io_err(e)),
            Err(_) => return Err(io_err(io::Error::other("remove_dir_all task panicked"))),
        }
        self.progress.notify_all();
        Ok(())
    }

    /// Test hook: after `ok` more successful writes, the next write fails (once) with ENOSPC
    /// without touching the file.
    #[doc(hidden)]
    pub fn inject_write_failure_after(&self, ok: u32) {
        self.inject_write_failure.set(Some(ok));
    }

    // ---- internals ----

    async fn lock(&self) -> LockGuard<'_> {
        loop {
            let notified = self.progress.notified();
            if !self.locked.get() {
                self.locked.set(true);
                return LockGuard(self);
            }
            notified.await;
        }
    }

    async fn drain_pending(&self) {
        loop {
            let notified = self.progress.notified();
            if self.state.borrow().pending.is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn active_write_file(&self) -> Option<compio::fs::File> {
        self.state
            .borrow()
            .segments
            .last()
            .and_then(|s| s.write_file.clone())
    }

    fn refresh_max_timestamp(&self) {
        let mut st = self.state.borrow_mut();
        st.max_timestamp = max_timestamp_of(&st.segments);
    }

    async fn write_checkpoint(&self) -> Result<(), StorageError> {
        if self.deleted.get() {
            return Ok(());
        }
        let c = Checkpoint {
            recovery_point: self.recovery_point.get(),
            log_start_offset: self.log_start.get(),
        };
        self.write_small(CHECKPOINT_FILE, encode_checkpoint(&c))
            .await?;
        let snapshot = self.state.borrow().producers.encode(self.leo.get());
        self.write_small(PRODUCER_FILE, snapshot).await?;
        Ok(())
    }

    /// Writes one of the log's small state files (atomically, durably) unless it already holds
    /// exactly these bytes: opening and closing an unchanged log then writes nothing, which
    /// is what makes a restart with thousands of idle partitions fast.
    async fn write_small(&self, name: &'static str, bytes: Vec<u8>) -> Result<(), StorageError> {
        if self.on_disk.borrow().get(name) == Some(&bytes) {
            return Ok(());
        }
        self.on_disk.borrow_mut().remove(name);
        write_atomic(&self.dir, name, bytes.clone()).await?;
        self.on_disk.borrow_mut().insert(name, bytes);
        Ok(())
    }

    /// Idempotence: `Some(original offsets)` if the record set repeats an appended batch,
    /// an error for a sequence gap or stale epoch, `None` to append.
    fn check_producers(&self, headers: &[BatchHeader]) -> Result<Option<AppendInfo>, StorageError> {
        let st = self.state.borrow();
        let mut scratch: Option<ProducerStates> = None;
        for h in headers {
            let states = scratch.as_ref().unwrap_or(&st.producers);
            match states.check(h)? {
                Check::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    return Ok(Some(AppendInfo {
                        base_offset,
                        last_offset,
                        log_append_time_ms: -1,
                        log_start_offset: -1,
                        max_timestamp: h.max_timestamp,
                        fail_gen: self.fail_gen.get(),
                    }))
                }
                Check::Append if headers.len() > 1 => {
                    // Later batches of the same set must follow this one.
                    let next = scratch.get_or_insert_with(|| st.producers.clone());
                    next.record(h, 0, h.max_timestamp);
                }
                Check::Append => {}
            }
        }
        Ok(None)
    }

    /// Drops state of producers idle longer than `expiration_ms`; returns how many.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.state
            .borrow_mut()
            .producers
            .expire(now_ms, expiration_ms)
    }

    /// Number of producers with idempotence state in this partition.
    pub fn producer_count(&self) -> usize {
        self.state.borrow().producers.len()
    }

    /// Restores producer state: the snapshot, minus anything past the recovered log end, plus
    /// the batch headers written after the snapshot (read back from the log).
    async fn load_producer_state(&self) -> Result<(), StorageError> {
        let leo = self.leo.get();
        let bytes = read_optional(&self.dir.join(PRODUCER_FILE)).await?;
        let snapshot = bytes.as_deref().and_then(ProducerStates::decode);
        if let Some(b) = bytes {
            self.on_disk.borrow_mut().insert(PRODUCER_FILE, b);
        }
        let (mut states, from) = match snapshot {
            Some((covered, mut states)) => {
                states.truncate_from(leo);
                (states, covered.min(leo))
            }
            None => (ProducerStates::default(), self.log_start.get()),
        };
        let mut offset = from.max(self.log_start.get());
        while offset < leo {
            let r = self.read(offset, 1 << 20).await?;
            if r.chunks.is_empty() {
                break;
            }
            let mut next = offset;
            for chunk in &r.chunks {
                let mut pos = 0usize;
                while let Some(rest) = chunk.get(pos..) {
                    let Ok(h) = BatchHeader::parse(rest) else {
                        break;
                    };
                    let size = h.total_size();
                    if size == 0 || h.base_offset < offset {
                        pos += size.max(1);
                        continue;
                    }
                    states.record(&h, h.base_offset, h.max_timestamp);
                    next = next.max(h.last_offset() + 1);
                    pos += size;
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
        self.state.borrow_mut().producers = states;
        Ok(())
    }

    async fn write_epochs(&self) -> Result<(), StorageError> {
        if self.deleted.get() {
            return Ok(());
        }
        let bytes = {
            let mut st = self.state.borrow_mut();
            st.epochs_dirty = false;
            encode_epochs(&st.epochs)
        };
        self.write_small(EPOCH_FILE, bytes).await?;
        Ok(())
    }

    async fn write_active_index(&self) -> Result<(), StorageError> {
        let files = {
            let st = self.state.borrow();
            st.segments.last().map(|s| {
                let (ip, tp) = s.index_paths();
                let (a, b) = s.index.encode(&s.summary());
                (ip, tp, a, b)
            })
        };
        if let Some((ip, tp, a, b)) = files {
            write_index_pair(&self.dir, &ip, &tp, a, b).await?;
        }
        Ok(())
    }

    /// One writer step: a roll, or a pipeline of coalesced writes of queued appends (see
    /// [`Log::write_pipeline`]).
    async fn write_step(&self) {
        let _g = self.lock().await;
        let roll = match self.state.borrow_mut().pending.front() {
            Some(Pending::Roll { seq }) => Some(*seq),
            Some(Pending::Append(_)) => None,
            None => return,
        };
        if let Some(seq) = roll {
            self.state.borrow_mut().pending.pop_front();
            match self.roll().await {
                Ok(()) => self.roll_seq_done.set(seq),
                Err(e) => self.fail(e),
            }
            self.progress.notify_all();
            return;
        }
        if let Err(e) = self.write_pipeline().await {
            self.fail(e);
        }
        self.progress.notify_all();
    }

    /// Writes queued appends up to the next roll marker, at most [`PIPELINE_WRITES_MAX`] writes
    /// per step. One write is in flight at a time — consecutive writes share the partial tail
    /// block, so they must not overlap on the device — but the next write's buffer is built
    /// while the current one is on the device: building it (copy + header rewrite, about
    /// 0.1 ms per MiB) was the gap between 1 MiB appends and raw O_DIRECT writes in the storage
    /// bench. A prepared write holds appends already taken off `pending`; after a failure it is
    /// dropped with them ([`Log::fail`] moves LEO back to the high watermark: none of them was
    /// acknowledged).
    async fn write_pipeline(&self) -> io::Result<()> {
        self.ensure_write_file().await?;
        let mut next = self.prepare_write(None)?;
        let mut writes = 0;
        while let Some(w) = next.take() {
            writes += 1;
            next = self.write_prepared(w, writes < PIPELINE_WRITES_MAX).await?;
        }
        Ok(())
    }

    /// Opens the active segment's write handle when appends are queued for it and it has none:
    /// a log opens it on its first write, so an idle partition holds one file descriptor
    /// instead of two (10,000 partitions must fit the usual 20,000-descriptor limit).
    async fn ensure_write_file(&self) -> io::Result<()> {
        let path = {
            let st = self.state.borrow();
            if !matches!(st.pending.front(), Some(Pending::Append(_))) {
                return Ok(());
            }
            match st.segments.last() {
                Some(s) if s.write_file.is_none() => s.path.clone(),
                _ => return Ok(()),
            }
        };
        let (wf, mode) = open_write(&path, self.io_mode.get()).await?;
        self.io_mode.set(mode);
        let mut st = self.state.borrow_mut();
        if let Some(s) = st.segments.last_mut() {
            if s.path == path && s.write_file.is_none() {
                s.write_file = Some(wf);
            }
        }
        Ok(())
    }

    /// Takes queued appends (up to [`WRITE_BYTES_MAX`], at least one) off the front of `pending`
    /// and builds their aligned write buffer. It starts with the partial last block of the
    /// active segment, or of `after` = (end, partial last block) of a write not yet published.
    fn prepare_write(&self, after: Option<(u64, &[u8])>) -> io::Result<Option<PreparedWrite>> {
        let mut items = Vec::new();
        let mut total = 0usize;
        let (file, start, mut buf) = {
            let mut st = self.state.borrow_mut();
            while let Some(Pending::Append(p)) = st.pending.front() {
                if !items.is_empty() && total + p.records.len() > WRITE_BYTES_MAX {
                    break;
                }
                total += p.records.len();
                if let Some(Pending::Append(p)) = st.pending.pop_front() {
                    items.push(p);
                }
            }
            if items.is_empty() {
                return Ok(None);
            }
            let s = st
                .segments
                .last()
                .ok_or_else(|| io::Error::other("no active segment"))?;
            let f = s
                .write_file
                .clone()
                .ok_or_else(|| io::Error::other("active segment has no write handle"))?;
            let (size, tail) = after.unwrap_or((s.size, &s.tail));
            let mut buf = AlignedBuf::with_capacity(tail.len() + total);
            buf.extend_from_slice(tail);
            (f, round_down(size), buf)
        };
        let mut placed: Vec<(ScannedBatch, i32)> = Vec::new();
        for item in &items {
            for b in &item.batches {
                let at = buf.len();
                buf.extend_from_slice(&item.records[b.pos..b.pos + b.size]);
                let bytes = &mut buf.as_mut_slice()[at..at + b.size];
                rewrite_header(
                    bytes,
                    b.base_offset,
                    item.leader_epoch,
                    item.log_append_time_ms,
                );
                let h = crate::batch::BatchHeader::parse(bytes).map_err(|e| {
                    io::Error::other(format!("batch changed after validation: {e}"))
                })?;
                placed.push((
                    ScannedBatch {
                        base_offset: b.base_offset,
                        last_offset: h.last_offset(),
                        position: start + at as u64,
                        size: b.size as u32,
                        max_timestamp: h.max_timestamp,
                        records_count: h.records_count,
                        partition_leader_epoch: item.leader_epoch,
                    },
                    at as i32,
                ));
            }
        }
        let logical_len = buf.len();
        buf.pad_to_block();
        Ok(Some(PreparedWrite {
            file,
            start,
            buf,
            logical_len,
            placed,
        }))
    }

    /// Writes `w` (then fdatasync under `always`) and publishes its batches. While the write is
    /// on the device, prepares the next write if `prepare_next`, and returns it.
    async fn write_prepared(
        &self,
        w: PreparedWrite,
        prepare_next: bool,
    ) -> io::Result<Option<PreparedWrite>> {
        if let Some(ok) = self.inject_write_failure.get() {
            self.inject_write_failure.set(ok.checked_sub(1));
            if ok == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let PreparedWrite {
            file,
            start,
            buf,
            logical_len,
            placed,
        } = w;
        let new_size = start + logical_len as u64;
        let new_tail_start = (round_down(new_size) - start) as usize;
        let tail_after = buf.as_slice()[new_tail_start..logical_len].to_vec();
        let mut next: Option<io::Result<Option<PreparedWrite>>> = None;
        // The rewritten partial block goes in its own write. ext4 issues an O_DIRECT write
        // without blocking only if its whole range has one mapping state; a range that starts
        // in a written block and goes on into preallocated (unwritten) ones is punted to an
        // io_uring worker thread. With the split (and preallocation that extends the file),
        // single-partition never-flush appends ran +23 % (16 KiB) and +12 % (1 MiB) in an
        // interleaved A/B (BENCHMARKS.md). The two ranges are disjoint; both are
        // awaited before anything is published, so a crash between them is a torn write that
        // recovery truncates, as before.
        // Bytes before the first batch are the partial last block already on disk.
        let rewrites_tail_block = placed.first().is_some_and(|(_, at)| *at > 0);
        let head = if rewrites_tail_block && buf.len() > BLOCK_BYTES {
            let mut h = AlignedBuf::with_capacity(BLOCK_BYTES);
            h.extend_from_slice(&buf.as_slice()[..BLOCK_BYTES]);
            Some(h)
        } else {
            None
        };
        let body_from = if head.is_some() { BLOCK_BYTES } else { 0 };
        let mut head_writer = &file;
        let mut body_writer = &file;
        let mut head_write = std::pin::pin!(async {
            match head {
                Some(h) => head_writer.write_all_at(h, start).await.0,
                None => Ok(()),
            }
        });
        let mut body_write = std::pin::pin!(body_writer.write_all_at(
            compio::buf::IoBuf::slice(buf, body_from..),
            start + body_from as u64
        ));
        let mut head_res: Option<io::Result<()>> = None;
        let mut body_res = None;
        let mut poll_both = |cx: &mut std::task::Context<'_>| {
            if head_res.is_none() {
                if let Poll::Ready(r) = head_write.as_mut().poll(cx) {
                    head_res = Some(r);
                }
            }
            if body_res.is_none() {
                if let Poll::Ready(r) = body_write.as_mut().poll(cx) {
                    body_res = Some(r);
                }
            }
            if head_res.is_some() && body_res.is_some() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        };
        // The first poll queues the writes on the ring; flushing submits them to the kernel now
        // instead of when this task next yields, so the device works while the next is built.
        let first = std::future::poll_fn(|cx| Poll::Ready(poll_both(cx))).await;
        if first.is_pending() {
            if prepare_next {
                compio::runtime::Runtime::with_current(|rt| rt.flush());
                next = Some(self.prepare_write(Some((new_size, &tail_after))));
            }
            // Even if preparing failed, the writes on the device are finished first.
            std::future::poll_fn(&mut poll_both).await;
        }
        let (Some(head_res), Some(compio::BufResult(body_res, body))) = (head_res, body_res) else {
            return Err(io::Error::other("write pipeline: a write did not finish"));
        };
        let mut buf = body.into_inner();
        head_res?;
        body_res?;
        let next = next.transpose()?.flatten();
        let s = &self.stats;
        s.writes.set(s.writes.get() + 1);
        s.bytes_written
            .set(s.bytes_written.get() + logical_len as u64);
        s.batches_per_write.observe(placed.len() as f64);
        let always = self.config.borrow().flush == FlushPolicy::Always;
        if always {
            let t = std::time::Instant::now();
            file.sync_data().await?;
            s.fsync_seconds.observe(t.elapsed().as_secs_f64());
        }
        buf.truncate(logical_len);
        let bytes = Bytes::from_owner(buf);
        let mut last_offset = self.hw.get() - 1;
        let epochs_dirty;
        {
            let mut st = self.state.borrow_mut();
            let cfg = self.config.borrow();
            let st = &mut *st;
            let seg = st
                .segments
                .last_mut()
                .ok_or_else(|| io::Error::other("active segment vanished"))?;
            for (b, at) in &placed {
                seg.on_batch(b, cfg.index_interval_bytes);
                let at = *at as usize;
                st.cache.push_back(CachedBatch {
                    base_offset: b.base_offset,
                    last_offset: b.last_offset,
                    bytes: bytes.slice(at..at + b.size as usize),
                });
                st.cache_bytes += b.size as usize;
                last_offset = b.last_offset;
                if st.max_timestamp.is_none_or(|(t, _)| b.max_timestamp > t) {
                    st.max_timestamp = Some((b.max_timestamp, b.last_offset));
                }
            }
            seg.tail = tail_after;
            while st.cache_bytes > cfg.tail_cache_bytes && st.cache.len() > 1 {
                if let Some(c) = st.cache.pop_front() {
                    st.cache_bytes -= c.bytes.len();
                }
            }
            epochs_dirty = st.epochs_dirty;
        }
        self.hw.set(last_offset + 1);
        if always {
            self.durable.set(last_offset + 1);
        }
        self.progress.notify_all();
        self.extend_preallocation(&file, new_size);
        if epochs_dirty {
            if let Err(e) = self.write_epochs().await {
                tracing::warn!(error = %e, "failed to persist leader epoch checkpoint");
            }
        }
        Ok(next)
    }

    /// Seals the active segment (fsync, exact length, index files) and starts a new one at the
    /// current end. Writer-only, lock held, nothing queued before the roll marker.
    async fn roll(&self) -> io::Result<()> {
        let (file, size, next, ix, tp) = {
            let st = self.state.borrow();
            let Some(s) = st.segments.last() else {
                return Ok(());
            };
            if s.size == 0 {
                return Ok(());
            }
            let (a, b) = s.index.encode(&s.summary());
            (
                s.write_file.clone(),
                s.size,
                s.next_offset,
                (s.index_paths(), a),
                b,
            )
        };
        if let Some(f) = &file {
            f.sync_data().await?;
            f.set_len(size).await?;
        }
        let ((ip, tpath), a) = ix;
        write_index_pair(&self.dir, &ip, &tpath, a, tp)
            .await
            .map_err(|e| match e {
                StorageError::Io(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
        let path = self.dir.join(file_name(next, "log"));
        let (wf, mode) = open_write(&path, self.io_mode.get()).await?;
        self.io_mode.set(mode);
        // A partition that has written enough to grow its window gets it at once in the new
        // segment; a new or idle one reserves nothing until it writes.
        let step = self.prealloc_step.get();
        let step = if step > PREALLOCATE_MIN_BYTES {
            let step = step.min(self.config.borrow().segment_bytes_effective());
            preallocate_range(&wf, 0, step);
            step
        } else {
            0
        };
        let rf = open_read(&path).await?;
        let mut seg = Segment::new(next, path, rf);
        seg.allocated_end = step;
        seg.write_file = Some(wf);
        {
            let mut st = self.state.borrow_mut();
            if let Some(old) = st.segments.last_mut() {
                old.write_file = None;
                old.tail = Vec::new();
            }
            st.segments.push(seg);
        }
        self.durable.set(self.durable.get().max(next));
        self.recovery_point.set(next);
        if let Err(e) = self.write_checkpoint().await {
            tracing::warn!(error = %e, "failed to write checkpoint after roll");
        }
        Ok(())
    }

    /// Keeps a window reserved ahead of the active segment's end, growing it (up to
    /// [`PREALLOCATE_STEP_BYTES`]) each time the writes reach it.
    fn extend_preallocation(&self, file: &compio::fs::File, size: u64) {
        let limit = self.config.borrow().segment_bytes_effective();
        let step = self.prealloc_step.get();
        let mut st = self.state.borrow_mut();
        let Some(seg) = st.segments.last_mut() else {
            return;
        };
        if seg.allocated_end >= limit || size + step / 2 <= seg.allocated_end {
            return;
        }
        let from = seg.allocated_end.max(size);
        let len = step.min(limit.saturating_sub(from));
        if len > 0 {
            preallocate_range(file, from, len);
        }
        // Advance even on failure: the next attempt comes one step later, not on every write.
        seg.allocated_end = from + len;
        self.prealloc_step
            .set((step * 2).min(PREALLOCATE_STEP_BYTES));
    }

    /// Handles a failed write or roll: see the module documentation.
    fn fail(&self, error: io::Error) {
        tracing::error!(dir = %self.dir.display(), error = %error, "log write failed");
        let hw = self.hw.get();
        let gen = self.fail_gen.get() + 1;
        self.fail_gen.set(gen);
        let mut st = self.state.borrow_mut();
        st.pending.clear();
        self.roll_seq_done.set(self.roll_seq_next.get());
        st.epochs.retain(|&(_, start)| start < hw);
        st.producers.truncate_from(hw);
        if let Some((size, base)) = st.segments.last().map(|s| (s.size, s.base_offset)) {
            st.active_projected_bytes = size;
            st.active_projected_base = base;
        }
        st.failures.push(Failure {
            gen,
            from_offset: hw,
            error,
        });
        st.failed = true;
        drop(st);
        self.leo.set(hw);
        self.progress.notify_all();
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // Wake the writer so it notices the log is gone and exits.
        self.work.notify_all();
    }
}

async fn writer_loop(log: Weak<Log>, work: Rc<Notify>) {
    loop {
        let notified = work.notified();
        {
            let Some(log) = log.upgrade() else {
                return;
            };
            if !log.state.borrow().pending.is_empty() {
                log.write_step().await;
                continue;
            }
            if log.closed.get() {
                return;
            }
        }
        notified.await;
    }
}

async fn flusher_loop(log: Weak<Log>) {
    loop {
        let period = {
            let Some(l) = log.upgrade() else { return };
            let cfg = l.config.borrow();
            match cfg.flush {
                FlushPolicy::Interval(d) if !l.closed.get() => d,
                _ => {
                    l.flusher_running.set(false);
                    return;
                }
            }
        };
        compio::time::sleep(period).await;
        let Some(l) = log.upgrade() else { return };
        let hw = l.hw.get();
        if hw > l.durable.get() {
            if let Some(f) = l.active_write_file() {
                let t = std::time::Instant::now();
                let synced = f.sync_data().await;
                l.stats.fsync_seconds.observe(t.elapsed().as_secs_f64());
                match synced {
                    Ok(()) => {
                        l.durable.set(l.durable.get().max(hw));
                        l.progress.notify_all();
                    }
                    Err(e) => tracing::warn!(error = %e, "interval fsync failed"),
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn max_timestamp_of(segments: &[Segment]) -> Option<(i64, i64)> {
    segments
        .iter()
        .filter(|s| s.max_timestamp >= 0)
        .fold(None, |acc: Option<(i64, i64)>, s| match acc {
            Some((t, _)) if t >= s.max_timestamp => acc,
            _ => Some((s.max_timestamp, s.max_timestamp_offset)),
        })
}

async fn write_index_pair(
    dir: &Path,
    ip: &Path,
    tp: &Path,
    a: Vec<u8>,
    b: Vec<u8>,
) -> Result<(), StorageError> {
    let name = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| StorageError::Corrupt(format!("bad index path {}", p.display())))
    };
    write_atomic(dir, &name(ip)?, a).await?;
    write_atomic(dir, &name(tp)?, b).await?;
    Ok(())
}

async fn remove_index_files(seg: &Segment) {
    let (ip, tp) = seg.index_paths();
    for p in [ip, tp] {
        if let Err(e) = compio::fs::remove_file(&p).await {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %p.display(), error = %e, "failed to remove index file");
            }
        }
    }
}

async fn remove_segment_files(doomed: Vec<Segment>) {
    for seg in doomed {
        remove_index_files(&seg).await;
        if let Err(e) = compio::fs::remove_file(&seg.path).await {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %seg.path.display(), error = %e, "failed to remove segment");
            }
        }
    }
}

struct Recovered {
    segments: Vec<Segment>,
    epochs: Vec<(i32, i64)>,
    log_start_offset: i64,
    io_mode: IoMode,
    /// The checkpoint and epoch files as read (seed of `Log::on_disk`).
    files: Vec<(&'static str, Vec<u8>)>,
}

/// Opens and repairs the segments of `dir`. See DESIGN.md §3 "Recovery".
async fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered, StorageError> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            let _ = compio::fs::remove_file(entry.path()).await;
        } else if let Some(base) = parse_log_name(name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let mut files = Vec::new();
    let cp_bytes = read_optional(&dir.join(CHECKPOINT_FILE)).await?;
    let cp = cp_bytes.as_deref().and_then(decode_checkpoint);
    files.extend(cp_bytes.map(|b| (CHECKPOINT_FILE, b)));
    let recovery_point = cp.map_or(-1, |c| c.recovery_point);
    let epoch_bytes = read_optional(&dir.join(EPOCH_FILE)).await?;
    let mut epochs = epoch_bytes
        .as_deref()
        .and_then(decode_epochs)
        .unwrap_or_default();
    files.extend(epoch_bytes.map(|b| (EPOCH_FILE, b)));
    let batch_max = (config.max_message_bytes as u64).max(RECOVERY_BATCH_BYTES_MIN);
    let interval = config.index_interval_bytes;

    let mut segments: Vec<Segment> = Vec::new();
    let mut drop_rest = false;
    // Whether the last segment's index files must be (re)written: missing, stale or
    // truncated. After a clean close they match the file and opening writes nothing.
    let mut last_index_stale = true;
    for (i, &base) in bases.iter().enumerate() {
        let path = dir.join(file_name(base, "log"));
        if drop_rest || segments.last().is_some_and(|s| s.next_offset > base) {
            tracing::warn!(path = %path.display(), "removing segment after a damaged one");
            let doomed = Segment::new(base, path.clone(), open_read(&path).await?);
            remove_segment_files(vec![doomed]).await;
            drop_rest = true;
            continue;
        }
        let file_len = std::fs::metadata(&path)?.len();
        let read_file = open_read(&path).await?;
        let mut seg = Segment::new(base, path, read_file);
        let trusted = bases.get(i + 1).is_some_and(|&next| next <= recovery_point);
        let (ip, tp) = seg.index_paths();
        let index = match (read_optional(&ip).await?, read_optional(&tp).await?) {
            (Some(a), Some(b)) => SegmentIndex::decode(base, &a, &b),
            _ => None,
        }
        .filter(|(_, s)| s.log_size <= file_len);
        let mut write_index = true;
        let mut scan_start = 0u64;
        if let Some((ix, s)) = index {
            seg.index = ix;
            seg.size = s.log_size;
            seg.next_offset = s.next_offset;
            seg.max_timestamp = s.max_timestamp;
            seg.max_timestamp_offset = s.max_timestamp_offset;
            scan_start = s.log_size;
            write_index = false;
        }
        if !(trusted && scan_start == file_len) {
            let prev = (scan_start > 0).then(|| seg.next_offset - 1);
            let scan = scan_file(&seg.read_file, scan_start, file_len, prev, batch_max).await?;
            let mut stop_at = scan.valid_end;
            let mut clean = matches!(scan.stop, ScanStop::End | ScanStop::Zeros);
            for b in &scan.batches {
                // Offsets are contiguous (no compaction yet): anything else is damage.
                if b.base_offset != seg.next_offset {
                    stop_at = b.position;
                    clean = false;
                    break;
                }
                seg.on_batch(b, interval);
                if epochs
                    .last()
                    .is_none_or(|&(e, _)| b.partition_leader_epoch > e)
                    && b.partition_leader_epoch >= 0
                {
                    epochs.push((b.partition_leader_epoch, b.base_offset));
                }
                write_index = true;
            }
            seg.size = stop_at;
            if stop_at < file_len {
                if !clean {
                    tracing::warn!(
                        segment = %seg.path.display(),
                        valid = stop_at,
                        file_len,
                        stop = ?scan.stop,
                        "truncating torn or corrupt segment tail"
                    );
                    drop_rest = true;
                }
                let (wf, _) = open_write(&seg.path, IoMode::Buffered).await?;
                wf.set_len(stop_at).await?;
                wf.sync_all().await?;
            }
        }
        if write_index && i + 1 < bases.len() && !drop_rest {
            let (a, b) = seg.index.encode(&seg.summary());
            write_index_pair(dir, &ip, &tp, a, b).await?;
        }
        last_index_stale = write_index;
        segments.push(seg);
    }

    let log_start_cp = cp.map_or(0, |c| c.log_start_offset);
    if segments.is_empty() {
        let base = log_start_cp.max(0);
        let path = dir.join(file_name(base, "log"));
        let (wf, _) = open_write(&path, IoMode::Buffered).await?;
        wf.close().await?;
        segments.push(Segment::new(base, path.clone(), open_read(&path).await?));
    }
    // The active segment's write handle opens on the first write (`ensure_write_file`); the
    // I/O mode is settled then too.
    let io_mode = config.io_mode;
    if let Some(active) = segments.last_mut() {
        // Nothing reserved until the partition is written (see PREALLOCATE_STEP_BYTES).
        active.allocated_end = active.size;
        active.tail = load_tail(&active.read_file, active.size).await?;
        // An empty segment needs no index (recovery scans its zero bytes).
        if last_index_stale && active.size > 0 {
            let (ip, tp) = active.index_paths();
            let (a, b) = active.index.encode(&active.summary());
            write_index_pair(dir, &ip, &tp, a, b).await?;
        }
    }
    let first_base = segments.first().map_or(0, |s| s.base_offset);
    let leo = segments.last().map_or(0, |s| s.next_offset);
    let log_start_offset = log_start_cp.max(first_base).min(leo);
    epochs.retain(|&(_, start)| start < leo);
    Ok(Recovered {
        segments,
        epochs,
        log_start_offset,
        io_mode,
        files,
    })
}
