//! The boot checkpoint (format and why it is safe: checkpoint.rs): while the log is written,
//! every `boot_checkpoint_interval_ms` (a timer armed by a write), the active segment's index
//! and the producer state overwrite `boot.checkpoint` in place without an fsync (why in place:
//! checkpoint.rs), so that recovery after a
//! process crash in the same boot scans only what was written after it. A truncation, the one change that
//! rewrites bytes the file may cover, removes it first and no new one is written until it is
//! done; a roll makes it name a sealed segment, which recovery ignores.

use std::cell::Cell;

use super::Log;
use crate::checkpoint::{boot_id, encode_boot, write_in_place, BootCheckpoint, BOOT_FILE};

/// A boot checkpoint is written only once the log wrote this many times its last size since
/// the previous one: the index it carries grows with the active segment (about 0.5 % of it),
/// so this bounds what the checkpoints add to the disk's writes to 1/16 of the log's.
const DATA_PER_CHECKPOINT_BYTE: u64 = 16;

/// Per-log state of the boot checkpoint writer.
#[derive(Default)]
pub(super) struct BootCheckpoints {
    running: Cell<bool>,
    /// Set while a truncation runs (see `block_boot_checkpoints`).
    blocked: Cell<bool>,
    last_ms: Cell<i64>,
    /// The log's `bytes_written` when the last one was written, and its size.
    bytes_at: Cell<u64>,
    size: Cell<u64>,
}

/// Lets boot checkpoints be written again when dropped.
pub(super) struct BootBlock<'a>(&'a Log);

impl Drop for BootBlock<'_> {
    fn drop(&mut self) {
        self.0.boot.blocked.set(false);
    }
}

impl Log {
    /// Called by the writer after each write: unless one is already coming, schedules a boot
    /// checkpoint for `boot_checkpoint_interval_ms` after the last one (at once if that has
    /// passed). It covers what is written by the time it runs, so at a crash at most the
    /// last interval's writes (and one write in flight) lie past it, however large and rare
    /// the writes are.
    pub(super) fn maybe_write_boot_checkpoint(&self) {
        let b = &self.boot;
        let interval = self.config.borrow().boot_checkpoint_interval_ms;
        let written = self.stats.bytes_written.get();
        let due = interval > 0
            && !b.running.get()
            && !b.blocked.get()
            && written.saturating_sub(b.bytes_at.get())
                >= b.size.get().saturating_mul(DATA_PER_CHECKPOINT_BYTE)
            && boot_id().is_some();
        if !due {
            return;
        }
        b.running.set(true);
        let wait_ms = (b.last_ms.get() + interval as i64).saturating_sub(sluice_base::now_ms());
        let weak = self.self_weak.borrow().clone();
        crate::runtime::spawn(async move {
            if wait_ms > 0 {
                crate::runtime::sleep(std::time::Duration::from_millis(wait_ms as u64)).await;
            }
            if let Some(log) = weak.upgrade() {
                log.write_boot_checkpoint().await;
                log.boot.running.set(false);
            }
        })
        .detach();
    }

    async fn write_boot_checkpoint(&self) {
        let _turn = self.small_turn().await;
        if self.closed.get() || self.deleted.get() || self.boot.blocked.get() {
            return;
        }
        let Some(boot) = boot_id() else {
            return;
        };
        // What the writer has published: the segment's size and index cover completed
        // writes only, and so does the producer state cut at the written offset (appended
        // batches not yet written may still be dropped by a failed write, their offsets reused).
        let written = self.written.get();
        let content = {
            let st = self.state.borrow();
            st.segments.last().filter(|s| s.size > 0).map(|s| {
                let (index, time_index) = s.index.encode(&s.summary());
                let mut producers = st.producers.clone();
                producers.truncate_from(written);
                BootCheckpoint {
                    index,
                    time_index,
                    producers: producers.encode(written),
                }
            })
        };
        let Some(content) = content else {
            return;
        };
        let bytes_at = self.stats.bytes_written.get();
        let bytes = encode_boot(boot, &content);
        let size = bytes.len() as u64;
        match write_in_place(&self.dir, BOOT_FILE, bytes).await {
            Ok(()) => {
                let b = &self.boot;
                b.last_ms.set(sluice_base::now_ms());
                b.bytes_at.set(bytes_at);
                b.size.set(size);
            }
            // Only the next crash recovery's scan grows; the next write tries again.
            Err(e) => tracing::debug!(dir = %self.dir.display(), error = %e,
                "failed to write the boot checkpoint"),
        }
    }

    /// Removes the boot checkpoint and writes none until the returned guard is dropped: for a
    /// change to bytes the file may cover.
    pub(super) async fn block_boot_checkpoints(&self) -> BootBlock<'_> {
        self.boot.blocked.set(true);
        let block = BootBlock(self);
        // A checkpoint being written finishes first (it holds the turn), then goes.
        let _turn = self.small_turn().await;
        super::remove_file_if_there(&self.dir.join(BOOT_FILE), "boot checkpoint").await;
        block
    }
}
