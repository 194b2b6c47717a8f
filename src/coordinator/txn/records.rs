//! Records of the internal `__transaction_state` topic, in Kafka's layout (key version 0; value
//! version 0, or the flexible version 1 when it carries a previous or next producer id) so
//! Kafka's tools can read them.
//!
//! ```text
//! key    version i16 = 0 | transactional_id string
//! value  version i16 = 0 | producer_id i64 | producer_epoch i16 | transaction_timeout_ms i32
//!        | status i8 | partitions nullable array: i32 count × ( topic string | i32 count × i32 )
//!        | last_update_timestamp_ms i64 | start_timestamp_ms i64
//! value  version i16 = 1 | producer_id i64 | producer_epoch i16 | transaction_timeout_ms i32
//!        | status i8 | partitions compact nullable array: uvarint count+1 ×
//!          ( topic compact string | compact array of i32 | tagged fields )
//!        | last_update_timestamp_ms i64 | start_timestamp_ms i64
//!        | tagged fields: 0 previous_producer_id i64, 1 next_producer_id i64,
//!          2 client_transaction_version i16 (read, not kept)
//! ```
//! (compact string: uvarint length+1 | UTF-8; tagged fields: uvarint count × ( uvarint tag |
//! uvarint size | data ).) A tombstone (no value) removes an expired transactional id. Decoding
//! never panics: a malformed key or value yields `None` (the record is skipped).

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;
use sluice_net::records::BatchBuilder;
use sluice_storage::Reader;

/// Kafka's transaction states, with the ids it stores (`TransactionState.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A transactional id's state as stored (Kafka's `TransactionLogValue` v0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the transaction under way (empty once it completed).
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// When the transaction under way started (-1: none).
    pub start_ms: i64,
    /// The producer id before the last rotation (transaction version 2: an EndTxn whose epoch
    /// bump exhausted the id moved the producer to a new one; -1: none). A retry of that
    /// EndTxn names the previous id.
    pub prev_producer_id: i64,
    /// The producer id the transaction being completed moves the producer to (-1: none).
    pub next_producer_id: i64,
}

/// One `__transaction_state` record; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub value: Option<TxnValue>,
}

impl TxnRecord {
    pub fn encode_key(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(4 + self.transactional_id.len());
        b.put_i16(0);
        put_str(&mut b, &self.transactional_id);
        b.freeze()
    }

    pub fn encode_value(&self) -> Option<Bytes> {
        let v = self.value.as_ref()?;
        // Version 1 (flexible) only for what version 0 cannot carry: the previous and next
        // producer ids, as tagged fields.
        let flexible = v.prev_producer_id != -1 || v.next_producer_id != -1;
        let mut b = BytesMut::with_capacity(96);
        b.put_i16(i16::from(flexible));
        b.put_i64(v.producer_id);
        b.put_i16(v.producer_epoch);
        b.put_i32(v.timeout_ms);
        b.put_i8(v.state.id());
        let topics = by_topic(v);
        if flexible {
            put_uvarint(&mut b, topics.len() as u32 + 1);
        } else {
            b.put_i32(topics.len() as i32);
        }
        for (t, ps) in topics {
            if flexible {
                put_compact_str(&mut b, t);
                put_uvarint(&mut b, ps.len() as u32 + 1);
            } else {
                put_str(&mut b, t);
                b.put_i32(ps.len() as i32);
            }
            for p in ps {
                b.put_i32(p);
            }
            if flexible {
                put_uvarint(&mut b, 0);
            }
        }
        b.put_i64(v.last_update_ms);
        b.put_i64(v.start_ms);
        if flexible {
            let tags: Vec<(u32, i64)> = [(0, v.prev_producer_id), (1, v.next_producer_id)]
                .into_iter()
                .filter(|(_, id)| *id != -1)
                .collect();
            put_uvarint(&mut b, tags.len() as u32);
            for (tag, id) in tags {
                put_uvarint(&mut b, tag);
                put_uvarint(&mut b, 8);
                b.put_i64(id);
            }
        }
        Some(b.freeze())
    }

    /// Decodes a stored key/value pair; `None` if it is not a record we understand.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<TxnRecord> {
        let mut k = Reader::new(key);
        if k.i16()? != 0 {
            return None;
        }
        let transactional_id = k.string()?.to_owned();
        let value = match value {
            None => None,
            Some(v) => Some(decode_value(v)?),
        };
        Some(TxnRecord {
            transactional_id,
            value,
        })
    }
}

/// The partitions of a value grouped by topic, in order.
fn by_topic(v: &TxnValue) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &v.partitions {
        match topics.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => topics.push((t, vec![*p])),
        }
    }
    topics
}

fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn put_compact_str(b: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    put_uvarint(b, len as u32 + 1);
    b.put_slice(&s.as_bytes()[..len]);
}

/// A compact array's or string's length (uvarint length+1; `None` inside: null).
fn compact_len(r: &mut Reader) -> Option<Option<usize>> {
    match r.uvarint()? {
        0 => Some(None),
        n => Some(Some(n as usize - 1)),
    }
}

/// Tagged fields: (tag, data) in order; malformed sizes fail.
fn tagged_fields<'a>(r: &mut Reader<'a>) -> Option<Vec<(u32, &'a [u8])>> {
    let n = r.uvarint()? as usize;
    // Each takes at least two bytes: the count is bounded by what is left.
    if n > r.remaining() / 2 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = r.uvarint()?;
        let size = r.uvarint()? as usize;
        out.push((tag, r.take(size)?));
    }
    Some(out)
}

fn decode_value(v: &[u8]) -> Option<TxnValue> {
    let mut r = Reader::new(v);
    let flexible = match r.i16()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_id(r.u8()? as i8)?;
    let partitions = if flexible {
        partitions_v1(&mut r)?
    } else {
        partitions_v0(&mut r)?
    };
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let (mut prev_producer_id, mut next_producer_id) = (-1, -1);
    if flexible {
        for (tag, data) in tagged_fields(&mut r)? {
            let id = || Some(i64::from_be_bytes(data.try_into().ok()?));
            match tag {
                0 => prev_producer_id = id()?,
                1 => next_producer_id = id()?,
                _ => {}
            }
        }
    }
    Some(TxnValue {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
        prev_producer_id,
        next_producer_id,
    })
}

/// Version 0's partitions: a nullable array (i32 count, -1 = null) of (string, i32 array).
fn partitions_v0(r: &mut Reader) -> Option<BTreeSet<(String, i32)>> {
    let mut partitions = BTreeSet::new();
    let topics = r.i32()?;
    // -1 = null; each topic takes at least 6 bytes and each partition 4: the counts are bounded
    // by what is left, so a hostile count cannot make us loop or allocate.
    if topics > 0 {
        if topics as usize > r.remaining() / 6 {
            return None;
        }
        for _ in 0..topics {
            let topic = r.string()?.to_owned();
            let n = r.i32()?;
            if n < 0 || n as usize > r.remaining() / 4 {
                return None;
            }
            for _ in 0..n {
                partitions.insert((topic.clone(), r.i32()?));
            }
        }
    } else if topics < -1 {
        return None;
    }
    Some(partitions)
}

/// Version 1's partitions: a compact nullable array of (compact string, compact i32 array,
/// tagged fields).
fn partitions_v1(r: &mut Reader) -> Option<BTreeSet<(String, i32)>> {
    let mut partitions = BTreeSet::new();
    if let Some(topics) = compact_len(r)? {
        // Each topic takes at least 3 bytes and each partition 4 (see partitions_v0).
        if topics > r.remaining() / 3 {
            return None;
        }
        for _ in 0..topics {
            let len = compact_len(r)??;
            let topic = std::str::from_utf8(r.take(len)?).ok()?.to_owned();
            let n = compact_len(r)??;
            if n > r.remaining() / 4 {
                return None;
            }
            for _ in 0..n {
                partitions.insert((topic.clone(), r.i32()?));
            }
            tagged_fields(r)?;
        }
    }
    Some(partitions)
}

fn put_str(b: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&s.as_bytes()[..len]);
}

/// Packs records into one uncompressed RecordBatch v2.
pub fn encode_batch(records: &[TxnRecord], now_ms: i64) -> Result<Bytes, String> {
    let mut b = BatchBuilder::new();
    for r in records {
        b.push(Some(r.encode_key()), r.encode_value(), now_ms, &[]);
    }
    b.build()
}

/// Decodes every record of the whole batches in `chunk` with its offset. Records we do not
/// understand are skipped; a batch that fails to decode ends the chunk (error returned).
pub fn decode_batches(chunk: Bytes) -> Result<Vec<(i64, TxnRecord)>, String> {
    let mut buf = chunk;
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for set in sets {
        for r in set.records {
            if r.control {
                continue;
            }
            let Some(key) = r.key.as_deref() else {
                continue;
            };
            if let Some(rec) = TxnRecord::decode(key, r.value.as_deref()) {
                out.push((r.offset, rec));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<TxnRecord> {
        vec![
            TxnRecord {
                transactional_id: "tx-1".into(),
                value: Some(TxnValue {
                    producer_id: 4000,
                    producer_epoch: 3,
                    timeout_ms: 60_000,
                    state: TxnState::Ongoing,
                    partitions: BTreeSet::from([
                        ("a".to_owned(), 0),
                        ("a".to_owned(), 2),
                        ("b".to_owned(), 1),
                    ]),
                    last_update_ms: 1_000,
                    start_ms: 900,
                    prev_producer_id: -1,
                    next_producer_id: -1,
                }),
            },
            TxnRecord {
                transactional_id: "tx-2".into(),
                value: Some(TxnValue {
                    producer_id: 4001,
                    producer_epoch: 0,
                    timeout_ms: 10_000,
                    state: TxnState::CompleteCommit,
                    partitions: BTreeSet::new(),
                    last_update_ms: 5,
                    start_ms: -1,
                    prev_producer_id: -1,
                    next_producer_id: -1,
                }),
            },
            // Version 1: a producer id rotated by a transaction version 2 completion.
            TxnRecord {
                transactional_id: "tx-4".into(),
                value: Some(TxnValue {
                    producer_id: 4002,
                    producer_epoch: i16::MAX,
                    timeout_ms: 10_000,
                    state: TxnState::PrepareCommit,
                    partitions: BTreeSet::from([("a".to_owned(), 1), ("é".to_owned(), 300)]),
                    last_update_ms: 6,
                    start_ms: 4,
                    prev_producer_id: 17,
                    next_producer_id: 5000,
                }),
            },
            TxnRecord {
                transactional_id: "tx-3".into(),
                value: None,
            },
        ]
    }

    #[test]
    fn records_round_trip_through_a_batch() {
        let recs = samples();
        let batch = encode_batch(&recs, 5).unwrap();
        sluice_storage::validate_batches(&batch).unwrap();
        let back = decode_batches(batch).unwrap();
        assert_eq!(back.len(), recs.len());
        for (i, (offset, r)) in back.into_iter().enumerate() {
            assert_eq!(offset, i as i64);
            assert_eq!(r, recs[i]);
        }
    }

    #[test]
    fn value_layout_is_kafkas() {
        let v = samples()[0].encode_value().unwrap();
        let mut r = Reader::new(&v);
        assert_eq!(r.i16(), Some(0));
        assert_eq!(r.i64(), Some(4000));
        assert_eq!(r.i16(), Some(3));
        assert_eq!(r.i32(), Some(60_000));
        assert_eq!(r.u8(), Some(1)); // Ongoing
        assert_eq!(r.i32(), Some(2)); // topics a, b
        assert_eq!(r.string(), Some("a"));
        assert_eq!(r.i32(), Some(2));
        assert_eq!((r.i32(), r.i32()), (Some(0), Some(2)));
        assert_eq!(r.string(), Some("b"));
        assert_eq!((r.i32(), r.i32()), (Some(1), Some(1)));
        assert_eq!((r.i64(), r.i64()), (Some(1_000), Some(900)));
        assert!(r.is_empty());
    }

    #[test]
    fn value_v1_layout_is_kafkas() {
        let v = samples()[2].encode_value().unwrap();
        let mut r = Reader::new(&v);
        assert_eq!(r.i16(), Some(1));
        assert_eq!(r.i64(), Some(4002));
        assert_eq!(r.i16(), Some(i16::MAX));
        assert_eq!(r.i32(), Some(10_000));
        assert_eq!(r.u8(), Some(2)); // PrepareCommit
        assert_eq!(r.uvarint(), Some(3)); // two topics
        assert_eq!((r.uvarint(), r.take(1)), (Some(2), Some(&b"a"[..])));
        assert_eq!(
            (r.uvarint(), r.i32(), r.uvarint()),
            (Some(2), Some(1), Some(0))
        );
        assert_eq!((r.uvarint(), r.take(2)), (Some(3), Some("é".as_bytes())));
        assert_eq!(
            (r.uvarint(), r.i32(), r.uvarint()),
            (Some(2), Some(300), Some(0))
        );
        assert_eq!((r.i64(), r.i64()), (Some(6), Some(4)));
        assert_eq!(r.uvarint(), Some(2)); // two tagged fields
        assert_eq!(
            (r.uvarint(), r.uvarint(), r.i64()),
            (Some(0), Some(8), Some(17))
        );
        assert_eq!(
            (r.uvarint(), r.uvarint(), r.i64()),
            (Some(1), Some(8), Some(5000))
        );
        assert!(r.is_empty());
        // Kafka's client_transaction_version (tag 2) and unknown tags are read past.
        let mut extra = v[..v.len() - 21].to_vec();
        extra.extend_from_slice(&[3, 0, 8]);
        extra.extend_from_slice(&17i64.to_be_bytes());
        extra.extend_from_slice(&[2, 2, 0, 2, 9, 1, 7]);
        let back = TxnRecord::decode(&samples()[2].encode_key(), Some(&extra)).unwrap();
        let want = samples()[2].value.clone().map(|v| TxnValue {
            next_producer_id: -1,
            ..v
        });
        assert_eq!(back.value, want);
    }

    #[test]
    fn malformed_keys_and_values_are_skipped_not_panicking() {
        for r in samples() {
            let key = r.encode_key();
            let value = r.encode_value();
            for cut in 0..key.len() {
                assert!(TxnRecord::decode(&key[..cut], value.as_deref()).is_none());
            }
            if let Some(v) = value {
                for cut in 0..v.len() {
                    assert!(TxnRecord::decode(&key, Some(&v[..cut])).is_none());
                }
                // Hostile counts and states.
                let mut bad = v.to_vec();
                bad[16] = 99; // status byte
                assert!(TxnRecord::decode(&key, Some(&bad)).is_none());
                let mut bad = v.to_vec();
                bad[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
                assert!(TxnRecord::decode(&key, Some(&bad)).is_none());
            }
        }
        assert!(TxnRecord::decode(&[0, 1], None).is_none());
        assert!(TxnRecord::decode(&[0, 5, 0, 1, b'x'], None).is_none());
    }

    #[test]
    fn state_ids_and_names_round_trip() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_id(s.id()), Some(s));
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::from_id(8), None);
    }
}
