//! Zero-copy Fetch response encoding (v4–v16).
//!
//! `kafka-protocol` would copy every record set into one buffer. Here the response is a list of
//! `Bytes`: small encoded pieces interleaved with the stored batches themselves, so the socket
//! write is one `writev` of the cached data. Layout (c = compact/flexible encodings from v12):
//! ```text
//! size i32 | correlation_id i32 | [tags v12+]
//! throttle_time_ms i32 | error_code i16 (v7+) | session_id i32 (v7+)
//! [topics]: name string (v4–12) | topic_id uuid (v13+)
//!   [partitions]: partition_index i32 | error_code i16 | high_watermark i64
//!     | last_stable_offset i64 | log_start_offset i64 (v5+)
//!     | aborted_transactions [producer_id i64, first_offset i64, [tags v12+]]
//!     | preferred_read_replica i32 (v11+) | records bytes
//!     | [tags v12+: 0 = DivergingEpoch {epoch i32, end_offset i64, [tags]},
//!                   1 = CurrentLeader {leader_id i32, leader_epoch i32, [tags]}]
//!   [tags v12+]
//! [tags v12+; v16+: 0 = NodeEndpoints [node_id i32, host string, port i32, rack string?, [tags]]]
//! ```
//!
//! `CurrentLeader` and `NodeEndpoints` are KIP-951's: a partition answered
//! NOT_LEADER_OR_FOLLOWER names its leader and how to reach it.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::ResponseFrame;

/// One partition of a Fetch response.
#[derive(Debug, Clone, Default)]
pub struct FetchPartitionOut {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed: the aborted transactions (producer id, first offset) in the data.
    pub aborted_transactions: Vec<(i64, i64)>,
    /// Whole stored batches, sent as they are.
    pub records: Vec<Bytes>,
    /// KIP-951: (leader id, leader epoch) of a partition this broker does not lead (v12+).
    pub current_leader: Option<(i32, i32)>,
    /// KIP-320/KIP-595: a follower's log diverges; (epoch, end offset) to truncate to (v12+).
    pub diverging_epoch: Option<(i32, i64)>,
}

/// How to reach a broker (KIP-951's `NodeEndpoints`, v16+).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeEndpointOut {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// One topic of a Fetch response.
#[derive(Debug, Clone, Default)]
pub struct FetchTopicOut {
    pub name: String,
    pub topic_id: [u8; 16],
    pub partitions: Vec<FetchPartitionOut>,
}

/// A Fetch response to encode.
#[derive(Debug, Clone, Default)]
pub struct FetchResponseOut {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<FetchTopicOut>,
    /// The brokers named in `current_leader`s (v16+).
    pub node_endpoints: Vec<NodeEndpointOut>,
}

fn put_compact_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        None => put_uvarint(buf, 0),
        Some(s) => {
            put_uvarint(buf, s.len() as u64 + 1);
            buf.put_slice(s.as_bytes());
        }
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_array_len(buf: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_uvarint(buf, n as u64 + 1);
    } else {
        buf.put_i32(n as i32);
    }
}

/// Encodes `resp` as Fetch `version` (4..=16) with its size prefix and header.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    resp: &FetchResponseOut,
) -> ResponseFrame {
    let flexible = version >= 12;
    let mut out: ResponseFrame = Vec::with_capacity(2 + resp.topics.len() * 4);
    let mut buf = BytesMut::with_capacity(512);
    buf.put_i32(0); // size, patched below
    buf.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut buf, 0);
    }
    buf.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(resp.error_code);
        buf.put_i32(resp.session_id);
    }
    put_array_len(&mut buf, flexible, resp.topics.len());
    for topic in &resp.topics {
        if version >= 13 {
            buf.put_slice(&topic.topic_id);
        } else if flexible {
            put_uvarint(&mut buf, topic.name.len() as u64 + 1);
            buf.put_slice(topic.name.as_bytes());
        } else {
            buf.put_i16(topic.name.len() as i16);
            buf.put_slice(topic.name.as_bytes());
        }
        put_array_len(&mut buf, flexible, topic.partitions.len());
        for p in &topic.partitions {
            buf.put_i32(p.partition_index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.high_watermark);
            buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                buf.put_i64(p.log_start_offset);
            }
            put_array_len(&mut buf, flexible, p.aborted_transactions.len());
            for &(producer_id, first_offset) in &p.aborted_transactions {
                buf.put_i64(producer_id);
                buf.put_i64(first_offset);
                if flexible {
                    put_uvarint(&mut buf, 0);
                }
            }
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            let records_len: usize = p.records.iter().map(Bytes::len).sum();
            if flexible {
                put_uvarint(&mut buf, records_len as u64 + 1);
            } else {
                buf.put_i32(records_len as i32);
            }
            if records_len > 0 {
                out.push(buf.split().freeze());
                out.extend(p.records.iter().filter(|b| !b.is_empty()).cloned());
            }
            if flexible {
                // Tagged fields, in tag order.
                let count =
                    u64::from(p.diverging_epoch.is_some()) + u64::from(p.current_leader.is_some());
                put_uvarint(&mut buf, count);
                if let Some((epoch, end_offset)) = p.diverging_epoch {
                    put_uvarint(&mut buf, 0); // tag 0: DivergingEpoch
                    put_uvarint(&mut buf, 13); // its size
                    buf.put_i32(epoch);
                    buf.put_i64(end_offset);
                    put_uvarint(&mut buf, 0);
                }
                if let Some((leader_id, leader_epoch)) = p.current_leader {
                    put_uvarint(&mut buf, 1); // tag 1: CurrentLeader
                    put_uvarint(&mut buf, 9); // its size
                    buf.put_i32(leader_id);
                    buf.put_i32(leader_epoch);
                    put_uvarint(&mut buf, 0);
                }
            }
        }
        if flexible {
            put_uvarint(&mut buf, 0);
        }
    }
    if version >= 16 && !resp.node_endpoints.is_empty() {
        let mut field = BytesMut::new();
        put_uvarint(&mut field, resp.node_endpoints.len() as u64 + 1);
        for e in &resp.node_endpoints {
            field.put_i32(e.node_id);
            put_compact_str(&mut field, Some(&e.host));
            field.put_i32(e.port);
            put_compact_str(&mut field, e.rack.as_deref());
            put_uvarint(&mut field, 0);
        }
        put_uvarint(&mut buf, 1); // one tagged field
        put_uvarint(&mut buf, 0); // tag 0: NodeEndpoints
        put_uvarint(&mut buf, field.len() as u64);
        buf.put_slice(&field);
    } else if flexible {
        put_uvarint(&mut buf, 0);
    }
    out.push(buf.freeze());
    let total: usize = out.iter().map(Bytes::len).sum();
    let size = ((total - 4) as i32).to_be_bytes();
    // The size prefix lives in the first piece; it was split off as an immutable Bytes, so rebuild it.
    let first = &out[0];
    let mut head = BytesMut::with_capacity(first.len());
    head.put_slice(&size);
    head.put_slice(&first[4..]);
    out[0] = head.freeze();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    fn flatten(frame: &ResponseFrame) -> Bytes {
        let mut all = BytesMut::new();
        for b in frame {
            all.put_slice(b);
        }
        all.freeze()
    }

    #[test]
    fn matches_kafka_protocol_decoder_for_every_version() {
        let resp = FetchResponseOut {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: vec![FetchTopicOut {
                name: "orders".into(),
                topic_id: [7; 16],
                partitions: vec![
                    FetchPartitionOut {
                        partition_index: 0,
                        high_watermark: 10,
                        last_stable_offset: 10,
                        log_start_offset: 2,
                        aborted_transactions: vec![(5, 1), (6, 3)],
                        records: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")],
                        ..Default::default()
                    },
                    FetchPartitionOut {
                        partition_index: 1,
                        error_code: 1,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        aborted_transactions: vec![],
                        records: vec![],
                        current_leader: None,
                        diverging_epoch: None,
                    },
                    FetchPartitionOut {
                        partition_index: 2,
                        error_code: 6,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        aborted_transactions: vec![],
                        records: vec![],
                        current_leader: Some((3, 17)),
                        diverging_epoch: Some((5, 1234)),
                    },
                ],
            }],
            node_endpoints: vec![NodeEndpointOut {
                node_id: 3,
                host: "broker3".into(),
                port: 9096,
                rack: Some("r1".into()),
            }],
        };
        for version in 4..=16i16 {
            let mut bytes = flatten(&encode_fetch_response(version, 42, &resp));
            let size = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            assert_eq!(size, bytes.len() - 4, "v{version}");
            let header_len = if version >= 12 { 9 } else { 8 };
            assert_eq!(&bytes[4..8], &42i32.to_be_bytes());
            let mut body = bytes.split_off(header_len);
            let decoded = FetchResponse::decode(&mut body, version).unwrap();
            assert!(body.is_empty(), "v{version}: trailing bytes");
            let t = &decoded.responses[0];
            if version >= 13 {
                assert_eq!(t.topic_id.as_bytes(), &[7; 16]);
            } else {
                assert_eq!(t.topic.as_str(), "orders");
            }
            let p0 = &t.partitions[0];
            assert_eq!(p0.records.as_deref(), Some(&b"abcdefg"[..]), "v{version}");
            assert_eq!(p0.high_watermark, 10);
            assert_eq!(p0.last_stable_offset, 10);
            let aborted: Vec<(i64, i64)> = p0
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            assert_eq!(aborted, vec![(5, 1), (6, 3)], "v{version}");
            if version >= 5 {
                assert_eq!(p0.log_start_offset, 2);
            }
            assert_eq!(t.partitions[1].error_code, 1);
            let p2 = &t.partitions[2];
            if version >= 12 {
                assert_eq!(
                    (
                        p2.current_leader.leader_id.0,
                        p2.current_leader.leader_epoch
                    ),
                    (3, 17),
                    "v{version}"
                );
                assert_eq!(
                    (p2.diverging_epoch.epoch, p2.diverging_epoch.end_offset),
                    (5, 1234),
                    "v{version}"
                );
            }
            if version >= 16 {
                let e = &decoded.node_endpoints[0];
                assert_eq!((e.node_id.0, e.host.as_str(), e.port), (3, "broker3", 9096));
                assert_eq!(e.rack.as_deref(), Some("r1"));
            } else {
                assert!(decoded.node_endpoints.is_empty());
            }
        }
    }
}
