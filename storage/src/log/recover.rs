//! Open-time recovery: finds the segments of a directory, trusts what the checkpoint and intact
//! index files cover (and, after a process crash in the same boot, the boot checkpoint: see
//! boot.rs), scans the rest, truncates a torn or corrupt tail, rebuilds the leader-epoch
//! cache from the scanned batches, and restores producer state (from the scanned batches where
//! the scan reached the log end, else by reading the log again).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use super::{
    remove_file_if_there, remove_replaced_segment_files, remove_segment_files, write_index_pair,
    write_txn_index, Log,
};
use crate::batch::BatchHeader;
use crate::checkpoint::{
    boot_id, decode_boot, decode_checkpoint, decode_epochs, read_optional, BOOT_FILE,
    CHECKPOINT_FILE, CLEANER_FILE, EPOCH_FILE, PRODUCER_FILE,
};
use crate::config::{FlushPolicy, IoMode, LogConfig};
use crate::error::StorageError;
use crate::index::SegmentIndex;
use crate::producer::ProducerStates;
use crate::scan::ScanStop;
use crate::segment::{
    file_name, load_tail, open_read, open_write, parse_log_name, scan_file, Segment,
};
use crate::txn::{AbortedTxn, ControlType};
use crate::txnindex::{self, in_segment, summarize};

/// Recovery treats a batch claiming more than this (or max.message.bytes, if larger) as garbage.
const RECOVERY_BATCH_BYTES_MIN: u64 = 128 << 20;

/// Most batches with a producer id a segment's scan keeps for producer state (~80 bytes each);
/// past it that segment's are read again instead (bounds memory for logs of tiny batches).
const SCANNED_PRODUCER_BATCHES_MAX: usize = 1 << 18;

impl Log {
    /// Restores producer state: the snapshot, minus anything past the recovered log end, plus
    /// the batches written after the snapshot (headers, and the record of each marker): those
    /// in `scanned` as recovery's scan saw them, the ones before it read back from the log.
    /// `boot`: the boot checkpoint's snapshot, when recovery used its index; the newer of it
    /// and the durable one is used.
    pub(super) async fn load_producer_state(
        &self,
        txn: RecoveredTxn,
        scanned: Option<ScannedTail>,
        boot: Option<Vec<u8>>,
    ) -> Result<(), StorageError> {
        let leo = self.leo.get();
        let bytes = read_optional(&self.dir.join(PRODUCER_FILE)).await?;
        let durable = bytes.as_deref().and_then(ProducerStates::decode);
        if let Some(b) = bytes {
            self.on_disk.borrow_mut().insert(PRODUCER_FILE, b);
        }
        let boot = boot.as_deref().and_then(ProducerStates::decode);
        let snapshot = match (durable, boot) {
            (Some(d), Some(b)) if b.0 > d.0 => Some(b),
            (d, b) => d.or(b),
        };
        let (mut states, from) = match snapshot {
            Some((covered, mut states)) => {
                states.truncate_from(leo);
                (states, covered.min(leo))
            }
            None => (ProducerStates::default(), self.log_start.get()),
        };
        let from = from.max(self.log_start.get());
        match scanned {
            // After a crash the scan just read the end of the log: what it saw of each batch
            // replaces reading it again (that read doubled the time to open a partition with a
            // large unflushed tail).
            Some(tail) => {
                if from < tail.from {
                    self.replay(&mut states, from, tail.from).await?;
                }
                for b in tail.batches.iter().filter(|b| {
                    let base = b.header.base_offset;
                    base >= from && base < leo
                }) {
                    let h = &b.header;
                    states.record(h, h.base_offset, h.max_timestamp, b.control);
                }
            }
            None => self.replay(&mut states, from, leo).await?,
        }
        let active_base = self
            .state
            .borrow()
            .segments
            .last()
            .map_or(0, |s| s.base_offset);
        if let Some(entries) = txn.active {
            states.merge_aborted(in_segment(&entries, active_base, leo).copied());
        }
        self.seal_aborted(states.aborted_below(active_base), &txn.damaged)
            .await?;
        states.prune_aborted(active_base);
        self.state.borrow_mut().producers = states;
        Ok(())
    }

    /// Gives the sealed segments without an index that `below` (aborted transactions a
    /// snapshot or replay named below the active segment) has entries for their index, and
    /// rebuilds the `damaged` ones' from a replay of the log up to their end.
    async fn seal_aborted(
        &self,
        below: &[AbortedTxn],
        damaged: &[i64],
    ) -> Result<(), StorageError> {
        let sealed: Vec<(i64, i64, PathBuf, bool)> = {
            let st = self.state.borrow();
            let n = st.segments.len().saturating_sub(1);
            st.segments[..n]
                .iter()
                .map(|s| {
                    let (b, e) = (s.base_offset, s.next_offset);
                    (b, e, s.txn_index_path(), s.aborted.is_some())
                })
                .collect()
        };
        for (base, next, path, indexed) in sealed {
            let entries: Vec<AbortedTxn> = if damaged.contains(&base) {
                // Written even if empty: that removes the damaged file.
                tracing::warn!(path = %path.display(), "rebuilding a damaged transaction index");
                let mut states = ProducerStates::default();
                self.replay(&mut states, self.log_start.get(), next).await?;
                in_segment(states.aborted_below(next), base, next)
                    .copied()
                    .collect()
            } else if !indexed {
                let entries: Vec<AbortedTxn> = in_segment(below, base, next).copied().collect();
                if entries.is_empty() {
                    continue;
                }
                entries
            } else {
                continue;
            };
            write_txn_index(&self.dir, &path, &entries).await?;
            let mut st = self.state.borrow_mut();
            if let Some(s) = st.segments.iter_mut().find(|s| s.base_offset == base) {
                s.aborted = summarize(&entries, base, next);
            }
        }
        Ok(())
    }

    /// Feeds the batches in `from..to` to `states` (headers, and the record of each marker).
    async fn replay(
        &self,
        states: &mut ProducerStates,
        from: i64,
        to: i64,
    ) -> Result<(), StorageError> {
        let mut offset = from;
        while offset < to {
            let r = self.read(offset, 1 << 20, to).await?;
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
                    let control = if h.is_control() {
                        rest.get(..size).and_then(crate::txn::parse_marker)
                    } else {
                        None
                    };
                    states.record(&h, h.base_offset, h.max_timestamp, control);
                    next = next.max(h.last_offset() + 1);
                    pos += size;
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
        Ok(())
    }

    /// Removes the `.txnindex` beside the active segment, once the snapshot holds its entries
    /// (see mod.rs).
    pub(super) async fn remove_active_txn_index(&self) {
        let path = self
            .state
            .borrow()
            .segments
            .last()
            .map(Segment::txn_index_path);
        if let Some(p) = path {
            remove_file_if_there(&p, "index file").await;
        }
    }
}

/// `<base>.<end>.swap` (20 digits each): a committed cleaner swap.
fn parse_swap_name(name: &str) -> Option<(i64, i64)> {
    let (base, end) = name.strip_suffix(".swap")?.split_once('.')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(base) && digits(end)).then_some((base.parse().ok()?, end.parse().ok()?))
}

/// What producer state needs of one batch recovery scanned (one with a producer id).
pub(super) struct ProducerBatch {
    /// Byte position in its segment file.
    position: u64,
    header: BatchHeader,
    /// A control batch's marker.
    control: Option<(ControlType, i32)>,
}

/// The batches of the scanned end of the log (offsets `from` up to the log end, every batch
/// with a producer id, in offset order): producer state is fed from them instead of reading
/// that part of the log a second time.
pub(super) struct ScannedTail {
    from: i64,
    batches: Vec<ProducerBatch>,
}

/// What recovery found of the segments' `.txnindex` files (see mod.rs).
#[derive(Default)]
pub(super) struct RecoveredTxn {
    /// The entries of a file beside the active segment.
    pub(super) active: Option<Vec<AbortedTxn>>,
    /// Sealed segments whose file is damaged.
    pub(super) damaged: Vec<i64>,
}

pub(super) struct Recovered {
    pub(super) segments: Vec<Segment>,
    pub(super) txn: RecoveredTxn,
    pub(super) epochs: Vec<(i32, i64)>,
    pub(super) log_start_offset: i64,
    pub(super) clean_point: i64,
    pub(super) io_mode: IoMode,
    /// The checkpoint and epoch files as read (seed of `Log::on_disk`).
    pub(super) files: Vec<(&'static str, Vec<u8>)>,
    /// The scanned end of the log, when the scans reached the log end.
    pub(super) scanned: Option<ScannedTail>,
    /// The boot checkpoint's producer snapshot, when its index replaced a scan.
    pub(super) boot_producers: Option<Vec<u8>>,
    /// Bytes of segment files the scans read.
    pub(super) scanned_bytes: u64,
    /// The active segment was left unsynced (a boot checkpoint with `--flush never`).
    pub(super) active_unsynced: bool,
    /// The recovery point of the checkpoint file, -1 without one.
    pub(super) recovery_point: i64,
}

/// Opens and repairs the segments of `dir` (recovery: see this module's documentation).
pub(super) async fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered, StorageError> {
    let mut bases = Vec::new();
    let mut txn_indexes = HashSet::new();
    // Listing a directory has no io_uring operation: on a blocking thread, not the reactor.
    let listed = dir.to_owned();
    let names = crate::runtime::spawn_blocking(move || -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&listed)? {
            names.extend(entry?.file_name().to_str().map(str::to_owned));
        }
        Ok(names)
    })
    .await
    .ok_or_else(|| io::Error::other("directory listing task panicked"))??;
    for name in &names {
        if name.ends_with(".tmp") || name.ends_with(".cleaned") {
            let _ = crate::runtime::remove_file(dir.join(name)).await;
        } else if let Some(base) = parse_log_name(name) {
            bases.push(base);
        } else if let Some(stem) = name.strip_suffix(".txnindex") {
            txn_indexes.extend(parse_log_name(&format!("{stem}.log")));
        }
    }
    bases.sort_unstable();
    // A cleaner swap that was committed (see compact.rs) but not finished: the segments it
    // replaces go, then it takes its place.
    for name in &names {
        let Some((base, end)) = parse_swap_name(name) else {
            continue;
        };
        for &old in bases.iter().filter(|&&b| b >= base && b < end) {
            let path = dir.join(file_name(old, "log"));
            tracing::warn!(path = %path.display(), "finishing an interrupted cleaner swap");
            let doomed = Segment::new(old, path.clone(), open_read(&path).await?);
            remove_replaced_segment_files(vec![doomed], Some(base)).await;
        }
        bases.retain(|&b| b < base || b >= end);
        txn_indexes.retain(|&b| b <= base || b >= end);
        crate::runtime::rename(dir.join(name), dir.join(file_name(base, "log"))).await?;
        crate::checkpoint::sync_dir(dir).await?;
        bases.push(base);
        bases.sort_unstable();
    }
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
    let clean_bytes = read_optional(&dir.join(CLEANER_FILE)).await?;
    let clean_point = clean_bytes
        .as_deref()
        .and_then(crate::checkpoint::decode_clean_point)
        .unwrap_or(0);
    // A log with a clean point is or was compacted: gaps in its offsets are legal.
    let gaps_ok = config.cleanup_compact || clean_bytes.is_some();
    files.extend(clean_bytes.map(|b| (CLEANER_FILE, b)));
    // Written in this boot or ignored (see boot.rs).
    let mut boot = match boot_id() {
        Some(id) if names.iter().any(|n| n == BOOT_FILE) => read_optional(&dir.join(BOOT_FILE))
            .await?
            .and_then(|b| decode_boot(&b, id)),
        _ => None,
    };
    let mut boot_producers = None;
    let mut scanned_bytes = 0u64;
    let mut active_unsynced = false;
    let batch_max = (config.max_message_bytes as u64).max(RECOVERY_BATCH_BYTES_MIN);
    let interval = config.index_interval_bytes;

    let mut segments: Vec<Segment> = Vec::new();
    let mut txn = RecoveredTxn::default();
    let mut last_txn: Option<Vec<AbortedTxn>> = None;
    let mut drop_rest = false;
    // Whether the last segment's index files must be (re)written: missing, stale or
    // truncated. After a clean close they match the file and opening writes nothing.
    let mut last_index_stale = true;
    let mut scanned: Option<ScannedTail> = None;
    for (i, &base) in bases.iter().enumerate() {
        let path = dir.join(file_name(base, "log"));
        if drop_rest || segments.last().is_some_and(|s| s.next_offset > base) {
            tracing::warn!(path = %path.display(), "removing segment after a damaged one");
            let doomed = Segment::new(base, path.clone(), open_read(&path).await?);
            remove_segment_files(vec![doomed]).await;
            drop_rest = true;
            continue;
        }
        let read_file = open_read(&path).await?;
        let file_len = read_file.metadata().await?.len();
        let mut seg = Segment::new(base, path, read_file);
        let trusted = bases.get(i + 1).is_some_and(|&next| next <= recovery_point);
        let (ip, tp) = seg.index_paths();
        let index = match (read_optional(&ip).await?, read_optional(&tp).await?) {
            (Some(a), Some(b)) => SegmentIndex::decode(base, &a, &b),
            _ => None,
        }
        .filter(|(_, s)| s.log_size <= file_len);
        // The active segment's index as of the boot checkpoint, if it covers more.
        let last = i + 1 == bases.len();
        let from_boot = last
            .then(|| boot.take())
            .flatten()
            .and_then(|b| {
                let decoded = SegmentIndex::decode(base, &b.index, &b.time_index);
                decoded.map(|d| (d, b.producers))
            })
            .filter(|((_, s), _)| {
                s.log_size <= file_len
                    && index.as_ref().is_none_or(|(_, d)| s.log_size > d.log_size)
            });
        let boot_used = from_boot.is_some();
        // With `--flush never` nothing was durable past the recovery point and the durable
        // index before the crash, and nothing needs to be now: after a process crash in the
        // same boot the segment is left as the kernel has it, its durable index and the
        // recovery point stay where they were, and its next roll or close syncs it (see
        // boot.rs). Other policies sync it here as after any crash.
        let unsynced = boot_used && config.flush == FlushPolicy::Never;
        active_unsynced = unsynced;
        let index = match from_boot {
            Some((ix, producers)) => {
                boot_producers = Some(producers);
                Some(ix)
            }
            None => index,
        };
        let mut write_index = true;
        let mut scan_start = 0u64;
        if let Some((ix, s)) = index {
            seg.index = ix;
            seg.size = s.log_size;
            seg.next_offset = s.next_offset;
            seg.max_timestamp = s.max_timestamp;
            seg.max_timestamp_offset = s.max_timestamp_offset;
            scan_start = s.log_size;
            // Only the durable index files spare rewriting them.
            write_index = boot_used;
        }
        if trusted && scan_start == file_len {
            scanned = None;
        } else {
            let prev = (scan_start > 0).then(|| seg.next_offset - 1);
            let scanned_from = seg.next_offset;
            let mut seen = Vec::new();
            let mut overflow = false;
            let scan = scan_file(
                &seg.read_file,
                scan_start,
                file_len,
                prev,
                batch_max,
                |position, bytes| {
                    let Ok(header) = BatchHeader::parse(bytes) else {
                        return;
                    };
                    // What `ProducerStates::record` ignores (as `Log::replay` feeds it).
                    if header.producer_id < 0 && !header.is_control() {
                        return;
                    }
                    if seen.len() >= SCANNED_PRODUCER_BATCHES_MAX {
                        overflow = true;
                    } else {
                        let control = header
                            .is_control()
                            .then(|| crate::txn::parse_marker(bytes))
                            .flatten();
                        seen.push(ProducerBatch {
                            position,
                            header,
                            control,
                        });
                    }
                },
            )
            .await?;
            scanned_bytes += scan.read;
            let mut stop_at = scan.valid_end;
            let mut clean = matches!(scan.stop, ScanStop::End | ScanStop::Zeros);
            for b in &scan.batches {
                // Offsets increase (the scan checks it). Gaps are the cleaner's (or a
                // leader's cleaner's) doing in a compacted log, and damage anywhere else: a
                // base offset is not covered by the CRC.
                let gap = b.base_offset > seg.next_offset && !gaps_ok;
                if b.base_offset < seg.next_offset || gap {
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
            seen.retain(|b| b.position < stop_at);
            match scanned.as_mut() {
                _ if overflow => scanned = None,
                Some(tail) if scan_start == 0 => tail.batches.append(&mut seen),
                _ => {
                    scanned = Some(ScannedTail {
                        from: scanned_from,
                        batches: seen,
                    })
                }
            }
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
                if !unsynced {
                    wf.sync_all().await?;
                }
            } else if !unsynced && (stop_at > scan_start || boot_used) {
                // What the scan accepted (or the boot checkpoint covered) is trusted from now
                // on (the checkpoint written after opening puts the recovery point at the log
                // end), so it must be on the disk even if it was never synced before the
                // crash; a cut tail is synced above.
                seg.read_file.sync_data().await?;
            }
        }
        if write_index && i + 1 < bases.len() && !drop_rest {
            let (a, b) = seg.index.encode(&seg.summary());
            write_index_pair(dir, &ip, &tp, a, b).await?;
        }
        last_index_stale = write_index && !unsynced;
        // Read for every segment, as it may turn out the active one (a later one removed).
        last_txn = None;
        if txn_indexes.contains(&base) {
            let path = seg.txn_index_path();
            match read_optional(&path).await?.as_deref().map(txnindex::decode) {
                Some(Some(entries)) => {
                    seg.aborted = txnindex::summarize(&entries, base, seg.next_offset);
                    last_txn = Some(entries);
                }
                Some(None) => {
                    tracing::warn!(path = %path.display(), "damaged transaction index");
                    txn.damaged.push(base);
                }
                None => {}
            }
        }
        segments.push(seg);
    }
    if let Some(active) = segments.last_mut() {
        txn.damaged.retain(|&b| b != active.base_offset);
        active.aborted = None;
        txn.active = last_txn;
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
        txn,
        epochs,
        log_start_offset,
        clean_point: clean_point.min(leo),
        io_mode,
        files,
        scanned,
        boot_producers,
        scanned_bytes,
        active_unsynced,
        recovery_point,
    })
}
