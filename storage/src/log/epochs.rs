//! The leader-epoch cache: `(epoch, start offset)` entries in increasing epoch order, one per
//! epoch that wrote to this log; persisted as `leader-epoch-checkpoint` (see checkpoint.rs).
//! `append` adds an entry for a new epoch, recovery rebuilds entries from scanned batches,
//! truncation and write failures drop entries at or past the new log end.

use super::Log;
use crate::checkpoint::{encode_epochs, EPOCH_FILE};
use crate::error::StorageError;

/// OffsetForLeaderEpoch over a leader-epoch cache `epochs` of a log ending at `leo`: (largest
/// epoch ≤ `epoch`, start offset of the next epoch or `leo`); (-1, -1) when the log knows no
/// epoch ≤ `epoch` and none after it. Kafka's `LeaderEpochFileCache.endOffsetFor`; also the
/// replica simulation's (`src/partition/replica/sim.rs`).
pub fn end_offset_for_epoch(epochs: &[(i32, i64)], leo: i64, epoch: i32) -> (i32, i64) {
    if epoch < 0 || epochs.is_empty() {
        return (-1, -1);
    }
    if epochs.last().is_some_and(|&(l, _)| l == epoch) {
        return (epoch, leo);
    }
    let hi = epochs.partition_point(|&(x, _)| x <= epoch);
    let Some(&(_, higher_start)) = epochs.get(hi) else {
        return (-1, -1);
    };
    if hi == 0 {
        (epoch, higher_start)
    } else {
        (epochs[hi - 1].0, higher_start)
    }
}

impl Log {
    /// OffsetForLeaderEpoch: (largest epoch <= `epoch`, start offset of the next epoch or LEO).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        end_offset_for_epoch(&self.state.borrow().epochs, self.leo.get(), epoch)
    }

    /// A new leader epoch starts at the log end (this replica became its leader): Kafka's
    /// `makeLeader` records it before any append, so that a follower holding records of a
    /// later epoch this log never saw still finds where to truncate. Persisted before it
    /// returns. No-op unless `epoch` is newer than every epoch the log has.
    pub async fn begin_epoch(&self, epoch: i32) -> Result<(), StorageError> {
        {
            let mut st = self.state.borrow_mut();
            if st.epochs.last().is_some_and(|&(e, _)| e >= epoch) || epoch < 0 {
                return Ok(());
            }
            let leo = self.leo.get();
            // An epoch that wrote nothing ends where this one starts: Kafka drops it too.
            st.epochs.retain(|&(_, start)| start < leo);
            st.epochs.push((epoch, leo));
            st.epochs_dirty = true;
        }
        self.write_epochs().await
    }

    /// The newest leader epoch of the log's batches (or begun on it), -1 when none.
    pub fn latest_epoch(&self) -> i32 {
        self.state.borrow().epochs.last().map_or(-1, |&(e, _)| e)
    }

    pub(super) async fn write_epochs(&self) -> Result<(), StorageError> {
        if self.deleted.get() {
            return Ok(());
        }
        self.write_small(EPOCH_FILE, || {
            let mut st = self.state.borrow_mut();
            st.epochs_dirty = false;
            encode_epochs(&st.epochs)
        })
        .await?;
        Ok(())
    }
}
