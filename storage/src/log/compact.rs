//! Log compaction (`cleanup.policy=compact`): Kafka's cleaner, one partition at a time.
//!
//! ```text
//! | clean section | dirty section              | uncleanable           | active segment |
//! ^log start      ^clean point                 ^end                    ^last segment base
//!                 (cleaner.checkpoint)         (sealed segments only, below the bound the
//!                                              partition passes — its high watermark — and
//!                                              older than min.compaction.lag.ms)
//! ```
//!
//! One clean: (1) a map key → last offset over the dirty section, in a memory budget (when it
//! fills, the clean stops at the last whole segment mapped); (2) every sealed segment from the
//! log start to `end`, in groups of adjacent segments whose sizes add up to at most
//! segment.bytes, is copied to `<base>.cleaned` keeping: each keyed record that is the last of
//! its key (or whose key the map does not hold), tombstones unless they lie in the clean
//! section in a segment whose records are all older than delete.retention.ms, control
//! batches, and the last batch of every producer the log still tracks (whole: its sequence
//! numbers must survive a restart that replays the log); records without a key go, as in
//! Kafka. Kept batches keep their offsets (see [`crate::records::rebuild_batch`]); a batch
//! left with no record goes, so offsets have gaps. (3) The group is swapped in:
//!
//! ```text
//! <base>.cleaned  --fsync, rename-->  <base>.<end>.swap   (the commit point)
//!   unlink the group's old .log/.index/.timeindex/.txnindex, rename the swap to <base>.log,
//!   write its index, fsync the directory
//! ```
//!
//! Before the commit, `<base>.txnindex` is rewritten with the aborted transactions of the whole
//! group (control batches are kept, so every marker stays where it was); it is not unlinked
//! with the old segments. Until the swap, segment `base`'s range filters the others' entries
//! out (see txnindex.rs).
//!
//! Recovery deletes `.cleaned` files and finishes any `.swap` (old segments with a base in
//! `[base, end)` go, then the rename), so a crash leaves the old or the new set, never a mix.
//! The swap holds the segments lock (retention, DeleteRecords, truncation and close take it
//! too), never the writer's: produce is not blocked, and a group that changed meanwhile (a
//! truncation, retention) is abandoned. (4) The clean point moves to `end`.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::read::read_txn_index;
use super::{remove_replaced_segment_files, write_index_pair, write_txn_index, Log};
use crate::aligned::{AlignedBuf, BLOCK_BYTES};
use crate::batch::{parse_checked, BatchHeader};
use crate::checkpoint::{sync_dir, CLEANER_FILE};
use crate::error::StorageError;
use crate::records::{parse_records, rebuild_batch, records_bytes, Codecs};
use crate::runtime::{AsyncReadAtExt, AsyncWriteAtExt, BufResult, File};
use crate::scan::scanned;
use crate::segment::{file_name, open_read, open_write, Segment};
use crate::txnindex::{in_segment, summarize};

/// Bytes read from a segment at once.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Bytes buffered before a write of the cleaned file.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Map memory counted per entry beyond the key bytes (hash table slot, `Vec` header, offset).
const MAP_ENTRY_OVERHEAD: usize = 48;

/// What one clean may do.
#[derive(Debug, Clone)]
pub struct CleanConfig {
    pub now_ms: i64,
    /// Nothing at or past this offset is cleaned (the partition's high watermark).
    pub clean_below: i64,
    /// Bytes the key map may use.
    pub map_bytes: usize,
    /// Largest decompressed records section of one batch.
    pub batch_bytes_max: usize,
}

/// The cleanable part of a log (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cleanable {
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// The clean point (first dirty offset).
    pub first_dirty: i64,
    /// End of the cleanable part (a segment base).
    pub end: i64,
    /// Largest record timestamp of the oldest dirty cleanable segment.
    pub oldest_dirty_ms: Option<i64>,
}

impl Cleanable {
    /// dirty / (clean + dirty) over the cleanable part.
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }

    /// Whether a clean is due: the dirty ratio reached `min.cleanable.dirty.ratio`, or dirty
    /// records are older than `max.compaction.lag.ms`.
    pub fn due(&self, min_ratio: f64, max_lag_ms: i64, now_ms: i64) -> bool {
        self.dirty_bytes > 0
            && (self.dirty_ratio() >= min_ratio
                || self
                    .oldest_dirty_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) > max_lag_ms))
    }
}

/// What a clean did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    /// The new clean point.
    pub cleaned_to: i64,
    /// Groups abandoned because the log changed under them.
    pub groups_abandoned: usize,
    /// Wall time of the clean, sleeps of the I/O budget included.
    pub elapsed_ms: u64,
}

/// Limits the cleaner's I/O to `bytes_per_sec` (`u64::MAX`: no limit).
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    start: Cell<Instant>,
    used: Cell<u64>,
    slept: Cell<Duration>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec: bytes_per_sec.max(1),
            start: Cell::new(Instant::now()),
            used: Cell::new(0),
            slept: Cell::new(Duration::ZERO),
        }
    }

    /// How long [`Throttle::consume`] has slept in all.
    pub fn slept(&self) -> Duration {
        self.slept.get()
    }

    /// Counts `n` bytes of I/O; sleeps while the rate since the window began is above the
    /// limit. Yields to the shard's other tasks either way.
    pub async fn consume(&self, n: u64) {
        if self.bytes_per_sec != u64::MAX {
            let elapsed = self.start.get().elapsed();
            if elapsed > Duration::from_secs(1) {
                self.start.set(Instant::now());
                self.used.set(0);
            }
            self.used.set(self.used.get().saturating_add(n));
            let due = Duration::from_secs_f64(self.used.get() as f64 / self.bytes_per_sec as f64);
            let elapsed = self.start.get().elapsed();
            if due > elapsed {
                self.slept.set(self.slept.get() + (due - elapsed));
                crate::runtime::sleep(due - elapsed).await;
                return;
            }
        }
        crate::runtime::yield_now().await;
    }
}

/// A sealed segment as the clean saw it (checked again before the swap).
#[derive(Debug, Clone)]
struct SegRef {
    base: i64,
    /// Base of the segment after it: the end of this one's offset range.
    next_base: i64,
    path: PathBuf,
    file: File,
    size: u64,
    max_timestamp: i64,
}

impl Log {
    /// The cleanable part of this log now (see the module documentation).
    pub fn cleanable(&self, now_ms: i64, clean_below: i64) -> Cleanable {
        let cfg = self.config.borrow();
        let st = self.state.borrow();
        let first_dirty = self.clean_point.get().max(self.log_start.get());
        let mut c = Cleanable {
            first_dirty,
            end: st.segments.first().map_or(0, |s| s.base_offset),
            ..Cleanable::default()
        };
        for w in st.segments.windows(2) {
            let (s, next) = (&w[0], w[1].base_offset);
            let young = s.max_timestamp >= 0
                && now_ms.saturating_sub(s.max_timestamp) < cfg.min_compaction_lag_ms;
            if next > clean_below || young {
                break;
            }
            if s.base_offset >= first_dirty {
                c.dirty_bytes += s.size;
                if c.oldest_dirty_ms.is_none() && s.max_timestamp >= 0 {
                    c.oldest_dirty_ms = Some(s.max_timestamp);
                }
            } else {
                c.clean_bytes += s.size;
            }
            c.end = next;
        }
        c.first_dirty = c.first_dirty.min(c.end);
        c
    }

    /// The clean point: offsets below it were cleaned at least once.
    pub fn clean_point(&self) -> i64 {
        self.clean_point.get()
    }

    /// Cleans this log once (see the module documentation). `Ok(None)`: nothing to clean.
    pub async fn clean(
        &self,
        cfg: &CleanConfig,
        codecs: &dyn Codecs,
        throttle: &Throttle,
    ) -> Result<Option<CleanStats>, StorageError> {
        if self.closed.get() {
            return Ok(None);
        }
        // The clean point file also marks the log as compacted for recovery (a topic can
        // become compacted after its logs opened).
        self.write_clean_point().await?;
        let c = self.cleanable(cfg.now_ms, cfg.clean_below);
        if c.dirty_bytes == 0 {
            return Ok(None);
        }
        let started = Instant::now();
        let segs = self.sealed_below(c.end);
        let mut stats = CleanStats {
            segments_before: segs.len(),
            ..CleanStats::default()
        };
        let (map, end) = self
            .build_map(
                &segs,
                c.first_dirty,
                c.end,
                cfg,
                codecs,
                throttle,
                &mut stats,
            )
            .await?;
        if end <= c.first_dirty {
            tracing::warn!(
                dir = %self.dir.display(),
                "the cleaner's key map cannot hold the keys of one segment: raise \
                 --log-cleaner-dedupe-buffer-size"
            );
            return Ok(None);
        }
        let keep_whole = self.state.borrow().producers.last_batch_offsets();
        let delete_before = cfg
            .now_ms
            .saturating_sub(self.config.borrow().delete_retention_ms);
        let groups = group_segments(
            segs.into_iter().filter(|s| s.next_base <= end).collect(),
            self.config.borrow().segment_bytes_effective(),
        );
        let mut after = 0usize;
        for group in groups {
            let policy = Retain {
                map: &map,
                keep_whole: &keep_whole,
                first_dirty: c.first_dirty,
                delete_before,
            };
            let (path, seg) = self
                .write_cleaned(&group, &policy, cfg, codecs, throttle, &mut stats)
                .await?;
            if self.swap_in(&group, path, seg).await? {
                after += 1;
            } else {
                stats.groups_abandoned += 1;
                after += group.len();
            }
        }
        stats.segments_after = after;
        stats.cleaned_to = end;
        stats.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if stats.groups_abandoned == 0 {
            self.clean_point.set(end);
            self.write_clean_point().await?;
        }
        self.stats.on_clean(stats.bytes_read, stats.bytes_written);
        Ok(Some(stats))
    }

    /// The sealed segments whose offsets end at or before `end`.
    fn sealed_below(&self, end: i64) -> Vec<SegRef> {
        let st = self.state.borrow();
        st.segments
            .windows(2)
            .take_while(|w| w[1].base_offset <= end)
            .map(|w| SegRef {
                base: w[0].base_offset,
                next_base: w[1].base_offset,
                path: w[0].path.clone(),
                file: w[0].read_file.clone(),
                size: w[0].size,
                max_timestamp: w[0].max_timestamp,
            })
            .collect()
    }

    /// The key map over the dirty segments, and where it stops (a segment base: every segment
    /// below it is mapped whole).
    #[allow(clippy::too_many_arguments)]
    async fn build_map(
        &self,
        segs: &[SegRef],
        first_dirty: i64,
        end: i64,
        cfg: &CleanConfig,
        codecs: &dyn Codecs,
        throttle: &Throttle,
        stats: &mut CleanStats,
    ) -> Result<(HashMap<Vec<u8>, i64>, i64), StorageError> {
        let mut map: HashMap<Vec<u8>, i64> = HashMap::new();
        let mut used = 0usize;
        for s in segs
            .iter()
            .filter(|s| s.base >= first_dirty && s.next_base <= end)
        {
            let mut full = false;
            let mut reader = SegmentReader::new(s);
            while let Some(batches) = reader.next_chunk(throttle, stats).await? {
                for (h, bytes) in &batches {
                    // Transactional records may belong to an aborted transaction: they never
                    // supersede a key (and are kept whole, see `retain`).
                    if h.is_control() || h.is_transactional() {
                        continue;
                    }
                    let Some(body) = decode_body(bytes, h, codecs, cfg) else {
                        continue;
                    };
                    let Ok(records) = parse_records(&body, h.records_count) else {
                        continue;
                    };
                    for r in records {
                        let Some(key) = r.key else { continue };
                        let offset = h.base_offset.saturating_add(r.offset_delta);
                        match map.get_mut(key) {
                            Some(o) => *o = offset,
                            None if used + key.len() + MAP_ENTRY_OVERHEAD > cfg.map_bytes => {
                                full = true;
                                break;
                            }
                            None => {
                                used += key.len() + MAP_ENTRY_OVERHEAD;
                                map.insert(key.to_vec(), offset);
                            }
                        }
                    }
                    if full {
                        break;
                    }
                }
                if full {
                    break;
                }
            }
            if full {
                // The map stops at this segment: entries from it go, so its keys' earlier
                // records are kept (never one too few).
                map.retain(|_, o| *o < s.base);
                return Ok((map, s.base));
            }
        }
        Ok((map, end))
    }

    /// Copies `group` to `<base>.cleaned`, keeping what `policy` keeps. Returns the file and
    /// its segment (indexed, read handle on the `.cleaned` file).
    async fn write_cleaned(
        &self,
        group: &[SegRef],
        policy: &Retain<'_>,
        cfg: &CleanConfig,
        codecs: &dyn Codecs,
        throttle: &Throttle,
        stats: &mut CleanStats,
    ) -> Result<(PathBuf, Segment), StorageError> {
        let base = group[0].base;
        let path = self.dir.join(file_name(base, "cleaned"));
        let (file, _) = open_write(&path, self.io_mode.get()).await?;
        file.set_len(0).await?;
        let mut out = CleanedWriter::new(file);
        let mut seg = Segment::new(base, path.clone(), open_read(&path).await?);
        let interval = self.config.borrow().index_interval_bytes;
        for s in group {
            let mut reader = SegmentReader::new(s);
            while let Some(batches) = reader.next_chunk(throttle, stats).await? {
                for (h, bytes) in &batches {
                    let kept = policy.retain(s, h, bytes, cfg, codecs, stats);
                    let bytes: &[u8] = match &kept {
                        Kept::All => bytes,
                        Kept::Rebuilt(b) => b,
                        Kept::Nothing => continue,
                    };
                    let h2 = parse_checked(bytes).map_err(|e| {
                        StorageError::Corrupt(format!("the cleaner built a bad batch: {e}"))
                    })?;
                    let position = out.size;
                    out.push(bytes).await?;
                    seg.on_batch(&scanned(&h2, position), interval);
                }
            }
        }
        stats.bytes_written += out.size;
        throttle.consume(out.size).await;
        let size = out.size;
        out.finish().await?;
        seg.size = size;
        Ok((path, seg))
    }

    /// Replaces `group` by the cleaned segment, unless the log changed under it. Returns
    /// whether it did.
    async fn swap_in(
        &self,
        group: &[SegRef],
        cleaned: PathBuf,
        mut seg: Segment,
    ) -> Result<bool, StorageError> {
        let _g = self.segments_lock().await;
        let base = group[0].base;
        let end = group[group.len() - 1].next_base;
        let unchanged = {
            let st = self.state.borrow();
            let i = st.segments.partition_point(|s| s.base_offset < base);
            !self.closed.get()
                && st.segments.len() > i + group.len()
                && group
                    .iter()
                    .zip(&st.segments[i..])
                    .all(|(g, s)| g.base == s.base_offset && g.size == s.size && g.path == s.path)
        };
        if !unchanged {
            let _ = crate::runtime::remove_file(&cleaned).await;
            return Ok(false);
        }
        // The group's aborted transactions (markers are kept) under the first base, before
        // the commit: until the swap their segment's range filters out the others'.
        let indexed: Vec<(i64, i64, PathBuf)> = {
            let st = self.state.borrow();
            let i = st.segments.partition_point(|s| s.base_offset < base);
            st.segments[i..i + group.len()]
                .iter()
                .filter(|s| s.aborted.is_some())
                .map(|s| (s.base_offset, s.next_offset, s.txn_index_path()))
                .collect()
        };
        let mut aborted = Vec::new();
        for (b, next, path) in indexed {
            let entries = read_txn_index(&path).await?;
            aborted.extend(in_segment(&entries, b, next).copied());
        }
        let txn_path = self.dir.join(file_name(base, "txnindex"));
        write_txn_index(&self.dir, &txn_path, &aborted).await?;
        let swap = self.dir.join(format!("{base:020}.{end:020}.swap"));
        crate::runtime::rename(&cleaned, &swap).await?;
        sync_dir(&self.dir).await?;
        // Committed: from here recovery finishes the swap if this does not.
        let old: Vec<Segment> = {
            let mut st = self.state.borrow_mut();
            let i = st.segments.partition_point(|s| s.base_offset < base);
            let old: Vec<Segment> = st.segments.drain(i..i + group.len()).collect();
            let path = self.dir.join(file_name(base, "log"));
            seg.path = path;
            seg.aborted = summarize(&aborted, base, seg.next_offset);
            st.segments.insert(i, seg);
            st.cache.retain(|c| c.base_offset >= end);
            old
        };
        self.txn_cache.borrow_mut().clear();
        // Readers hold the new segment's handle on the swap file; the old handles stay valid
        // for reads in flight after the unlink.
        remove_replaced_segment_files(old, Some(base)).await;
        let final_path = self.dir.join(file_name(base, "log"));
        crate::runtime::rename(&swap, &final_path).await?;
        let files = {
            let st = self.state.borrow();
            let i = st.segments.partition_point(|s| s.base_offset < base);
            st.segments.get(i).map(|s| {
                let (ip, tp) = s.index_paths();
                let (a, b) = s.index.encode(&s.summary());
                (ip, tp, a, b)
            })
        };
        if let Some((ip, tp, a, b)) = files {
            write_index_pair(&self.dir, &ip, &tp, a, b).await?;
        }
        sync_dir(&self.dir).await?;
        self.refresh_max_timestamp();
        Ok(true)
    }

    pub(super) async fn write_clean_point(&self) -> Result<(), StorageError> {
        let point = self.clean_point.get();
        self.write_small(CLEANER_FILE, || {
            crate::checkpoint::encode_clean_point(point)
        })
        .await
    }
}

/// The batch's records bytes, or `None` (logged) when they cannot be decoded: such a batch is
/// kept as it is and its keys are not mapped.
fn decode_body(
    bytes: &[u8],
    h: &BatchHeader,
    codecs: &dyn Codecs,
    cfg: &CleanConfig,
) -> Option<Vec<u8>> {
    match records_bytes(bytes, h, codecs, cfg.batch_bytes_max) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(offset = h.base_offset, error = %e, "the cleaner cannot decode a batch; keeping it");
            None
        }
    }
}

/// What the cleaner keeps of one batch.
enum Kept {
    All,
    Rebuilt(Vec<u8>),
    Nothing,
}

struct Retain<'a> {
    map: &'a HashMap<Vec<u8>, i64>,
    keep_whole: &'a HashSet<i64>,
    first_dirty: i64,
    /// Tombstones in clean segments whose records are all older than this go.
    delete_before: i64,
}

impl Retain<'_> {
    fn retain(
        &self,
        s: &SegRef,
        h: &BatchHeader,
        bytes: &[u8],
        cfg: &CleanConfig,
        codecs: &dyn Codecs,
        stats: &mut CleanStats,
    ) -> Kept {
        // Markers, and transactional batches (the cleaner does not know which transactions
        // aborted: keeping them is safe, dropping an aborted one's superseded key is not).
        if h.is_control() || h.is_transactional() || self.keep_whole.contains(&h.last_offset()) {
            return Kept::All;
        }
        let Some(body) = decode_body(bytes, h, codecs, cfg) else {
            return Kept::All;
        };
        let records = match parse_records(&body, h.records_count) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(offset = h.base_offset, error = %e, "the cleaner cannot parse a batch; keeping it");
                return Kept::All;
            }
        };
        let drop_tombstones = s.base < self.first_dirty
            && s.max_timestamp >= 0
            && s.max_timestamp < self.delete_before;
        let kept: Vec<_> = records
            .iter()
            .filter(|r| {
                let Some(key) = r.key else { return false };
                let offset = h.base_offset.saturating_add(r.offset_delta);
                let latest = self.map.get(key).is_none_or(|&o| offset >= o);
                latest && !(r.is_tombstone() && drop_tombstones)
            })
            .copied()
            .collect();
        stats.records_removed += (records.len() - kept.len()) as u64;
        if kept.len() == records.len() {
            Kept::All
        } else if kept.is_empty() {
            Kept::Nothing
        } else {
            match rebuild_batch(bytes, h, &kept, codecs) {
                Ok(b) => Kept::Rebuilt(b),
                Err(e) => {
                    tracing::warn!(offset = h.base_offset, error = %e, "the cleaner cannot rebuild a batch; keeping it");
                    Kept::All
                }
            }
        }
    }
}

/// Adjacent segments whose sizes add up to at most `max_bytes` (and whose offset range fits
/// the index's 32-bit relative offsets), Kafka's `groupSegmentsBySize`.
fn group_segments(segs: Vec<SegRef>, max_bytes: u64) -> Vec<Vec<SegRef>> {
    let mut groups: Vec<Vec<SegRef>> = Vec::new();
    for s in segs {
        if let Some(g) = groups.last_mut() {
            let size: u64 = g.iter().map(|x| x.size).sum();
            if size + s.size <= max_bytes && s.next_base - g[0].base <= i64::from(i32::MAX) {
                g.push(s);
                continue;
            }
        }
        groups.push(vec![s]);
    }
    groups
}

/// Reads a sealed segment's batches in chunks of about [`READ_CHUNK_BYTES`] (more when one
/// batch is larger), each CRC-checked.
struct SegmentReader<'a> {
    seg: &'a SegRef,
    pos: u64,
}

impl<'a> SegmentReader<'a> {
    fn new(seg: &'a SegRef) -> Self {
        SegmentReader { seg, pos: 0 }
    }

    async fn next_chunk(
        &mut self,
        throttle: &Throttle,
        stats: &mut CleanStats,
    ) -> Result<Option<Vec<(BatchHeader, Vec<u8>)>>, StorageError> {
        let end = self.seg.size;
        if self.pos >= end {
            return Ok(None);
        }
        let mut want = READ_CHUNK_BYTES;
        // Bounded: the second pass reads at least the first batch whole.
        for _ in 0..2 {
            let len = ((end - self.pos) as usize).min(want);
            let buf = Vec::with_capacity(len);
            let BufResult(res, buf) = self.seg.file.read_exact_at(buf, self.pos).await;
            res?;
            stats.bytes_read += len as u64;
            throttle.consume(len as u64).await;
            let mut out = Vec::new();
            let mut at = 0usize;
            while at < buf.len() {
                let rest = &buf[at..];
                let h = match BatchHeader::parse(rest) {
                    Ok(h) => h,
                    Err(e) => return Err(corrupt(self.seg, self.pos + at as u64, e)),
                };
                if h.total_size() > rest.len() {
                    break;
                }
                let h =
                    parse_checked(rest).map_err(|e| corrupt(self.seg, self.pos + at as u64, e))?;
                out.push((h, rest[..h.total_size()].to_vec()));
                at += h.total_size();
            }
            if !out.is_empty() {
                self.pos += at as u64;
                return Ok(Some(out));
            }
            want = BatchHeader::parse(&buf)
                .map(|h| h.total_size())
                .map_err(|e| corrupt(self.seg, self.pos, e))?;
        }
        Err(StorageError::Corrupt(format!(
            "{}: no whole batch at position {}",
            self.seg.path.display(),
            self.pos
        )))
    }
}

fn corrupt(s: &SegRef, pos: u64, e: crate::batch::BatchError) -> StorageError {
    StorageError::Corrupt(format!("{} at {pos}: {e}", s.path.display()))
}

/// Writes the cleaned file in whole blocks (O_DIRECT when the log uses it), the last one
/// padded, then cuts it to its length and fsyncs it.
struct CleanedWriter {
    file: File,
    buf: Option<AlignedBuf>,
    /// File position of `buf`'s first byte (a block boundary).
    pos: u64,
    size: u64,
}

impl CleanedWriter {
    fn new(file: File) -> Self {
        CleanedWriter {
            file,
            buf: Some(AlignedBuf::with_capacity(WRITE_CHUNK_BYTES)),
            pos: 0,
            size: 0,
        }
    }

    async fn push(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let buf = self.buf.as_mut().ok_or_else(gone)?;
            let n = (buf.capacity() - buf.len()).min(bytes.len());
            buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if buf.len() == buf.capacity() {
                self.write_buf().await?;
            }
        }
        Ok(())
    }

    /// Writes the buffer (padded to a block) at `pos`; a full buffer is then emptied, a
    /// partial one is the end of the file.
    async fn write_buf(&mut self) -> io::Result<()> {
        let mut buf = self.buf.take().ok_or_else(gone)?;
        let len = buf.len();
        buf.pad_to_block();
        let BufResult(res, mut buf) = self.file.write_all_at(buf, self.pos).await;
        res?;
        self.pos += len as u64;
        debug_assert!(len % BLOCK_BYTES == 0 || self.pos == self.size);
        buf.truncate(0);
        self.buf = Some(buf);
        Ok(())
    }

    async fn finish(mut self) -> io::Result<()> {
        if self.buf.as_ref().is_some_and(|b| b.len() > 0) {
            self.write_buf().await?;
        }
        self.file.set_len(self.size).await?;
        self.file.sync_all().await?;
        Ok(())
    }
}

fn gone() -> io::Error {
    io::Error::other("cleaned-file buffer lost after a failed write")
}
