//! `sluice-storage`: Kafka-layout partition logs on io_uring (compio).
//!
//! Owns everything under a partition directory: segment files (`<base>.log` holding wire
//! RecordBatch v2 bytes unchanged), sparse indexes, checkpoints. It does not know about the
//! network, Kafka requests or other partitions; the broker maps [`StorageError`] to Kafka error
//! codes. See `docs/architecture.md` (storage on disk) and the module docs for on-disk layouts:
//! [`batch`] (RecordBatch header), [`scan`] (recovery scanner), `index`, `checkpoint`, `log`.
//! [`Reader`] is the one bounds-checked big-endian reader for bytes from outside.

mod aligned;
pub mod batch;
mod checkpoint;
mod config;
mod error;
mod index;
mod log;
mod notify;
pub mod producer;
pub mod records;
pub mod runtime;
pub mod scan;
mod segment;
pub mod stats;
pub mod test_util;
pub mod txn;
pub mod txnindex;

pub use aligned::{keep_large_buffers_in_heap, release_free_memory, BLOCK_BYTES};
pub use batch::{validate_batches, validate_for_append, BatchError, BatchHeader};
pub use config::{FlushPolicy, IoMode, LogConfig, TimestampType};
pub use error::StorageError;
pub use log::{
    cache_usage, end_offset_for_epoch, readahead_usage, set_cache_budget, AppendInfo, CleanConfig,
    CleanStats, Cleanable, Log, ReadResult, Throttle, READAHEAD_SHARD_BYTES,
};
pub use notify::{Notified, Notify};
pub use producer::ProducerError;
pub use scan::{scan_segment, ScanResult, ScanStop, ScannedBatch};
pub use sluice_base::Reader;
pub use txn::{AbortedTxn, ControlType};
