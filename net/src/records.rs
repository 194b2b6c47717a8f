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

#[cfg(test)]
mod tests {
    use super::*;

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
