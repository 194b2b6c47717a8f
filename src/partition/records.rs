//! Record-level views of stored batches, for the few places that need more than batch headers
//! (ListOffsets by timestamp answers with a record, not a batch). Decoding uses kafka-protocol,
//! which decompresses as needed; stored batches passed a CRC check but their records were never
//! parsed, so every failure (or decoder panic) here is a `None`, never a crash.

use bytes::Bytes;
use kafka_protocol::records::Record;
use sluice_net::records::decode_records;

fn decode(batches: Bytes) -> Option<Vec<Record>> {
    decode_records(batches).ok()
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
    use kafka_protocol::records::Compression;
    use sluice_net::records::BatchBuilder;

    fn batch(compression: Compression) -> Bytes {
        let mut b = BatchBuilder::new().compression(compression);
        for ts in [500, 100, 300, 900, 200] {
            b.push(None, Some(Bytes::from_static(b"v")), ts, &[]);
        }
        // Offsets 10..15, as if stored at 10.
        let mut bytes = b.build().unwrap().to_vec();
        bytes[..8].copy_from_slice(&10i64.to_be_bytes());
        Bytes::from(bytes)
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
