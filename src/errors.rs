//! The one place where internal errors become Kafka error codes.

use kafka_protocol::ResponseError;
use sluice_storage::{ProducerError, StorageError};

/// Maps a storage error to the Kafka error a client expects.
pub fn storage_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::Batch(b) if b.is_invalid_record() => ResponseError::InvalidRecord,
        StorageError::Batch(_) => ResponseError::CorruptMessage,
        StorageError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Producer(ProducerError::OutOfOrderSequence { .. }) => {
            ResponseError::OutOfOrderSequenceNumber
        }
        StorageError::Producer(ProducerError::InvalidEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch
        }
        StorageError::Producer(ProducerError::UnknownProducerId { .. }) => {
            ResponseError::UnknownProducerId
        }
        StorageError::Producer(ProducerError::InvalidTxnState { .. }) => {
            ResponseError::InvalidTxnState
        }
        StorageError::Producer(ProducerError::TransactionalWithoutIdempotence { .. }) => {
            ResponseError::InvalidRecord
        }
        StorageError::Producer(ProducerError::CoordinatorFenced { .. }) => {
            ResponseError::TransactionCoordinatorFenced
        }
        _ => ResponseError::KafkaStorageError,
    }
}

/// Kafka's mapping of an `__consumer_offsets` append failure to what an OffsetCommit client
/// should see.
pub fn commit_error(e: &StorageError) -> ResponseError {
    match storage_error(e) {
        ResponseError::MessageTooLarge => ResponseError::InvalidCommitOffsetSize,
        ResponseError::KafkaStorageError => ResponseError::CoordinatorNotAvailable,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_errors_get_kafkas_codes() {
        let cases = [
            (
                ProducerError::InvalidTxnState {
                    producer_id: 1,
                    why: "x",
                },
                ResponseError::InvalidTxnState,
            ),
            (
                ProducerError::TransactionalWithoutIdempotence { producer_id: -1 },
                ResponseError::InvalidRecord,
            ),
            (
                ProducerError::CoordinatorFenced {
                    producer_id: 1,
                    current: 2,
                    got: 1,
                },
                ResponseError::TransactionCoordinatorFenced,
            ),
            (
                ProducerError::InvalidEpoch {
                    producer_id: 1,
                    current: 2,
                    got: 1,
                },
                ResponseError::InvalidProducerEpoch,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(storage_error(&StorageError::Producer(e)), want);
        }
    }
}
