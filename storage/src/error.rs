//! The storage crate's error type. Every failure crossing the crate boundary is a [`StorageError`];
//! the broker maps them to Kafka error codes in one place.

use thiserror::Error;

pub use crate::batch::BatchError;

/// Errors returned by [`crate::Log`].
#[derive(Debug, Error)]
pub enum StorageError {
    /// The produce record set is malformed (→ CORRUPT_MESSAGE / INVALID_RECORD).
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),
    /// One batch is larger than `max_message_bytes` (→ MESSAGE_TOO_LARGE).
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    /// Requested offset is outside `[log_start, log_end]` (→ OFFSET_OUT_OF_RANGE).
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// An I/O error from the file system (→ KAFKA_STORAGE_ERROR). Use [`StorageError::is_no_space`]
    /// to recognise ENOSPC.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// On-disk data we own (checkpoint, index) or a segment below the recovery point is damaged
    /// beyond what recovery repairs by itself.
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    /// The log was closed or deleted.
    #[error("log is closed")]
    Closed,
    /// A replicated append does not start at the log end offset, or its batches leave a gap
    /// (the follower must truncate or fetch from its log end).
    #[error("replicated batches start at {got}, the log continues at {expected}")]
    NotContiguous { expected: i64, got: i64 },
    /// An idempotent producer's batch is out of sequence, fenced or unknown.
    #[error(transparent)]
    Producer(#[from] crate::producer::ProducerError),
}

impl StorageError {
    /// True for "no space left on device" (ENOSPC) or "disk quota exceeded" (EDQUOT).
    pub fn is_no_space(&self) -> bool {
        match self {
            StorageError::Io(e) => {
                matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
                    || e.kind() == std::io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }

    /// True for errors caused by the underlying storage (as opposed to the request).
    pub fn is_io(&self) -> bool {
        matches!(self, StorageError::Io(_) | StorageError::Corrupt(_))
    }

    /// A copy suitable for handing to several waiters (io::Error is not Clone).
    pub fn duplicate(&self) -> StorageError {
        match self {
            StorageError::Batch(e) => StorageError::Batch(e.clone()),
            StorageError::MessageTooLarge { size, max } => StorageError::MessageTooLarge {
                size: *size,
                max: *max,
            },
            StorageError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            } => StorageError::OffsetOutOfRange {
                offset: *offset,
                log_start: *log_start,
                log_end: *log_end,
            },
            StorageError::Io(e) => StorageError::Io(clone_io(e)),
            StorageError::Corrupt(s) => StorageError::Corrupt(s.clone()),
            StorageError::Closed => StorageError::Closed,
            StorageError::NotContiguous { expected, got } => StorageError::NotContiguous {
                expected: *expected,
                got: *got,
            },
            StorageError::Producer(e) => StorageError::Producer(e.clone()),
        }
    }
}

pub(crate) fn clone_io(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}
