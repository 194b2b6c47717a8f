//! The one place where internal errors become Kafka error codes.

use kafka_protocol::ResponseError;
use sluice_storage::StorageError;

/// Maps a storage error to the Kafka error a client expects.
pub fn storage_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::Batch(_) => ResponseError::CorruptMessage,
        StorageError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        _ => ResponseError::KafkaStorageError,
    }
}

/// Kafka's "no error".
pub const NONE: i16 = 0;
