//! The do-nothing Kafka sink behind `sluice-sink`: the client's ceiling in a benchmark.
//!
//! Owns: an in-memory broker that does the least a Kafka client needs to run at full speed —
//! Produce is answered at once (offsets assigned, nothing written anywhere, no CRC check), Fetch
//! is served from the batches kept in memory (zero-copy: the request bytes themselves, with the
//! base offset rewritten in an 8-byte piece of their own), ListOffsets, Metadata (one broker:
//! itself), CreateTopics, InitProducerId (idempotent producers; no transactions) and
//! FindCoordinator (itself). Groups (`subscribe`), transactions and everything else are not
//! served: the sink advertises only what it serves, so a client fails clearly.
//!
//! Bounds: the batches kept, over all partitions, are bounded by `memory_bytes`: once over it,
//! each append drops the oldest batches of the partition it appends to (its log start moves, as
//! retention would). A partition may hold more than an even share (librdkafka's sticky
//! partitioner gave one of 100 partitions 3× the average), so nothing is dropped below the bound. A Fetch waits at most `FETCH_WAIT_MAX`.
//!
//! Must not: touch disks, or do work a client would not see — it is the yardstick Sluice's
//! numbers are divided by (BENCHMARKS.md, issue 21).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sluice_net::fetch::{
    encode_fetch_response, FetchPartitionOut, FetchResponseOut, FetchTopicOut,
};
use sluice_net::kafka_protocol::messages::api_versions_response::ApiVersion;
use sluice_net::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use sluice_net::kafka_protocol::messages::find_coordinator_response::Coordinator;
use sluice_net::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use sluice_net::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_net::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use sluice_net::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ProducerId, RequestKind, ResponseKind, TopicName,
};
use sluice_net::kafka_protocol::protocol::StrBytes;
use sluice_net::kafka_protocol::ResponseError;
use sluice_net::{
    api_versions_table, decode_request, encode_response, unsupported_api_versions, DecodeError,
    ResponseFrame,
};
use sluice_storage::BatchHeader;

/// The APIs the sink serves (at the versions Sluice serves them).
const SERVED: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::InitProducerId,
    ApiKey::FindCoordinator,
];
/// Longest a Fetch waits for data, whatever the client asks.
pub const FETCH_WAIT_MAX: Duration = Duration::from_secs(30);
/// Most partitions one topic may have.
const PARTITIONS_MAX: i32 = 10_000;
/// Kafka's longest topic name.
const TOPIC_NAME_MAX: usize = 249;
/// The sink's node id.
const NODE_ID: i32 = 0;

/// How the sink runs.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Host and port the sink names as itself in Metadata and FindCoordinator.
    pub host: String,
    pub port: i32,
    /// Partitions of a topic created by Metadata's auto-creation or CreateTopics with -1.
    pub default_partitions: i32,
    /// Bytes of batches kept for Fetch, over all partitions.
    pub memory_bytes: usize,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Reply {
    /// Write this response.
    Frame(ResponseFrame),
    /// Nothing to write (Produce with acks=0).
    Nothing,
    /// Close the connection, for this reason.
    Close(String),
}

/// One produced batch, kept for Fetch: its base offset (8 bytes of its own, as assigned) and the
/// rest of the batch as the client sent it.
struct Stored {
    next: i64,
    head: Bytes,
    rest: Bytes,
}

impl Stored {
    fn len(&self) -> usize {
        self.head.len() + self.rest.len()
    }
}

#[derive(Default)]
struct Partition {
    batches: VecDeque<Stored>,
    start: i64,
    end: i64,
    bytes: usize,
}

struct Topic {
    name: String,
    id: [u8; 16],
    partitions: Vec<Mutex<Partition>>,
}

#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<[u8; 16], Arc<Topic>>,
}

/// The sink's state, shared by every connection thread.
pub struct Sink {
    cfg: SinkConfig,
    topics: RwLock<Topics>,
    /// Counts appends; Fetch waits on `arrived` for it to move.
    appended: Mutex<u64>,
    arrived: Condvar,
    next_producer_id: AtomicI64,
    topic_ids: AtomicI64,
    /// Bytes of batches kept, over all partitions.
    kept: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn uuid(id: &[u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(*id)
}

impl Sink {
    pub fn new(cfg: SinkConfig) -> Sink {
        Sink {
            cfg,
            topics: RwLock::new(Topics::default()),
            appended: Mutex::new(0),
            arrived: Condvar::new(),
            next_producer_id: AtomicI64::new(1000),
            topic_ids: AtomicI64::new(1),
            kept: AtomicUsize::new(0),
        }
    }

    /// Answers one request frame (its body, without the size prefix).
    pub fn handle(&self, frame: Bytes) -> Reply {
        let req = match decode_request(frame) {
            Ok(r) => r,
            Err(DecodeError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => return api_versions_unsupported(correlation_id),
            Err(e) => return Reply::Close(e.to_string()),
        };
        if !SERVED.contains(&req.api_key) {
            return Reply::Close(format!("{:?} is not served by the sink", req.api_key));
        }
        let body = match req.body {
            RequestKind::ApiVersions(_) => {
                ResponseKind::ApiVersions(ApiVersionsResponse::default().with_api_keys(table()))
            }
            RequestKind::Metadata(r) => ResponseKind::Metadata(self.metadata(r, req.api_version)),
            RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(self.create_topics(r)),
            RequestKind::Produce(r) => {
                let acks = r.acks;
                let resp = self.produce(r);
                if acks == 0 {
                    return Reply::Nothing;
                }
                ResponseKind::Produce(resp)
            }
            RequestKind::Fetch(r) => {
                let out = self.fetch(&r, req.api_version);
                return Reply::Frame(encode_fetch_response(
                    req.api_version,
                    req.correlation_id,
                    &out,
                ));
            }
            RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(self.list_offsets(r)),
            RequestKind::InitProducerId(_) => ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(
                        self.next_producer_id.fetch_add(1, Ordering::Relaxed),
                    ))
                    .with_producer_epoch(0),
            ),
            RequestKind::FindCoordinator(r) => {
                ResponseKind::FindCoordinator(self.find_coordinator(r, req.api_version))
            }
            other => return Reply::Close(format!("{other:?} is not served by the sink")),
        };
        match encode_response(req.api_key, req.api_version, req.correlation_id, &body) {
            Ok(frame) => Reply::Frame(frame),
            Err(e) => Reply::Close(e.to_string()),
        }
    }

    fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        topics.by_name.get(name).cloned()
    }

    fn topic_by_id(&self, id: &[u8; 16]) -> Option<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        topics.by_id.get(id).cloned()
    }

    /// Creates `name` with `partitions`; Err(error code) if it exists or is not allowed.
    fn create(&self, name: &str, partitions: i32) -> Result<Arc<Topic>, ResponseError> {
        let partitions = if partitions == -1 {
            self.cfg.default_partitions
        } else {
            partitions
        };
        if name.is_empty()
            || name.len() > TOPIC_NAME_MAX
            || name == "."
            || name == ".."
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
        {
            return Err(ResponseError::InvalidTopicException);
        }
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(ResponseError::InvalidPartitions);
        }
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if topics.by_name.contains_key(name) {
            return Err(ResponseError::TopicAlreadyExists);
        }
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&self.topic_ids.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        id[0] = 0x5a; // never the all-zero "no id"
        let topic = Arc::new(Topic {
            name: name.to_owned(),
            id,
            partitions: (0..partitions)
                .map(|_| Mutex::new(Partition::default()))
                .collect(),
        });
        topics.by_name.insert(name.to_owned(), topic.clone());
        topics.by_id.insert(id, topic.clone());
        Ok(topic)
    }

    fn metadata(&self, req: MetadataRequest, version: i16) -> MetadataResponse {
        let auto_create = version < 4 || req.allow_auto_topic_creation;
        // v0 asks for every topic with an empty list, later versions with none.
        let wanted = req.topics.filter(|t| version > 0 || !t.is_empty());
        let topics: Vec<MetadataResponseTopic> = match wanted {
            None => {
                let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
                let mut all: Vec<_> = topics.by_name.values().cloned().collect();
                all.sort_by(|a, b| a.name.cmp(&b.name));
                all.iter().map(|t| topic_metadata(t)).collect()
            }
            Some(wanted) => wanted
                .iter()
                .map(|w| {
                    let found = match &w.name {
                        Some(name) => self.topic(name.as_str()).map(Ok).unwrap_or_else(|| {
                            if auto_create {
                                match self.create(name.as_str(), -1) {
                                    Err(ResponseError::TopicAlreadyExists) => self
                                        .topic(name.as_str())
                                        .ok_or(ResponseError::UnknownTopicOrPartition),
                                    other => other,
                                }
                            } else {
                                Err(ResponseError::UnknownTopicOrPartition)
                            }
                        }),
                        None => self
                            .topic_by_id(w.topic_id.as_bytes())
                            .ok_or(ResponseError::UnknownTopicId),
                    };
                    match found {
                        Ok(t) => topic_metadata(&t),
                        Err(e) => MetadataResponseTopic::default()
                            .with_error_code(e.code())
                            .with_name(w.name.clone())
                            .with_topic_id(w.topic_id),
                    }
                })
                .collect(),
        };
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(NODE_ID))
                .with_host(sb(&self.cfg.host))
                .with_port(self.cfg.port)])
            .with_cluster_id(Some(sb("sluice-sink")))
            .with_controller_id(BrokerId(NODE_ID))
            .with_topics(topics)
    }

    fn create_topics(&self, req: CreateTopicsRequest) -> CreateTopicsResponse {
        let topics = req
            .topics
            .iter()
            .map(|t| {
                let result = CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_replication_factor(1);
                let made = if req.validate_only {
                    match self.topic(t.name.as_str()) {
                        Some(_) => Err(ResponseError::TopicAlreadyExists),
                        None => Ok(None),
                    }
                } else {
                    self.create(t.name.as_str(), t.num_partitions).map(Some)
                };
                match made {
                    Ok(Some(topic)) => result
                        .with_topic_id(uuid(&topic.id))
                        .with_num_partitions(topic.partitions.len() as i32),
                    Ok(None) => result.with_num_partitions(t.num_partitions),
                    Err(e) => result.with_error_code(e.code()).with_num_partitions(-1),
                }
            })
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    }

    fn produce(&self, req: ProduceRequest) -> ProduceResponse {
        let mut appended = false;
        let responses = req
            .topic_data
            .into_iter()
            .map(|t| {
                let topic = self.topic(t.name.as_str());
                let partitions = t
                    .partition_data
                    .into_iter()
                    .map(|p| {
                        let out = PartitionProduceResponse::default().with_index(p.index);
                        let Some(part) = topic
                            .as_ref()
                            .and_then(|topic| topic.partitions.get(p.index as usize))
                        else {
                            return out
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                                .with_base_offset(-1);
                        };
                        let records = p.records.unwrap_or_default();
                        let mut part = lock(part);
                        match append(&mut part, &records, &self.kept, self.cfg.memory_bytes) {
                            Ok(base) => {
                                appended = true;
                                out.with_base_offset(base)
                                    .with_log_append_time_ms(-1)
                                    .with_log_start_offset(part.start)
                            }
                            Err(e) => out.with_error_code(e.code()).with_base_offset(-1),
                        }
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(t.name)
                    .with_partition_responses(partitions)
            })
            .collect();
        if appended {
            *lock(&self.appended) += 1;
            self.arrived.notify_all();
        }
        ProduceResponse::default().with_responses(responses)
    }

    fn fetch(&self, req: &FetchRequest, version: i16) -> FetchResponseOut {
        let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MAX);
        let deadline = Instant::now() + wait;
        let min_bytes = req.min_bytes.max(1) as usize;
        loop {
            let seen = *lock(&self.appended);
            let (out, bytes, failed) = self.fetch_once(req, version);
            if bytes >= min_bytes || failed {
                return out;
            }
            let mut appended = lock(&self.appended);
            while *appended == seen {
                let now = Instant::now();
                if now >= deadline {
                    return out;
                }
                appended = self
                    .arrived
                    .wait_timeout(appended, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }

    /// One pass over the requested partitions: the response, its record bytes and whether a
    /// partition had an error (answered at once, as Kafka does).
    fn fetch_once(&self, req: &FetchRequest, version: i16) -> (FetchResponseOut, usize, bool) {
        let mut total = 0usize;
        let mut failed = false;
        let max_bytes = req.max_bytes.max(1) as usize;
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let topic = if version >= 13 {
                self.topic_by_id(t.topic_id.as_bytes())
            } else {
                self.topic(t.topic.as_str())
            };
            let unknown = if version >= 13 {
                ResponseError::UnknownTopicId
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let mut out = FetchPartitionOut {
                    partition_index: p.partition,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    ..FetchPartitionOut::default()
                };
                let part = topic
                    .as_ref()
                    .and_then(|topic| topic.partitions.get(p.partition as usize));
                match part {
                    None => {
                        out.error_code = unknown.code();
                        failed = true;
                    }
                    Some(part) => {
                        let part = lock(part);
                        out.high_watermark = part.end;
                        out.last_stable_offset = part.end;
                        out.log_start_offset = part.start;
                        if p.fetch_offset < part.start || p.fetch_offset > part.end {
                            out.error_code = ResponseError::OffsetOutOfRange.code();
                            failed = true;
                        } else {
                            let limit = (p.partition_max_bytes.max(1) as usize)
                                .min(max_bytes.saturating_sub(total));
                            let from = part.batches.partition_point(|b| b.next <= p.fetch_offset);
                            let mut taken = 0usize;
                            for b in part.batches.range(from..) {
                                // The first batch of the response goes out whatever its size,
                                // as in Kafka, so a client can always make progress.
                                if taken + b.len() > limit && (taken > 0 || total > 0) {
                                    break;
                                }
                                taken += b.len();
                                out.records.push(b.head.clone());
                                out.records.push(b.rest.clone());
                            }
                            total += taken;
                        }
                    }
                }
                partitions.push(out);
            }
            topics.push(FetchTopicOut {
                name: t.topic.as_str().to_owned(),
                topic_id: *t.topic_id.as_bytes(),
                partitions,
            });
        }
        let out = FetchResponseOut {
            topics,
            ..FetchResponseOut::default()
        };
        (out, total, failed)
    }

    fn list_offsets(&self, req: ListOffsetsRequest) -> ListOffsetsResponse {
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let topic = self.topic(t.name.as_str());
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let out = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1);
                        match topic
                            .as_ref()
                            .and_then(|topic| topic.partitions.get(p.partition_index as usize))
                        {
                            None => out
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                                .with_offset(-1),
                            Some(part) => {
                                let part = lock(part);
                                // -1 latest, -3 max timestamp: the end. -2 earliest and any
                                // time (the sink keeps no time index): the log start.
                                let offset = match p.timestamp {
                                    -1 | -3 => part.end,
                                    _ => part.start,
                                };
                                out.with_offset(offset).with_leader_epoch(0)
                            }
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }

    fn find_coordinator(
        &self,
        req: FindCoordinatorRequest,
        version: i16,
    ) -> FindCoordinatorResponse {
        if version < 4 {
            return FindCoordinatorResponse::default()
                .with_node_id(BrokerId(NODE_ID))
                .with_host(sb(&self.cfg.host))
                .with_port(self.cfg.port);
        }
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(NODE_ID))
                    .with_host(sb(&self.cfg.host))
                    .with_port(self.cfg.port)
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    }
}

fn topic_metadata(t: &Topic) -> MetadataResponseTopic {
    let partitions = (0..t.partitions.len() as i32)
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(&t.name))))
        .with_topic_id(uuid(&t.id))
        .with_partitions(partitions)
}

/// Assigns offsets to the batches of `records` and keeps them; the base offset of the first.
/// Only the batch headers are read (no CRC: a client's ceiling is measured, not a broker's
/// checks). Then, while all partitions together keep more than `cap` bytes (`kept`), drops
/// this partition's oldest batches.
fn append(
    part: &mut Partition,
    records: &Bytes,
    kept: &AtomicUsize,
    cap: usize,
) -> Result<i64, ResponseError> {
    let mut spans = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let h = BatchHeader::parse(&records[pos..]).map_err(|_| ResponseError::CorruptMessage)?;
        let size = h.total_size();
        if records.len() - pos < size {
            return Err(ResponseError::CorruptMessage);
        }
        spans.push((pos, size, i64::from(h.last_offset_delta) + 1));
        pos += size;
    }
    if spans.is_empty() {
        return Err(ResponseError::CorruptMessage);
    }
    let base = part.end;
    for (pos, size, count) in spans {
        let mut head = BytesMut::with_capacity(8);
        head.put_i64(part.end);
        part.end += count;
        part.batches.push_back(Stored {
            next: part.end,
            head: head.freeze(),
            rest: records.slice(pos + 8..pos + size),
        });
        part.bytes += size;
        kept.fetch_add(size, Ordering::Relaxed);
    }
    while kept.load(Ordering::Relaxed) > cap && part.batches.len() > 1 {
        if let Some(old) = part.batches.pop_front() {
            part.bytes -= old.len();
            kept.fetch_sub(old.len(), Ordering::Relaxed);
            part.start = old.next;
        }
    }
    Ok(base)
}

fn table() -> Vec<ApiVersion> {
    api_versions_table(|key| SERVED.contains(&key))
}

/// ApiVersions at a version the sink lacks: a v0 body with UNSUPPORTED_VERSION and the table.
fn api_versions_unsupported(correlation_id: i32) -> Reply {
    match unsupported_api_versions(correlation_id, table()) {
        Some(frame) => Reply::Frame(frame),
        None => Reply::Close("cannot encode ApiVersions".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::records::BatchBuilder;

    fn batch(n: usize) -> Bytes {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b = b.record(None, Some(Bytes::from(format!("v{i}"))), 0, &[]);
        }
        b.build().unwrap()
    }

    fn two(a: &Bytes, b: &Bytes) -> Bytes {
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        Bytes::from(v)
    }

    #[test]
    fn append_assigns_offsets_and_keeps_the_batches() {
        let mut p = Partition::default();
        let kept = AtomicUsize::new(0);
        assert_eq!(append(&mut p, &batch(3), &kept, usize::MAX), Ok(0));
        assert_eq!(
            append(&mut p, &two(&batch(2), &batch(5)), &kept, usize::MAX),
            Ok(3)
        );
        assert_eq!(kept.load(Ordering::Relaxed), p.bytes);
        assert_eq!((p.start, p.end, p.batches.len()), (0, 10, 3));
        let bases: Vec<i64> = p
            .batches
            .iter()
            .map(|b| i64::from_be_bytes(b.head[..].try_into().unwrap()))
            .collect();
        assert_eq!(bases, vec![0, 3, 5]);
        // Each kept batch is the client's batch with its base offset replaced.
        let mut whole = p.batches[1].head.to_vec();
        whole.extend_from_slice(&p.batches[1].rest);
        let h = BatchHeader::parse(&whole).unwrap();
        assert_eq!((h.base_offset, h.records_count), (3, 2));
        h.verify_crc(&whole).unwrap();
    }

    #[test]
    fn append_drops_the_oldest_batches_beyond_the_budget() {
        let (mut p, mut q) = (Partition::default(), Partition::default());
        let kept = AtomicUsize::new(0);
        let b = batch(4);
        // Under the bound one partition may hold it all ...
        for _ in 0..3 {
            append(&mut p, &b, &kept, 3 * b.len()).unwrap();
        }
        assert_eq!((p.start, p.batches.len()), (0, 3));
        // ... over it, each append drops the oldest of its own partition.
        for _ in 0..10 {
            append(&mut q, &b, &kept, 3 * b.len()).unwrap();
        }
        assert_eq!((p.start, p.batches.len()), (0, 3));
        assert_eq!((q.start, q.end, q.batches.len()), (36, 40, 1));
        assert_eq!(kept.load(Ordering::Relaxed), p.bytes + q.bytes);
    }

    #[test]
    fn malformed_record_sets_are_refused_and_change_nothing() {
        let good = batch(2);
        let mut p = Partition::default();
        let truncated = good.slice(..good.len() - 1);
        let mut bad_magic = good.to_vec();
        bad_magic[16] = 1;
        let mut negative_length = good.to_vec();
        negative_length[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        let garbage_after = two(&good, &Bytes::from_static(&[1, 2, 3]));
        for bad in [
            Bytes::new(),
            truncated,
            Bytes::from(bad_magic),
            Bytes::from(negative_length),
            garbage_after,
            Bytes::from_static(&[0xff; 70]),
        ] {
            assert_eq!(
                append(&mut p, &bad, &AtomicUsize::new(0), usize::MAX),
                Err(ResponseError::CorruptMessage)
            );
        }
        assert_eq!((p.end, p.batches.len(), p.bytes), (0, 0, 0));
    }

    #[test]
    fn hostile_frames_close_the_connection_without_panicking() {
        let sink = Sink::new(SinkConfig {
            host: "127.0.0.1".into(),
            port: 9092,
            default_partitions: 1,
            memory_bytes: 1 << 20,
        });
        let frames: [&[u8]; 4] = [
            &[],
            &[0, 0, 0, 1],
            &[0x7f, 0x7f, 0, 0, 0, 0, 0, 1],
            // JoinGroup v0: known to Kafka, not served by the sink.
            &[0, 11, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0, 0],
        ];
        for f in frames {
            assert!(
                matches!(sink.handle(Bytes::copy_from_slice(f)), Reply::Close(_)),
                "{f:?}"
            );
        }
    }
}
