//! Record-level views of stored batches, for the few places that need more than batch headers
//! (ListOffsets by timestamp answers with a record, not a batch). Decoding uses kafka-protocol,
//! which decompresses as needed; stored batches passed a CRC check but their records were never
//! parsed, so every failure (or decoder panic) here is a `None`, never a crash.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

fn decode(mut batches: Bytes) -> Option<Vec<Record>> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        RecordBatchDecoder::decode(&mut batches)
    }));
    match r {
        Ok(Ok(set)) => Some(set.records),
        _ => None,
    }
}

/// The first record in `batch` with a timestamp at or after `timestamp_ms`: `(offset, timestamp)`.
pub fn first_at_or_after(batch: Bytes, timestamp_ms: i64) -> Option<(i64, i64)> {
    decode(batch)?
        .into_iter()
        .find(|r| r.timestamp >= timestamp_ms)
        .map(|r| (r.offset, r.timestamp))
}

/// The record with the largest timestamp in `batch` (the first of equals): `(offset, timestamp)`.
pub fn max_timestamp_record(batch: Bytes) -> Option<(i64, i64)> {
    decode(batch)?
        .into_iter()
        .fold(None, |best: Option<(i64, i64)>, r| match best {
            Some((_, ts)) if ts >= r.timestamp => best,
            _ => Some((r.offset, r.timestamp)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..5)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 10 + i,
                sequence: i as i32,
                timestamp: [500, 100, 300, 900, 200][i as usize],
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn finds_records_by_time_in_plain_and_compressed_batches() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Snappy,
        ] {
            assert_eq!(first_at_or_after(batch(c), 250), Some((10, 500)), "{c:?}");
            assert_eq!(first_at_or_after(batch(c), 600), Some((13, 900)));
            assert_eq!(first_at_or_after(batch(c), 901), None);
            assert_eq!(max_timestamp_record(batch(c)), Some((13, 900)));
        }
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(first_at_or_after(Bytes::from_static(&[0u8; 70]), 0), None);
        assert_eq!(max_timestamp_record(Bytes::new()), None);
        let mut b = batch(Compression::None).to_vec();
        let n = b.len();
        b.truncate(n - 3);
        assert_eq!(first_at_or_after(Bytes::from(b), 0), None);
    }
}
