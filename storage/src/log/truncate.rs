//! Truncation of the log end (a follower diverging from its leader, or a test).

use super::read::read_txn_index;
use super::{remove_file_if_there, remove_index_files, remove_segment_files, Log};
use crate::error::StorageError;
use crate::segment::{load_tail, open_write, scan_file, Segment};
use crate::txnindex::in_segment;

impl Log {
    /// Truncates so that `log_end_offset()` becomes `offset` (rounded down to a batch boundary
    /// when `offset` falls inside a batch), dropping leader-epoch entries that start at or past
    /// it. Only those entries go if `offset >= log_end_offset()`.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        if offset >= self.leo.get() {
            // Nothing to cut; but an epoch begun at `offset` that wrote nothing goes, as in
            // Kafka's `truncateTo` (kept, a follower would name it as its last fetched epoch
            // and its new leader, which never had it, would report the same divergence for
            // ever).
            let dropped = {
                let mut st = self.state.borrow_mut();
                let before = st.epochs.len();
                st.epochs.retain(|&(_, start)| start < offset);
                st.epochs.len() != before
            };
            if dropped {
                self.write_epochs().await?;
            }
            return Ok(());
        }
        if offset < self.log_start.get() {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start.get(),
                log_end: self.leo.get(),
            });
        }
        let _s = self.segments_lock().await;
        self.drain_pending().await;
        let _g = self.lock().await;
        // The bytes cut may be rewritten with others: a boot checkpoint covering them goes.
        let _boot = self.block_boot_checkpoints().await;
        let mode = self.io_mode.get();
        // Drop later segments.
        let (doomed, seg_path, read_file, lookup_pos, size, base, txn_path, had_txn_index) = {
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
                s.txn_index_path(),
                s.aborted.is_some(),
            )
        };
        remove_segment_files(doomed).await;
        // A sealed segment that becomes active again: its aborted transactions go back to the
        // producer state, and its index once the snapshot holds them (see mod.rs).
        let reopened = if had_txn_index {
            read_txn_index(&txn_path).await?
        } else {
            Vec::new()
        };
        let scan = scan_file(&read_file, lookup_pos, size, None, u64::MAX, |_, _| {}).await?;
        let cut = scan
            .batches
            .iter()
            .find(|b| b.last_offset >= offset)
            .map_or(scan.valid_end, |b| b.position);
        let (write_file, _) = match self.active_write_file() {
            Some(f) => (f, mode),
            None => open_write(&seg_path, mode).await?,
        };
        self.cut_active_file(&write_file, cut).await?;
        let rebuilt = scan_file(&read_file, 0, cut, None, u64::MAX, |_, _| {}).await?;
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
            st.epochs.retain(|&(_, start)| start < new_leo);
            st.producers.truncate_from(new_leo);
            st.producers
                .merge_aborted(in_segment(&reopened, base, new_leo).copied());
        }
        self.txn_cache.borrow_mut().clear();
        self.leo.set(new_leo);
        self.written.set(new_leo);
        self.durable.set(self.durable.get().min(new_leo));
        self.recovery_point
            .set(self.recovery_point.get().min(new_leo));
        self.refresh_max_timestamp();
        self.write_checkpoint().await?;
        remove_file_if_there(&txn_path, "index file").await;
        self.write_epochs().await?;
        if self.clean_point.get() > new_leo {
            self.clean_point.set(new_leo);
            self.write_clean_point().await?;
        }
        self.progress.notify_all();
        Ok(())
    }
}
