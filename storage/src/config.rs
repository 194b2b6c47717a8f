//! Per-log configuration (the Kafka topic configs storage cares about) with Kafka's defaults.

use std::time::Duration;

/// How segment files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// O_DIRECT with 4 KiB-aligned writes. Falls back to `Buffered` (with a warning) where the
    /// file system rejects O_DIRECT (tmpfs).
    Direct,
    /// Page-cache writes.
    Buffered,
}

/// When written data is made durable with fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fdatasync after every (group) write, before `wait_durable` resolves.
    Always,
    /// fdatasync from a timer every interval.
    Interval(Duration),
    /// Only on roll and close (Kafka's default: rely on replication).
    Never,
}

/// message.timestamp.type
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Storage-relevant topic configuration.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// segment.bytes: roll when the active segment would exceed this (default 1 GiB).
    pub segment_bytes: u64,
    /// segment.ms: roll when the active segment is older than this (default 7 days).
    pub segment_ms: i64,
    /// index.interval.bytes: one sparse index entry per this many bytes (default 4096).
    pub index_interval_bytes: u32,
    /// max.message.bytes: largest accepted batch (default 1048588).
    pub max_message_bytes: u32,
    /// retention.ms (-1 = unlimited; default 7 days).
    pub retention_ms: i64,
    /// retention.bytes (-1 = unlimited).
    pub retention_bytes: i64,
    pub timestamp_type: TimestampType,
    pub io_mode: IoMode,
    pub flush: FlushPolicy,
    /// Bound on recently written batches kept in memory for reads (default 64 MiB; the
    /// thread's budget, `set_cache_budget`, bounds all logs of a thread together).
    pub tail_cache_bytes: usize,
    /// cleanup.policy: `delete` (retention deletes old segments) and/or `compact` (the cleaner
    /// keeps the last record of each key). Default `delete` only.
    pub cleanup_delete: bool,
    pub cleanup_compact: bool,
    /// min.cleanable.dirty.ratio (default 0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// min.compaction.lag.ms: records younger than this are not cleaned (default 0).
    pub min_compaction_lag_ms: i64,
    /// max.compaction.lag.ms: dirty records older than this are cleaned whatever the dirty
    /// ratio (default: unlimited).
    pub max_compaction_lag_ms: i64,
    /// delete.retention.ms: how long tombstones stay once cleaned (default 1 day).
    pub delete_retention_ms: i64,
    /// How often (at most) the active segment's index and producer state are written to the
    /// boot checkpoint, which a restart after a process crash in the same boot trusts instead
    /// of scanning (see checkpoint.rs); 0: never (default 1 s).
    pub boot_checkpoint_interval_ms: u64,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            timestamp_type: TimestampType::CreateTime,
            io_mode: IoMode::Direct,
            flush: FlushPolicy::Never,
            tail_cache_bytes: 64 << 20,
            cleanup_delete: true,
            cleanup_compact: false,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: DAY_MS,
            boot_checkpoint_interval_ms: 1000,
        }
    }
}

/// Segment positions are u32 in the index: segments may not exceed this.
pub(crate) const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

impl LogConfig {
    pub(crate) fn segment_bytes_effective(&self) -> u64 {
        self.segment_bytes.clamp(4096, SEGMENT_BYTES_MAX)
    }
}
