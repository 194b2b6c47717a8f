//! Records of the internal `__transaction_state` topic, in Kafka's layout (key version 0, value
//! version 0, the non-flexible one) so Kafka's tools can read them.
//!
//! ```text
//! key    version i16 = 0 | transactional_id string
//! value  version i16 = 0 | producer_id i64 | producer_epoch i16 | transaction_timeout_ms i32
//!        | status i8 | partitions nullable array: i32 count × ( topic string | i32 count × i32 )
//!        | last_update_timestamp_ms i64 | start_timestamp_ms i64
//! ```
//! A tombstone (no value) removes an expired transactional id. Decoding never panics: a
//! malformed key or value yields `None` (the record is skipped).

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
        let mut b = BytesMut::with_capacity(64);
        b.put_i16(0);
        b.put_i64(v.producer_id);
        b.put_i16(v.producer_epoch);
        b.put_i32(v.timeout_ms);
        b.put_i8(v.state.id());
        let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
        for (t, p) in &v.partitions {
            match topics.last_mut() {
                Some((last, ps)) if *last == t.as_str() => ps.push(*p),
                _ => topics.push((t, vec![*p])),
            }
        }
        b.put_i32(topics.len() as i32);
        for (t, ps) in topics {
            put_str(&mut b, t);
            b.put_i32(ps.len() as i32);
            for p in ps {
                b.put_i32(p);
            }
        }
        b.put_i64(v.last_update_ms);
        b.put_i64(v.start_ms);
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

fn decode_value(v: &[u8]) -> Option<TxnValue> {
    let mut r = Reader::new(v);
    // Version 1 is flexible (compact strings, tagged fields): not written by us, not read yet.
    if r.i16()? != 0 {
        return None;
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_id(r.u8()? as i8)?;
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
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    Some(TxnValue {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
    })
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
