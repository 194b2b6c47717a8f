//! Record-level views of stored batches, for the few places that need more than batch headers
//! (ListOffsets by timestamp answers with a record, not a batch). Decoding uses kafka-protocol,
//! which decompresses as needed; stored batches passed a CRC check but their records were never
//! parsed, so every failure (or decoder panic) here is a `None`, never a crash.

use bytes::Bytes;
use kafka_protocol::records::Record;
use sluice_net::records::decode_records;

/// Largest records section of one batch that is decompressed (by the cleaner, the key check
/// of compacted topics); the cleaner keeps a larger batch whole.
pub const BATCH_BYTES_MAX: usize = 64 << 20;

/// Kafka's codecs (`sluice_net::records::Codecs`) for storage's record-level readers.
pub struct KafkaCodecs;

impl sluice_storage::records::Codecs for KafkaCodecs {
    fn decompress(&self, codec: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        sluice_net::records::Codecs::decompress(codec, data, limit)
    }
    fn compress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        sluice_net::records::Codecs::compress(codec, data)
    }
}

/// Checks that every record of a produce request's batches has a key (a compacted topic
/// refuses keyless records: Kafka's INVALID_RECORD). An error names the first problem;
/// batches whose records cannot be read are refused too.
pub fn check_all_keyed(records: &[u8]) -> Result<(), String> {
    use sluice_storage::records::{parse_records, records_bytes};
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        let h = sluice_storage::BatchHeader::parse(rest).map_err(|e| e.to_string())?;
        if h.total_size() > rest.len() {
            return Err("truncated batch".to_owned());
        }
        let body = records_bytes(rest, &h, &KafkaCodecs, BATCH_BYTES_MAX)?;
        let parsed = parse_records(&body, h.records_count).map_err(|e| e.to_string())?;
        if let Some(i) = parsed.iter().position(|r| r.key.is_none()) {
            return Err(format!(
                "compacted topic cannot accept a record without a key (offset delta {})",
                parsed[i].offset_delta
            ));
        }
        pos += h.total_size();
    }
    Ok(())
}

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

    const ALL_CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Zstd,
        Compression::Lz4,
        Compression::Snappy,
    ];

    #[test]
    fn finds_records_by_time_in_plain_and_compressed_batches() {
        for c in ALL_CODECS {
            assert_eq!(first_at_or_after(batch(c), 250), Some((10, 500)), "{c:?}");
            assert_eq!(first_at_or_after(batch(c), 600), Some((13, 900)));
            assert_eq!(first_at_or_after(batch(c), 901), None);
            assert_eq!(max_timestamp_record(batch(c)), Some((13, 900)));
        }
    }

    #[test]
    fn keyless_records_are_found_in_plain_and_compressed_batches() {
        for c in ALL_CODECS {
            let mut keyed = BatchBuilder::new().compression(c);
            let mut mixed = BatchBuilder::new().compression(c);
            for i in 0..4u8 {
                keyed.push(
                    Some(Bytes::from(vec![i])),
                    Some(Bytes::from_static(b"v")),
                    1,
                    &[],
                );
                let key = (i != 2).then(|| Bytes::from(vec![i]));
                mixed.push(key, None, 1, &[]);
            }
            let (keyed, mixed) = (keyed.build().unwrap(), mixed.build().unwrap());
            assert_eq!(check_all_keyed(&keyed), Ok(()), "{c:?}");
            let err = check_all_keyed(&mixed).unwrap_err();
            assert!(err.contains("offset delta 2"), "{err}");
            let mut two = keyed.to_vec();
            two.extend_from_slice(&mixed);
            assert!(check_all_keyed(&two).is_err());
            assert!(check_all_keyed(&keyed[..keyed.len() - 1]).is_err());
        }
        let mut rng = sluice_base::Rng::new(3);
        let b = batch(Compression::Zstd).to_vec();
        for _ in 0..2000 {
            let _ = check_all_keyed(&rng.mutate(&b, 3));
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
