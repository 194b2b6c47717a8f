//! Record batches in and out of `kafka-protocol`'s record types: one builder for everything
//! that writes batches (the group coordinator's `__consumer_offsets` records, the admin CLI's
//! producer, tests) and one guarded decoder for everything that reads records from bytes a
//! client or a disk handed us.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Builds one RecordBatch v2.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    records: Vec<Record>,
    producer_id: i64,
    producer_epoch: i16,
    /// -1: not idempotent.
    base_sequence: i32,
    transactional: bool,
    control: bool,
    compression: Compression,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder {
            records: Vec::new(),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            compression: Compression::None,
        }
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder::default()
    }

    /// An idempotent producer's batch: its id, epoch and the first record's sequence.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        (self.producer_id, self.producer_epoch, self.base_sequence) = (id, epoch, base_sequence);
        self
    }

    /// Sets the transactional attribute bit.
    pub fn transactional(mut self, on: bool) -> Self {
        self.transactional = on;
        self
    }

    /// Sets the control attribute bit.
    pub fn control(mut self, on: bool) -> Self {
        self.control = on;
        self
    }

    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Appends a record.
    pub fn record(
        mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp_ms: i64,
        headers: &[(String, Option<Bytes>)],
    ) -> Self {
        self.push(key, value, timestamp_ms, headers);
        self
    }

    /// Appends a record (for loops).
    pub fn push(
        &mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp_ms: i64,
        headers: &[(String, Option<Bytes>)],
    ) {
        let headers: IndexMap<StrBytes, Option<Bytes>> = headers
            .iter()
            .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
            .collect();
        self.records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: timestamp_ms,
            key,
            value,
            headers,
        });
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The batch's bytes (offsets 0..n; the broker assigns the real ones).
    pub fn build(mut self) -> Result<Bytes, String> {
        for (i, r) in self.records.iter_mut().enumerate() {
            r.transactional = self.transactional;
            r.control = self.control;
            r.producer_id = self.producer_id;
            r.producer_epoch = self.producer_epoch;
            r.offset = i as i64;
            // The encoder keeps records in one batch while offset - sequence is constant; the
            // batch's base sequence is the first record's.
            r.sequence = self.base_sequence.wrapping_add(i as i32);
        }
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &self.records,
            &RecordEncodeOptions {
                version: 2,
                compression: self.compression,
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(buf.freeze())
    }
}

/// Decodes every record of the whole batches in `bytes` (decompressing as needed). Batches from
/// outside were CRC-checked at most, never parsed: any failure, decoder panic included, is an
/// error, never a crash.
pub fn decode_records(mut bytes: Bytes) -> Result<Vec<Record>, String> {
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        RecordBatchDecoder::decode_all(&mut bytes)
    }));
    match decoded {
        Ok(Ok(sets)) => Ok(sets.into_iter().flat_map(|s| s.records).collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the record decoder panicked".to_owned()),
    }
}

/// Kafka's compression codecs (1 gzip, 2 snappy, 3 lz4, 4 zstd) for the parts of the broker
/// that must read records (the log cleaner, the key check of compacted topics):
/// decompression bounded by a limit (a batch that inflates past it is an error, found before
/// the memory is spent), compression as the clients do it.
pub struct Codecs;

impl Codecs {
    fn read_bounded(mut r: impl std::io::Read, limit: usize) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let mut out = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        (&mut r)
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        if out.len() > limit {
            return Err(format!("records inflate past {limit} bytes"));
        }
        Ok(out)
    }

    /// Snappy as Kafka writes it (xerial framing: a 16-byte header, then length-prefixed
    /// raw blocks) or raw snappy, as the Java client reads both.
    fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        const MAGIC: &[u8] = b"\x82SNAPPY\x00";
        let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), String> {
            let n = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
            if out.len().saturating_add(n) > limit {
                return Err(format!("records inflate past {limit} bytes"));
            }
            let start = out.len();
            out.resize(start + n, 0);
            snap::raw::Decoder::new()
                .decompress(block, &mut out[start..])
                .map_err(|e| e.to_string())?;
            Ok(())
        };
        let mut out = Vec::new();
        if !data.starts_with(MAGIC) {
            raw(data, &mut out)?;
            return Ok(out);
        }
        let mut r = sluice_base::Reader::new(data.get(16..).ok_or("short snappy header")?);
        while !r.is_empty() {
            let len = r.u32().ok_or("truncated snappy block length")? as usize;
            let block = r.take(len).ok_or("truncated snappy block")?;
            raw(block, &mut out)?;
        }
        Ok(out)
    }
}

impl Codecs {
    /// Decompresses one batch's records bytes, at most `limit` bytes of output.
    pub fn decompress(codec: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        let guarded = catch_unwind(AssertUnwindSafe(|| match codec {
            1 => Self::read_bounded(flate2::read::MultiGzDecoder::new(data), limit),
            2 => Self::snappy(data, limit),
            3 => Self::read_bounded(lz4::Decoder::new(data).map_err(|e| e.to_string())?, limit),
            4 => Self::read_bounded(
                zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?,
                limit,
            ),
            c => Err(format!("unknown compression codec {c}")),
        }));
        guarded.unwrap_or_else(|_| Err("a decompressor panicked".to_owned()))
    }

    /// Compresses records bytes with Kafka's framing for `codec`.
    pub fn compress(codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
        let mut out = BytesMut::new();
        let fill = |b: &mut BytesMut| -> anyhow::Result<()> {
            b.extend_from_slice(data);
            Ok(())
        };
        let done = match codec {
            1 => Gzip::compress(&mut out, fill),
            2 => Snappy::compress(&mut out, fill),
            3 => Lz4::compress(&mut out, fill),
            4 => Zstd::compress(&mut out, fill),
            c => return Err(format!("unknown compression codec {c}")),
        };
        done.map_err(|e| e.to_string())?;
        Ok(out.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_round_trip_and_bound_what_they_inflate() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let zeros = vec![0u8; 4 << 20];
        for codec in 1..=4u8 {
            let packed = Codecs::compress(codec, &data).unwrap();
            assert_eq!(
                Codecs::decompress(codec, &packed, 1 << 20).unwrap(),
                data,
                "{codec}"
            );
            assert!(Codecs::decompress(codec, &packed, data.len() - 1).is_err());
            // A bomb: 4 MiB of zeros packs small; a 1 MiB limit refuses it.
            let bomb = Codecs::compress(codec, &zeros).unwrap();
            assert!(bomb.len() < 1 << 20);
            assert!(
                Codecs::decompress(codec, &bomb, 1 << 20).is_err(),
                "{codec}"
            );
            // Garbage and damage: errors, never panics.
            let mut rng = sluice_base::Rng::new(u64::from(codec));
            for _ in 0..300 {
                let m = rng.mutate(&packed[..packed.len().min(4096)], 3);
                let _ = Codecs::decompress(codec, &m, 1 << 20);
            }
            assert!(Codecs::decompress(codec, b"not compressed at all", 1 << 20).is_err());
        }
        assert!(Codecs::decompress(7, b"x", 10).is_err());
    }

    #[test]
    fn builds_batches_that_decode_to_the_same_records() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Snappy,
        ] {
            let mut b = BatchBuilder::new().producer(7, 1, 40).compression(c);
            for i in 0..5u8 {
                let headers = [("h".to_owned(), Some(Bytes::from(vec![i])))];
                b.push(
                    Some(Bytes::from(vec![b'k', i])),
                    None,
                    100 + i64::from(i),
                    &headers,
                );
            }
            let records = decode_records(b.build().unwrap()).unwrap();
            assert_eq!(records.len(), 5, "{c:?}");
            assert_eq!(records[3].key.as_deref(), Some(&[b'k', 3][..]));
            assert_eq!(records[3].value, None);
            assert_eq!((records[3].offset, records[3].sequence), (3, 43));
            assert_eq!((records[0].producer_id, records[0].producer_epoch), (7, 1));
            assert_eq!(records[4].timestamp, 104);
            assert_eq!(records[2].headers.len(), 1);
        }
        let plain = BatchBuilder::new()
            .transactional(true)
            .control(true)
            .record(None, Some(Bytes::from_static(b"v")), 1, &[])
            .build()
            .unwrap();
        let r = &decode_records(plain).unwrap()[0];
        assert!(r.transactional && r.control);
        assert_eq!(r.sequence, -1);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_records(Bytes::from_static(&[0u8; 70])).is_err());
        let good = BatchBuilder::new()
            .record(None, Some(Bytes::from_static(b"value")), 1, &[])
            .build()
            .unwrap();
        for cut in 1..good.len() {
            let r = decode_records(good.slice(..cut));
            assert!(r.map_or(true, |v| v.is_empty()), "cut at {cut}");
        }
        let mut flipped = good.to_vec();
        flipped[good.len() - 3] ^= 0xff;
        let _ = decode_records(Bytes::from(flipped));
    }
}
