//! Segment lifecycle: rolling the active segment, retention by time and size, and DeleteRecords
//! (moving the log start offset).

use std::io;

use super::writer::Pending;
use super::{remove_segment_files, write_index_pair, write_txn_index, Log};
use crate::error::{clone_io, StorageError};
use crate::segment::{file_name, open_read, open_write, Segment, PREALLOCATE_MIN_BYTES};

impl Log {
    /// DeleteRecords: moves the log start offset up to `offset` (-1 = the written offset; never
    /// past the written offset). Returns the new log start offset. The caller resolves Kafka's
    /// -1 (= high watermark) and bounds `offset` by its high watermark itself.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let written = self.written.get();
        let target = if offset == -1 {
            written
        } else {
            offset.min(written)
        };
        if target > self.log_start.get() {
            let _s = self.segments_lock().await;
            let _g = self.lock().await;
            self.log_start.set(target.max(self.log_start.get()));
            self.state
                .borrow_mut()
                .producers
                .prune_aborted(self.log_start.get());
            self.write_checkpoint().await?;
            self.delete_segments_below_log_start().await?;
        }
        Ok(self.log_start.get())
    }

    /// Deletes sealed segments beyond retention.ms / retention.bytes. Returns how many.
    /// Only with `cleanup.policy` including `delete`.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        if !self.config.borrow().cleanup_delete {
            return Ok(0);
        }
        let _s = self.segments_lock().await;
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
            self.state.borrow_mut().producers.prune_aborted(first_base);
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

    /// Seals the active segment (fsync, exact length, index files) and starts a new one at the
    /// current end. Writer-only, lock held, nothing queued before the roll marker.
    pub(super) async fn roll(&self) -> io::Result<()> {
        let (file, read_file, size, next, ix, tp) = {
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
                s.read_file.clone(),
                s.size,
                s.next_offset,
                (s.index_paths(), a),
                b,
            )
        };
        if let Some(f) = &file {
            f.sync_data().await?;
            self.cut_active_file(f, size).await?;
        } else if self.active_unsynced.get() {
            // Recovery left it as a process crash did and nothing was written since.
            read_file.sync_data().await?;
        }
        let to_io = |e| match e {
            StorageError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        };
        let ((ip, tpath), a) = ix;
        write_index_pair(&self.dir, &ip, &tpath, a, tp)
            .await
            .map_err(to_io)?;
        // The sealed segment's aborted transactions go to its index before the new segment
        // exists (see mod.rs); appends meanwhile only add markers at or past `next`.
        let (txn_path, sealed) = {
            let st = self.state.borrow();
            let path = st.segments.last().map(Segment::txn_index_path);
            (path, st.producers.aborted_below(next).to_vec())
        };
        if let Some(p) = &txn_path {
            write_txn_index(&self.dir, p, &sealed)
                .await
                .map_err(to_io)?;
        }
        let path = self.dir.join(file_name(next, "log"));
        let (wf, mode) = open_write(&path, self.io_mode.get()).await?;
        self.io_mode.set(mode);
        // A partition that has written enough to grow its window gets it at once in the new
        // segment; a new or idle one reserves nothing until it writes.
        let step = self.prealloc_step.get();
        let step = if step > PREALLOCATE_MIN_BYTES {
            let step = step.min(self.config.borrow().segment_bytes_effective());
            self.start_preallocation(&wf, 0, step);
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
                old.aborted = crate::txnindex::summarize(&sealed, old.base_offset, next);
            }
            st.segments.push(seg);
            st.producers.prune_aborted(next);
        }
        self.txn_cache.borrow_mut().clear();
        self.durable.set(self.durable.get().max(next));
        self.recovery_point.set(next);
        self.active_unsynced.set(false);
        if let Err(e) = self.write_checkpoint().await {
            tracing::warn!(error = %e, "failed to write checkpoint after roll");
        }
        Ok(())
    }
}
