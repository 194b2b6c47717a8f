//! A tiny raw Kafka client over std TCP for protocol-level tests (duplicate and out-of-order
//! batches, malformed requests): encodes requests with kafka-protocol, decodes responses.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_net::records::BatchBuilder;

pub struct Raw<S = TcpStream> {
    pub stream: S,
    correlation: i32,
}

/// A Raw client's connection over TLS.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Raw<TlsStream> {
    /// Connects over TLS with `config` (the server is verified as `127.0.0.1`); the handshake
    /// runs with the first request. Its error, if any, shows as the broker closing.
    pub fn connect_tls(addr: &str, config: std::sync::Arc<rustls::ClientConfig>) -> Raw<TlsStream> {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(config, name).unwrap();
        Raw {
            stream: rustls::StreamOwned::new(conn, tcp),
            correlation: 0,
        }
    }
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }
}

impl<S: Read + Write> Raw<S> {
    /// Sends a request and returns the decoded response body.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.send(key, version, req);
        self.recv(key, version)
    }

    pub fn send<Req: Encodable>(&mut self, key: ApiKey, version: i16, req: &Req) {
        let frame = self.encode(key, version, req);
        self.stream.write_all(&frame).unwrap();
        self.stream.flush().unwrap();
    }

    /// The next request's frame (length prefix included), not sent: for tests that write
    /// several requests' bytes in pieces of their choosing.
    pub fn encode<Req: Encodable>(&mut self, key: ApiKey, version: i16, req: &Req) -> BytesMut {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, key.request_header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        framed(&body)
    }

    pub fn send_frame(&mut self, body: &[u8]) {
        self.stream.write_all(&framed(body)).unwrap();
        self.stream.flush().unwrap();
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub fn recv_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).ok()?;
        Some(Bytes::from(buf))
    }

    pub fn recv<Resp: Decodable>(&mut self, key: ApiKey, version: i16) -> Resp {
        let (correlation, resp) = self.recv_next(key, version);
        assert_eq!(correlation, self.correlation);
        resp
    }

    /// The next response (of pipelined requests, in request order) and its correlation id.
    pub fn recv_next<Resp: Decodable>(&mut self, key: ApiKey, version: i16) -> (i32, Resp) {
        let mut frame = self.recv_frame().expect("response");
        let correlation = frame.get_i32();
        if key.response_header_version(version) >= 1 {
            let tags = frame.get_u8();
            assert_eq!(tags, 0);
        }
        (correlation, Resp::decode(&mut frame, version).unwrap())
    }
}

impl<S: Read + Write> Raw<S> {
    /// Produce v9 (acks=1) of `records` to one partition: (error code, base offset).
    pub fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
        let resp = self.produce_response(topic, partition, records);
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// Produce v9 (acks=1) of `records` to one partition: the whole response.
    pub fn produce_response(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> kafka_protocol::messages::ProduceResponse {
        self.call(
            ApiKey::Produce,
            9,
            &produce_request(topic, partition, records),
        )
    }
}

impl<S: Read + Write> Raw<S> {
    /// SaslHandshake v1 for PLAIN (which must succeed), then SaslAuthenticate v2 as `user`:
    /// the mechanisms the handshake listed, and the authentication's error code.
    pub fn sasl_plain(&mut self, user: &str, password: &str) -> (Vec<String>, i16) {
        let (mechanisms, auth) = self.sasl_plain_answer(user, password);
        (mechanisms, auth.error_code)
    }

    /// [`Raw::sasl_plain`] with SaslAuthenticate's whole answer.
    pub fn sasl_plain_answer(
        &mut self,
        user: &str,
        password: &str,
    ) -> (
        Vec<String>,
        kafka_protocol::messages::SaslAuthenticateResponse,
    ) {
        use kafka_protocol::messages::{
            SaslAuthenticateRequest, SaslHandshakeRequest, SaslHandshakeResponse,
        };
        let hs: SaslHandshakeResponse = self.call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        );
        assert_eq!(hs.error_code, 0, "SaslHandshake PLAIN");
        let token = format!("\0{user}\0{password}");
        let auth = self.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(token.into_bytes().into()),
        );
        let mechanisms = hs.mechanisms.iter().map(|m| m.to_string()).collect();
        (mechanisms, auth)
    }

    /// DeleteTopics v4 of one topic: its error code.
    pub fn delete_topic(&mut self, name: &str) -> i16 {
        use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(StrBytes::from_string(name.to_owned()))])
            .with_timeout_ms(30_000);
        let r: DeleteTopicsResponse = self.call(ApiKey::DeleteTopics, 4, &req);
        r.responses[0].error_code
    }

    /// OffsetCommit v8 of `offset` for partition 0 of `topic` by `group` as a simple
    /// (memberless) consumer: its error code.
    pub fn commit_offset(&mut self, group: &str, topic: &str, offset: i64) -> i16 {
        use kafka_protocol::messages::OffsetCommitResponse;
        let r: OffsetCommitResponse = self.call(
            ApiKey::OffsetCommit,
            8,
            &offset_commit(group, topic, offset),
        );
        r.topics[0].partitions[0].error_code
    }

    /// The committed offset of partition 0 of `topic` for `group` (-1: none), retried (bounded)
    /// while the coordinator loads.
    pub fn committed_offset(&mut self, group: &str, topic: &str) -> i64 {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        use kafka_protocol::messages::{
            GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName,
        };
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_indexes(vec![0])]));
        let deadline = std::time::Instant::now() + super::WAIT;
        loop {
            let r: OffsetFetchResponse = self.call(ApiKey::OffsetFetch, 7, &req);
            // While the coordinator loads, the answer is a top-level error with no topics.
            if r.error_code == 0 {
                let p = &r.topics[0].partitions[0];
                if p.error_code == 0 {
                    return p.committed_offset;
                }
            }
            assert!(std::time::Instant::now() < deadline, "OffsetFetch: {r:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An OffsetCommit (v8 fields) of `offset` for partition 0 of `topic` by `group` as a simple
/// consumer (generation -1, no member id).
pub fn offset_commit(
    group: &str,
    topic: &str,
    offset: i64,
) -> kafka_protocol::messages::OffsetCommitRequest {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])])
}

/// `body` with its 4-byte size in front.
fn framed(body: &[u8]) -> BytesMut {
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.put_slice(body);
    frame
}

/// A Produce request (v9, acks=1) of `records` to one partition.
pub fn produce_request(
    topic: &str,
    partition: i32,
    records: Bytes,
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// One plain RecordBatch v2 of these values (no producer id); `transactional` and `control`
/// set those attribute bits (a transactional batch gets producer id 7, epoch 0).
pub fn plain_batch(values: &[Vec<u8>], transactional: bool, control: bool) -> Bytes {
    let mut b = BatchBuilder::new()
        .transactional(transactional)
        .control(control);
    if transactional {
        b = b.producer(7, 0, 0);
    }
    for (i, v) in values.iter().enumerate() {
        b.push(
            None,
            Some(Bytes::from(v.clone())),
            1_700_000_000_000 + i as i64,
            &[],
        );
    }
    b.build().unwrap()
}

/// One RecordBatch v2 with `n` records for an idempotent producer.
pub fn idempotent_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    n: usize,
    tag: &str,
) -> Bytes {
    let mut b = BatchBuilder::new().producer(producer_id, epoch, base_sequence);
    for i in 0..n {
        let value = format!("{tag}-{}", base_sequence as usize + i);
        b.push(
            None,
            Some(Bytes::from(value)),
            1_700_000_000_000 + i as i64,
            &[],
        );
    }
    b.build().unwrap()
}
