//! A partition log: an ordered list of segments in one directory, the append path, the background
//! writer task, reads, recovery, retention and truncation.
//!
//! ```text
//! <dir>/
//!   00000000000000000000.log        RecordBatch v2 bytes, back to back (sealed: exact length)
//!   00000000000000000000.index      sparse offset index  } written on roll, close and after
//!   00000000000000000000.timeindex  sparse time index    } recovery (see index.rs)
//!   00000000000000000000.txnindex   aborted transactions whose marker is in the segment
//!                                   (sealed segments that have some; see txnindex.rs)
//!   00000000000000001234.log        active segment (may end with zero padding / torn bytes)
//!   sluice.checkpoint               recovery point + log start offset (see checkpoint.rs)
//!   leader-epoch-checkpoint         (epoch, start offset) entries
//!   producer.snapshot               idempotent producers' last sequences (see producer.rs)
//!   boot.checkpoint                 the active segment's index and the producer state as of
//!                                   a moment, trusted only in the same boot (see boot.rs)
//! ```
//!
//! Offsets: `log_start_offset <= written_offset <= log_end_offset` and `durable_offset <=
//! written_offset`. `append` (a leader's) assigns offsets synchronously (LEO moves at once) and
//! queues the bytes, whose headers the writer stamps with offsets and the leader epoch;
//! `append_replicated` (a follower's) queues a leader's batches as they are, if they continue the
//! log exactly; the writer task coalesces what is queued into 4 KiB-aligned writes of up to 2 MiB
//! (rewriting the partial last block it keeps in memory, as a separate 4 KiB write; one write in
//! flight, the next one built meanwhile), and after each write publishes: the segment's size and
//! index, the tail cache, and the written offset (first offset not yet written). Readers only see
//! offsets below the written offset, and below the bound they pass to `read`. The durable offset
//! (below it everything is fsynced) has no order with the log start offset: DeleteRecords may
//! move the start past offsets not yet fsynced. Two known gaps: an interval fsync that
//! finishes after a concurrent `truncate_to` can set the durable offset above the written offset
//! (see `flusher_loop`), and `truncate_to` an offset inside a batch that starts below the log
//! start offset cuts the log end below the log start offset.
//!
//! Aborted transactions: the producer state (and its snapshot) holds the active segment's; a
//! roll writes those of the segment it seals to the segment's `.txnindex` before the new
//! segment exists and then forgets them, and memory keeps only a summary per sealed segment
//! (`Segment::aborted`), so a read_committed fetch reads the index files of the segments that
//! can name its offsets (`read.rs`). A file beside the active segment is never read: opening
//! the log merges it into the producer state (a crash between the file and the new segment, or
//! a damaged later segment removed) and removes it once the snapshot holds its entries, as a
//! truncation does for the segment that becomes active again. Entries below the active
//! segment that a snapshot or replay names (an older release's snapshot listed them all) go to
//! the index of their segment if it has none. The cleaner writes the union of a group's
//! entries under the group's first base before its swap commits (`compact.rs`).
//!
//! Storage has no notion of high watermark or acknowledgement: the partition layer above owns
//! the high watermark (with replication, the minimum log end over the in-sync replicas) and
//! passes it to `read` as the upper bound. `written` and `durable` are facts about this log's
//! files only.
//!
//! Threading: a `Log` lives on one shard thread (`!Send`), shared as `Rc<Log>`; all methods take
//! `&self`; no `RefCell` borrow is ever held across an `.await`. Maintenance operations (roll,
//! truncate, retention, close) and writes are serialised by a small async lock.
//!
//! I/O failure: the failed write's batches and everything queued behind them are dropped, LEO goes
//! back to the written offset (written data is untouched), waiters for those offsets get the
//! error, and the next `append` retries from the last good position. Offsets of failed appends
//! are reused, so a wait must know which append it waits for: `AppendInfo::fail_gen` is the
//! failure generation at the append, and `wait_append_written` / `wait_append_durable` fail if
//! any failure after it dropped the appended offsets, even when a later append has since written
//! other batches at those offsets.
//!
//! Code layout: this file holds the `Log` struct, open, configuration, accessors, close/delete and
//! the small-file and segment-file helpers; each of the other files adds one `impl Log` block:
//! `append.rs` (append, idempotence check, waits for written/durable offsets), `writer.rs` (the
//! background writer task, write pipeline, failure handling, interval flusher), `read.rs` (reads,
//! the tail cache, offset by timestamp), `recover.rs` (open-time scan and repair, producer state
//! replay), `retention.rs` (roll, retention, DeleteRecords), `truncate.rs`, `epochs.rs` (the
//! leader-epoch cache), `boot.rs` (the boot checkpoint).

mod append;
mod boot;
mod cache;
mod compact;
mod epochs;
mod read;
mod readahead;
mod recover;
mod retention;
mod truncate;
mod writer;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use crate::checkpoint::{
    encode_checkpoint, write_atomic, Checkpoint, CHECKPOINT_FILE, PRODUCER_FILE,
};
use crate::config::{FlushPolicy, IoMode, LogConfig};
use crate::error::StorageError;
use crate::notify::Notify;
use crate::producer::ProducerStates;
use crate::segment::{Segment, PREALLOCATE_MIN_BYTES};
use crate::txn::AbortedTxn;

pub use append::AppendInfo;
use append::Failures;
use cache::TailCache;
pub use cache::{cache_usage, set_cache_budget};
pub use compact::{CleanConfig, CleanStats, Cleanable, Throttle};
pub use epochs::end_offset_for_epoch;
pub use read::ReadResult;
use read::TxnCache;
pub use readahead::{readahead_usage, SHARD_BYTES as READAHEAD_SHARD_BYTES};
use recover::recover;
use writer::{flusher_loop, writer_loop, Pending};

struct State {
    segments: Vec<Segment>,
    pending: VecDeque<Pending>,
    cache: TailCache,
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
    written: Cell<i64>,
    durable: Cell<i64>,
    recovery_point: Cell<i64>,
    fail_gen: Cell<u64>,
    /// Current preallocation window (see `extend_preallocation`).
    prealloc_step: Cell<u64>,
    /// The fallocate running for the active segment, if any (see `start_preallocation`).
    prealloc_job: RefCell<Option<crate::runtime::JoinHandle<()>>>,
    /// Contents of the small state files as last read or written (see `write_small`).
    on_disk: RefCell<HashMap<&'static str, Vec<u8>>>,
    closed: Cell<bool>,
    deleted: Cell<bool>,
    roll_seq_next: Cell<u64>,
    roll_seq_done: Cell<u64>,
    locked: Cell<bool>,
    /// The segments lock: held by whatever removes or replaces sealed segments (retention,
    /// DeleteRecords, truncation, close, delete, the cleaner's swap); never by the writer.
    segments_locked: Cell<bool>,
    /// First offset not yet cleaned (see compact.rs).
    clean_point: Cell<i64>,
    /// The chunk read ahead for the next read from the disk (see readahead.rs).
    readahead: RefCell<Option<readahead::ReadAhead>>,
    /// How much a read asked for when it was given its whole maximum (`min_one`), 0 before
    /// one did: a read given part of it still reads ahead for the next whole one.
    readahead_bytes: Cell<usize>,
    /// The sealed segment `.txnindex` a fetch read last (see read.rs).
    txn_cache: RefCell<TxnCache>,
    /// Held while a small metadata file (checkpoint, epochs, producers) is rewritten: two
    /// rewrites of one file at once share its temporary name.
    small_writing: Cell<bool>,
    flusher_running: Cell<bool>,
    boot: boot::BootCheckpoints,
    /// The active segment holds data recovery did not sync (see boot.rs): its roll or the
    /// close syncs it even without a write handle.
    active_unsynced: Cell<bool>,
    /// Test hook: successful writes left before one fails with ENOSPC.
    inject_write_failure: Cell<Option<u32>>,
    /// Test hook: each preallocation waits this long before its fallocate.
    prealloc_delay: Cell<std::time::Duration>,
    self_weak: RefCell<Weak<Log>>,
    work: Rc<Notify>,
    progress: Notify,
    stats: crate::stats::LogStats,
}

struct LockGuard<'a>(&'a Log);

/// Releases the segments lock, also when its future is dropped.
struct SegmentsGuard<'a>(&'a Log);

impl Drop for SegmentsGuard<'_> {
    fn drop(&mut self) {
        self.0.segments_locked.set(false);
        self.0.progress.notify_all();
    }
}

/// Releases [`Log::write_small`]'s turn, also when its future is dropped.
struct SmallWriteGuard<'a>(&'a Log);

impl Drop for SmallWriteGuard<'_> {
    fn drop(&mut self) {
        self.0.small_writing.set(false);
        self.0.progress.notify_all();
    }
}

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
        crate::runtime::create_dir_all(&dir).await?;
        let rec = recover(&dir, &config).await?;
        let leo = rec.segments.last().map_or(0, |s| s.next_offset);
        let active = rec.segments.last();
        // Below it everything is fsynced: the log end, unless recovery left the active
        // segment as a process crash left it (see boot.rs).
        let synced_to = match active {
            Some(a) if rec.active_unsynced => rec.recovery_point.max(a.base_offset).min(leo),
            _ => leo,
        };
        let state = State {
            active_projected_bytes: active.map_or(0, |s| s.size),
            active_projected_base: active.map_or(0, |s| s.base_offset),
            active_created_ms: active.filter(|s| s.size > 0).map(|_| now_ms()),
            max_timestamp: max_timestamp_of(&rec.segments),
            segments: rec.segments,
            pending: VecDeque::new(),
            cache: TailCache::default(),
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
            written: Cell::new(leo),
            durable: Cell::new(synced_to),
            recovery_point: Cell::new(synced_to),
            fail_gen: Cell::new(0),
            prealloc_step: Cell::new(PREALLOCATE_MIN_BYTES),
            prealloc_job: RefCell::new(None),
            on_disk: RefCell::new(rec.files.iter().cloned().collect()),
            closed: Cell::new(false),
            deleted: Cell::new(false),
            roll_seq_next: Cell::new(0),
            roll_seq_done: Cell::new(0),
            locked: Cell::new(false),
            segments_locked: Cell::new(false),
            clean_point: Cell::new(rec.clean_point),
            readahead: RefCell::new(None),
            readahead_bytes: Cell::new(0),
            txn_cache: RefCell::new(TxnCache::default()),
            small_writing: Cell::new(false),
            flusher_running: Cell::new(false),
            boot: boot::BootCheckpoints::default(),
            active_unsynced: Cell::new(rec.active_unsynced),
            inject_write_failure: Cell::new(None),
            prealloc_delay: Cell::new(std::time::Duration::ZERO),
            self_weak: RefCell::new(Weak::new()),
            work: Rc::new(Notify::default()),
            progress: Notify::default(),
            stats: crate::stats::LogStats::default(),
        });
        *log.self_weak.borrow_mut() = Rc::downgrade(&log);
        log.stats.recovery_scanned_bytes.set(rec.scanned_bytes);
        crate::runtime::spawn(writer_loop(Rc::downgrade(&log), log.work.clone())).detach();
        let active_txn_index = rec.txn.active.is_some();
        log.load_producer_state(rec.txn, rec.scanned, rec.boot_producers)
            .await?;
        if rec.active_unsynced {
            // The durable producer snapshot stays older, as the data it would describe.
            log.write_recovery_checkpoint().await?;
        } else {
            log.write_checkpoint().await?;
        }
        if active_txn_index {
            // The snapshot now holds what the file beside the active segment listed.
            log.remove_active_txn_index().await;
        }
        log.write_epochs().await?;
        if log.config.borrow().cleanup_compact {
            // Marks the log as compacted for recovery (gaps in offsets are legal).
            log.write_clean_point().await?;
        }
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
                crate::runtime::spawn(flusher_loop(me)).detach();
            }
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start.get()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.leo.get()
    }

    /// First offset not yet written: every batch below it is in the segment files (maybe not
    /// yet fsynced, see [`Log::durable_offset`]) and can be read.
    pub fn written_offset(&self) -> i64 {
        self.written.get()
    }

    /// Offsets below this are fsynced (per the last completed fdatasync).
    pub fn durable_offset(&self) -> i64 {
        self.durable.get()
    }

    /// Whether the log was closed (shutdown) or deleted: nothing more will be written.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Bytes of written batches in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Flushes everything, fsyncs, writes index files and checkpoints (recovery point = LEO) and
    /// stops the writer task. Later appends fail with `Closed`.
    pub async fn close(&self) -> Result<(), StorageError> {
        if self.closed.replace(true) {
            return Ok(());
        }
        self.work.notify_all();
        let _s = self.segments_lock().await;
        self.drain_pending().await;
        let _g = self.lock().await;
        let (file, read_file, size, seg_summary) = {
            let st = self.state.borrow();
            match st.segments.last() {
                Some(s) => (
                    s.write_file.clone(),
                    Some(s.read_file.clone()),
                    s.size,
                    Some(s.index.clone()),
                ),
                None => (None, None, 0, None),
            }
        };
        // No write handle: nothing was written since the log opened, and the active index
        // on disk is current (or the segment is empty and needs none) unless recovery left
        // the segment unsynced.
        if let Some(f) = file {
            f.sync_data().await?;
            self.cut_active_file(&f, size).await?;
            f.sync_all().await?;
            if seg_summary.is_some() {
                self.write_active_index().await?;
            }
        } else if let Some(f) = read_file.filter(|_| self.active_unsynced.get()) {
            f.sync_data().await?;
            self.write_active_index().await?;
        }
        self.active_unsynced.set(false);
        self.durable.set(self.written.get());
        self.recovery_point.set(self.written.get());
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
        let _s = self.segments_lock().await;
        self.drain_pending().await;
        let _g = self.lock().await;
        {
            let mut st = self.state.borrow_mut();
            st.segments.clear();
            st.cache.clear();
        }
        // A small file being written (a boot checkpoint in the background) is done before the
        // directory goes; later ones see `deleted`. Waited for, not taken: releasing the turn
        // would wake the log's waiters before the directory is gone.
        loop {
            let notified = self.progress.notified();
            if !self.small_writing.get() {
                break;
            }
            notified.await;
        }
        let dir = self.dir.clone();
        let res = crate::runtime::spawn_blocking(move || {
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
            Some(Ok(())) => {}
            Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Some(Err(e)) => return Err(io_err(e)),
            None => return Err(io_err(io::Error::other("remove_dir_all task panicked"))),
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

    /// Test hook: each later preallocation (see `Log::start_preallocation`) waits `delay` on its
    /// thread before its fallocate, as one held up by the filesystem does.
    #[doc(hidden)]
    pub fn delay_preallocation(&self, delay: std::time::Duration) {
        self.prealloc_delay.set(delay);
    }

    // ---- internals ----

    /// Waits until `flag` is clear and sets it: the log's small async locks (the flag's
    /// guard clears it and notifies `progress`).
    async fn take_flag(&self, flag: &Cell<bool>) {
        loop {
            let notified = self.progress.notified();
            if !flag.replace(true) {
                return;
            }
            notified.await;
        }
    }

    async fn lock(&self) -> LockGuard<'_> {
        self.take_flag(&self.locked).await;
        LockGuard(self)
    }

    /// The segments lock (see `Log::segments_locked`); taken before [`Log::lock`], never after.
    async fn segments_lock(&self) -> SegmentsGuard<'_> {
        self.take_flag(&self.segments_locked).await;
        SegmentsGuard(self)
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

    fn active_write_file(&self) -> Option<crate::runtime::File> {
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
        self.write_recovery_checkpoint().await?;
        self.write_small(PRODUCER_FILE, || {
            self.state.borrow().producers.encode(self.leo.get())
        })
        .await?;
        Ok(())
    }

    /// The recovery point and log start offset file alone.
    async fn write_recovery_checkpoint(&self) -> Result<(), StorageError> {
        if self.deleted.get() {
            return Ok(());
        }
        let c = Checkpoint {
            recovery_point: self.recovery_point.get(),
            log_start_offset: self.log_start.get(),
        };
        self.write_small(CHECKPOINT_FILE, || encode_checkpoint(&c))
            .await
    }

    /// Writes one of the log's small state files (atomically, durably) unless it already holds
    /// exactly these bytes: opening and closing an unchanged log then writes nothing, which
    /// is what makes a restart with thousands of idle partitions fast.
    /// The content comes from `content`, called once this write has its turn: a rewrite that
    /// waited for another must not put older content back.
    async fn write_small(
        &self,
        name: &'static str,
        content: impl FnOnce() -> Vec<u8>,
    ) -> Result<(), StorageError> {
        let _turn = self.small_turn().await;
        let bytes = content();
        if self.on_disk.borrow().get(name) == Some(&bytes) {
            return Ok(());
        }
        self.on_disk.borrow_mut().remove(name);
        write_atomic(&self.dir, name, bytes.clone()).await?;
        self.on_disk.borrow_mut().insert(name, bytes);
        Ok(())
    }

    /// The turn to rewrite one of the small state files (held until the guard drops).
    async fn small_turn(&self) -> SmallWriteGuard<'_> {
        self.take_flag(&self.small_writing).await;
        SmallWriteGuard(self)
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
}

impl Drop for Log {
    fn drop(&mut self) {
        // Wake the writer so it notices the log is gone and exits.
        self.work.notify_all();
    }
}

use sluice_base::now_ms;

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
    write_atomic(dir, index_file_name(ip)?, a).await?;
    write_atomic(dir, index_file_name(tp)?, b).await?;
    Ok(())
}

/// The file name of an index path (what `write_atomic` takes).
fn index_file_name(p: &Path) -> Result<&str, StorageError> {
    p.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| StorageError::Corrupt(format!("bad index path {}", p.display())))
}

/// Writes the `.txnindex` at `path` (atomically, durably) with `entries`, or removes it when
/// there are none.
async fn write_txn_index(
    dir: &Path,
    path: &Path,
    entries: &[AbortedTxn],
) -> Result<(), StorageError> {
    if entries.is_empty() {
        remove_file_if_there(path, "index file").await;
        return Ok(());
    }
    write_atomic(
        dir,
        index_file_name(path)?,
        crate::txnindex::encode(entries),
    )
    .await?;
    Ok(())
}

/// Removes a file; one already gone is fine, another failure is logged (`what`: the kind of
/// file, for the log line).
async fn remove_file_if_there(p: &Path, what: &str) {
    if let Err(e) = crate::runtime::remove_file(p).await {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), error = %e, "failed to remove {what}");
        }
    }
}

/// Removes a segment's offset and time indexes (not its `.txnindex`).
async fn remove_index_files(seg: &Segment) {
    let (ip, tp) = seg.index_paths();
    for p in [ip, tp] {
        remove_file_if_there(&p, "index file").await;
    }
}

async fn remove_segment_files(doomed: Vec<Segment>) {
    remove_replaced_segment_files(doomed, None).await;
}

/// Removes segments' files, except the `.txnindex` at `keep_txn_base`: a cleaner swap's, which
/// already holds the merged segment's aborted transactions (see compact.rs).
async fn remove_replaced_segment_files(doomed: Vec<Segment>, keep_txn_base: Option<i64>) {
    for seg in doomed {
        remove_index_files(&seg).await;
        if keep_txn_base != Some(seg.base_offset) {
            remove_file_if_there(&seg.txn_index_path(), "index file").await;
        }
        remove_file_if_there(&seg.path, "segment").await;
    }
}
