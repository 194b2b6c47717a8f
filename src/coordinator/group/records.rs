//! Records of the internal `__consumer_offsets` topic, in Kafka's own layout so Kafka tools can
//! read them, and their packing into RecordBatch v2.
//!
//! Key (record key, big-endian, strings are `i16 length | UTF-8 bytes`):
//! ```text
//! offset commit   version i16 = 1 | group string | topic string | partition i32
//! group metadata  version i16 = 2 | group string
//! ```
//! Value (`None` = tombstone: the key was deleted):
//! ```text
//! offset commit   version i16 = 3 | offset i64 | leader_epoch i32 | metadata string | commit_timestamp i64
//! group metadata  version i16 = 3 | protocol_type string | generation i32 | protocol nullable string
//!                 | leader nullable string | current_state_timestamp i64
//!                 | members i32 count × ( member_id string | group_instance_id nullable string
//!                   | client_id string | client_host string | rebalance_timeout i32
//!                   | session_timeout i32 | subscription bytes(i32 len) | assignment bytes(i32 len) )
//! ```
//! Decoding never panics: any malformed key or value yields `None` (the record is skipped).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;
use sluice_net::records::BatchBuilder;
use sluice_storage::Reader;

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member as stored in the group metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

/// One `__consumer_offsets` record; `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
}

impl StoredRecord {
    pub fn group(&self) -> &str {
        match self {
            StoredRecord::Offset { group, .. } | StoredRecord::Group { group, .. } => group,
        }
    }

    pub fn encode_key(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        match self {
            StoredRecord::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                b.put_i16(1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            StoredRecord::Group { group, .. } => {
                b.put_i16(2);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    pub fn encode_value(&self) -> Option<Bytes> {
        let mut b = BytesMut::with_capacity(64);
        match self {
            StoredRecord::Offset { value, .. } => {
                let v = value.as_ref()?;
                b.put_i16(3);
                b.put_i64(v.offset);
                b.put_i32(v.leader_epoch);
                put_str(&mut b, &v.metadata);
                b.put_i64(v.commit_timestamp_ms);
            }
            StoredRecord::Group { value, .. } => {
                let v = value.as_ref()?;
                b.put_i16(3);
                put_str(&mut b, &v.protocol_type);
                b.put_i32(v.generation);
                put_opt_str(&mut b, v.protocol.as_deref());
                put_opt_str(&mut b, v.leader.as_deref());
                b.put_i64(v.state_timestamp_ms);
                b.put_i32(v.members.len() as i32);
                for m in &v.members {
                    put_str(&mut b, &m.member_id);
                    put_opt_str(&mut b, m.instance_id.as_deref());
                    put_str(&mut b, &m.client_id);
                    put_str(&mut b, &m.client_host);
                    b.put_i32(m.rebalance_timeout_ms);
                    b.put_i32(m.session_timeout_ms);
                    put_bytes(&mut b, &m.subscription);
                    put_bytes(&mut b, &m.assignment);
                }
            }
        }
        Some(b.freeze())
    }

    /// Decodes a stored key/value pair; `None` if it is not a record we understand.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<StoredRecord> {
        let mut k = Reader::new(key);
        match k.i16()? {
            0 | 1 => {
                let group = k.string()?.to_owned();
                let topic = k.string()?.to_owned();
                let partition = k.i32()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_offset_value(v)?),
                };
                Some(StoredRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group = k.string()?.to_owned();
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_group_value(v)?),
                };
                Some(StoredRecord::Group { group, value })
            }
            _ => None,
        }
    }
}

fn decode_offset_value(v: &[u8]) -> Option<OffsetValue> {
    let mut r = Reader::new(v);
    let version = r.i16()?;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?.to_owned();
    let commit_timestamp_ms = r.i64()?;
    Some(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(v: &[u8]) -> Option<GroupValue> {
    let mut r = Reader::new(v);
    if r.i16()? != 3 {
        return None;
    }
    let protocol_type = r.string()?.to_owned();
    let generation = r.i32()?;
    let protocol = r.opt_string()?.map(str::to_owned);
    let leader = r.opt_string()?.map(str::to_owned);
    let state_timestamp_ms = r.i64()?;
    let count = r.i32()?;
    // Each member takes at least 28 bytes: bound the allocation by what is left.
    if count < 0 || count as usize > r.remaining() / 28 + 1 {
        return None;
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        members.push(StoredMember {
            member_id: r.string()?.to_owned(),
            instance_id: r.opt_string()?.map(str::to_owned),
            client_id: r.string()?.to_owned(),
            client_host: r.string()?.to_owned(),
            rebalance_timeout_ms: r.i32()?,
            session_timeout_ms: r.i32()?,
            subscription: Bytes::copy_from_slice(r.bytes()?),
            assignment: Bytes::copy_from_slice(r.bytes()?),
        });
    }
    Some(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn put_str(b: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&s.as_bytes()[..len]);
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

/// Packs records into one uncompressed RecordBatch v2; with `txn` (producer id, epoch), a
/// transactional batch of that producer (TxnOffsetCommit; no sequence, as Kafka writes them).
pub fn encode_batch(
    records: &[StoredRecord],
    now_ms: i64,
    txn: Option<(i64, i16)>,
) -> Result<Bytes, String> {
    let mut b = BatchBuilder::new();
    if let Some((producer_id, epoch)) = txn {
        b = b.producer(producer_id, epoch, -1).transactional(true);
    }
    for r in records {
        b.push(Some(r.encode_key()), r.encode_value(), now_ms, &[]);
    }
    b.build()
}

/// What a load reads from an offsets partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A record; `txn`: the producer id of its transactional batch.
    Record { rec: StoredRecord, txn: Option<i64> },
    /// A transaction marker of `producer_id`.
    Marker { producer_id: i64, commit: bool },
}

/// Decodes every record of the whole batches in `chunk` with its offset. Records we do not
/// understand are skipped; a batch that fails to decode ends the chunk (error returned).
pub fn decode_batches(chunk: Bytes) -> Result<Vec<(i64, Decoded)>, String> {
    let mut buf = chunk;
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for set in sets {
        for r in set.records {
            let Some(key) = r.key.as_deref() else {
                continue;
            };
            if r.control {
                // Control record key: version i16 = 0 | type i16 (0 abort, 1 commit).
                let commit = match key {
                    [0, 0, 0, 0] => false,
                    [0, 0, 0, 1] => true,
                    _ => continue,
                };
                let m = Decoded::Marker {
                    producer_id: r.producer_id,
                    commit,
                };
                out.push((r.offset, m));
                continue;
            }
            if let Some(rec) = StoredRecord::decode(key, r.value.as_deref()) {
                let txn = r.transactional.then_some(r.producer_id);
                out.push((r.offset, Decoded::Record { rec, txn }));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<StoredRecord> {
        vec![
            StoredRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: 7,
                    metadata: "meta".into(),
                    commit_timestamp_ms: 1000,
                }),
            },
            StoredRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
            StoredRecord::Group {
                group: "g".into(),
                value: Some(GroupValue {
                    protocol_type: "consumer".into(),
                    generation: 5,
                    protocol: Some("range".into()),
                    leader: Some("m1".into()),
                    state_timestamp_ms: 9,
                    members: vec![StoredMember {
                        member_id: "m1".into(),
                        instance_id: Some("i1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300000,
                        session_timeout_ms: 10000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"asg"),
                    }],
                }),
            },
            StoredRecord::Group {
                group: "g2".into(),
                value: None,
            },
        ]
    }

    #[test]
    fn records_round_trip_through_a_batch() {
        let recs = samples();
        let batch = encode_batch(&recs, 5, None).unwrap();
        sluice_storage::validate_batches(&batch).unwrap();
        let back = decode_batches(batch).unwrap();
        assert_eq!(back.len(), recs.len());
        for (i, (offset, r)) in back.into_iter().enumerate() {
            assert_eq!(offset, i as i64);
            assert_eq!(
                r,
                Decoded::Record {
                    rec: recs[i].clone(),
                    txn: None
                }
            );
        }
        // A transactional batch, then a marker.
        let batch = encode_batch(&recs[..1], 5, Some((42, 3))).unwrap();
        let h = &sluice_storage::validate_batches(&batch).unwrap()[0];
        assert!(h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (42, 3, -1)
        );
        let back = decode_batches(batch).unwrap();
        assert_eq!(
            back[0].1,
            Decoded::Record {
                rec: recs[0].clone(),
                txn: Some(42)
            }
        );
        let marker = sluice_storage::txn::encode_marker(42, 3, true, 0, 5);
        let back = decode_batches(Bytes::from(marker)).unwrap();
        assert_eq!(
            back,
            vec![(
                0,
                Decoded::Marker {
                    producer_id: 42,
                    commit: true
                }
            )]
        );
    }

    #[test]
    fn malformed_keys_and_values_are_skipped_not_panicking() {
        for r in samples() {
            let key = r.encode_key();
            let value = r.encode_value();
            for cut in 0..key.len() {
                let _ = StoredRecord::decode(&key[..cut], value.as_deref());
            }
            if let Some(v) = value {
                for cut in 0..v.len() {
                    assert!(StoredRecord::decode(&key, Some(&v[..cut])).is_none());
                }
            }
        }
        assert!(StoredRecord::decode(&[0, 9], None).is_none());
    }
}
