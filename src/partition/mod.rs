//! Partitions: a partition's log and its state as a replica.
//!
//! The high watermark lives here, not in storage: it is the end of what is committed, which
//! with replicas is the smallest log end over the in-sync replicas. With one replica (today)
//! it is the log's written offset. Consumers read only below it ([`Partition::read`]);
//! produce acknowledgements wait on it ([`Partition::wait_acks`]); fetch `min_bytes` waits for it
//! to move ([`Partition::wait_for_data`]).
//!
//! Must not touch: other partitions, the mesh, metadata (a partition is given its registration).

pub mod dir;
pub mod records;

use std::rc::Rc;

use bytes::Bytes;
use sluice_storage::{AppendInfo, Log, ReadResult, StorageError};

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub topic_id: [u8; 16],
    pub index: i32,
    pub log: Rc<Log>,
    /// The leader epoch of the partition's registration, kept current by the shard's
    /// metadata applier (every leader change bumps it).
    pub leader_epoch: std::cell::Cell<i32>,
}

/// A partition's name: (topic, index).
pub type PartitionKey = (String, i32);

impl Partition {
    /// First offset not yet committed; consumers see only offsets below it.
    pub fn high_watermark(&self) -> i64 {
        self.log.written_offset()
    }

    /// Committed batches from the one containing `offset`, up to `max_bytes` (at least one).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        self.log
            .read(offset, max_bytes, self.high_watermark())
            .await
    }

    /// Resolves once the high watermark is past `offset` (or the log closed). Cancel-safe.
    pub async fn wait_for_data(&self, offset: i64) {
        self.log.wait_written_beyond(offset).await
    }

    /// Appends a producer's batches as this partition's leader.
    pub fn append(&self, records: Bytes, now_ms: i64) -> Result<AppendInfo, StorageError> {
        self.log.append(records, self.leader_epoch.get(), now_ms)
    }

    /// Resolves when the append `info` satisfies `acks`: 0 at once, 1 once written, -1 (all)
    /// once committed and durable per the flush policy.
    pub async fn wait_acks(&self, info: &AppendInfo, acks: i16) -> Result<(), StorageError> {
        match acks {
            0 => Ok(()),
            1 => self.log.wait_append_written(info).await,
            _ => self.log.wait_append_durable(info).await,
        }
    }
}
