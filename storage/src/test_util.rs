//! Helpers for tests, tools and fuzzing: a builder of valid RecordBatch v2 bytes (uncompressed,
//! CRC-32C computed) and a tiny seeded PRNG. Not used on the data path.
//!
//! Record layout written here (varints are zig-zag, as in Kafka):
//! `length varint | attributes i8 | timestamp_delta varlong | offset_delta varint |
//!  key_len varint (-1) | value_len varint | value | headers_count varint (0)`.

use crate::batch::{BATCH_HEADER_BYTES, CRC_START};

/// What to put in a test batch.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub records: i32,
    pub base_offset: i64,
    pub base_timestamp: i64,
    pub value_bytes: usize,
    pub leader_epoch: i32,
}

impl BatchSpec {
    pub fn new(records: i32) -> BatchSpec {
        BatchSpec {
            records,
            base_offset: 0,
            base_timestamp: 1_700_000_000_000,
            value_bytes: 10,
            leader_epoch: -1,
        }
    }
    pub fn base_timestamp(mut self, ts: i64) -> Self {
        self.base_timestamp = ts;
        self
    }
    pub fn value_bytes(mut self, n: usize) -> Self {
        self.value_bytes = n;
        self
    }
    pub fn base_offset(mut self, o: i64) -> Self {
        self.base_offset = o;
        self
    }
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// A record's key and value (`None`: null).
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Builds one valid uncompressed batch. Record `i` has timestamp `base_timestamp + i` and a value
/// of `value_bytes` bytes derived from its index. Max timestamp = `base_timestamp + records - 1`.
pub fn build_batch(spec: &BatchSpec) -> Vec<u8> {
    let n = spec.records.max(1);
    let records: Vec<KeyValue> = (0..n)
        .map(|i| {
            let value = (0..spec.value_bytes).map(|k| (k as u8).wrapping_add(i as u8));
            (None, Some(value.collect()))
        })
        .collect();
    let mut b = build_keyed_batch(spec.base_offset, spec.base_timestamp, &records);
    b[12..16].copy_from_slice(&spec.leader_epoch.to_be_bytes());
    b
}

/// Builds one valid uncompressed batch of `(key, value)` records (`None`: null) at
/// `base_offset`; record `i` has offset delta and timestamp delta `i`.
pub fn build_keyed_batch(base_offset: i64, base_timestamp: i64, records: &[KeyValue]) -> Vec<u8> {
    let n = records.len().max(1) as i32;
    let mut recs = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        let mut body = Vec::new();
        body.push(0u8); // attributes
        put_varlong(&mut body, i as i64); // timestamp delta
        put_varlong(&mut body, i as i64); // offset delta
        for field in [key, value] {
            match field {
                None => put_varlong(&mut body, -1),
                Some(v) => {
                    put_varlong(&mut body, v.len() as i64);
                    body.extend_from_slice(v);
                }
            }
        }
        put_varlong(&mut body, 0); // headers
        put_varlong(&mut recs, body.len() as i64);
        recs.extend_from_slice(&body);
    }
    let total = BATCH_HEADER_BYTES + recs.len();
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&base_offset.to_be_bytes());
    b.extend_from_slice(&((total - 12) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2);
    b.extend_from_slice(&[0; 4]); // crc, filled below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&(base_timestamp + n as i64 - 1).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&recs);
    set_crc(&mut b);
    b
}

/// Recomputes the CRC of one whole batch (after a test changed bytes under it).
pub fn set_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

pub use sluice_base::Rng;
