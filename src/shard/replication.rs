//! Replication's driver on a shard: the leader's clock ([`leader_ticks`]) and the follower
//! fetchers that make this broker's follower replicas copy their leaders (see
//! `docs/architecture.md`, "Replication"). One fetcher per (leader broker, shard) batches
//! every partition the shard follows from that leader into one Kafka Fetch (v16, with
//! `ReplicaState`, `CurrentLeaderEpoch` and `LastFetchedEpoch`) on its own connection to the
//! leader's listener: followers are Kafka clients of their leader.
//!
//! Per answer and partition: a `DivergingEpoch` truncates the log to where it agrees with the
//! leader's (the pure rule in `crate::partition::replica`); records are appended as the leader
//! wrote them (`Log::append_replicated`); the leader's high watermark and log start follow.
//! The next fetch goes out once those appends are written (durable with `--flush always`), so
//! the offset it reports — this replica's position — is data this replica really holds.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use sluice_storage::{FlushPolicy, Notify};
use tracing::{debug, info, warn};

use super::peer::PeerConn;
use super::Shard;
use crate::partition::{Partition, PartitionKey};

/// The Fetch version followers speak (v15+ carries `ReplicaState`).
const FETCH_VERSION: i16 = 16;
/// Bytes per partition per fetch (Kafka's replica.fetch.max.bytes).
const PARTITION_MAX_BYTES: i32 = 1 << 20;
/// Bytes per fetch (Kafka's replica.fetch.response.max.bytes).
const RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// Largest answer accepted from a leader.
const FRAME_MAX: usize = 64 << 20;
/// Pause after a failed connection or a partition error, doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One followed partition.
#[derive(Clone)]
struct Followed {
    partition: Rc<Partition>,
    topic_id: [u8; 16],
    leader_epoch: i32,
    /// Not fetched again before this (ms), after an error for it.
    paused_until: i64,
}

/// The fetcher of one leader on this shard.
struct Fetcher {
    leader: i32,
    partitions: RefCell<BTreeMap<PartitionKey, Followed>>,
    changed: Notify,
    stopped: Cell<bool>,
}

/// This shard's fetchers, by leader broker.
#[derive(Default)]
pub struct Fetchers {
    by_leader: RefCell<HashMap<i32, Rc<Fetcher>>>,
}

/// A partition to follow: from which leader, at which leader epoch.
pub struct Follow {
    pub partition: Rc<Partition>,
    pub topic_id: [u8; 16],
    pub leader: i32,
    pub leader_epoch: i32,
}

impl Fetchers {
    /// Follows exactly `followed` from now: partitions move between fetchers when their leader
    /// changes; fetchers left with nothing stop.
    pub fn update(&self, shard: &Rc<Shard>, followed: Vec<Follow>) {
        let mut wanted: HashMap<i32, BTreeMap<PartitionKey, Follow>> = HashMap::new();
        for f in followed {
            let key = (f.partition.topic.clone(), f.partition.index);
            wanted.entry(f.leader).or_default().insert(key, f);
        }
        let mut all = self.by_leader.borrow_mut();
        all.retain(|leader, f| {
            let keep = wanted.contains_key(leader);
            if !keep {
                f.stopped.set(true);
                f.changed.notify_all();
            }
            keep
        });
        for (leader, parts) in wanted {
            let f = all.entry(leader).or_insert_with(|| {
                let f = Rc::new(Fetcher {
                    leader,
                    partitions: RefCell::new(BTreeMap::new()),
                    changed: Notify::default(),
                    stopped: Cell::new(false),
                });
                crate::runtime::spawn(run(shard.clone(), f.clone())).detach();
                f
            });
            let mut mine = f.partitions.borrow_mut();
            mine.retain(|k, v| {
                parts.get(k).is_some_and(|w| {
                    Rc::ptr_eq(&w.partition, &v.partition) && w.leader_epoch == v.leader_epoch
                })
            });
            for (k, w) in parts {
                mine.entry(k).or_insert(Followed {
                    partition: w.partition,
                    topic_id: w.topic_id,
                    leader_epoch: w.leader_epoch,
                    paused_until: 0,
                });
            }
            drop(mine);
            f.changed.notify_all();
        }
    }

    /// Stops every fetcher (shutdown).
    pub fn stop_all(&self) {
        for (_, f) in self.by_leader.borrow_mut().drain() {
            f.stopped.set(true);
            f.changed.notify_all();
        }
    }
}

/// A fetcher's life: connect to the leader, fetch, apply, repeat, until stopped.
async fn run(shard: Rc<Shard>, f: Rc<Fetcher>) {
    let mut backoff = BACKOFF_MIN;
    let mut conn: Option<PeerConn> = None;
    let mut correlation = 0i32;
    // The last connection error logged as a warning: a refused login or a certificate that
    // does not verify is the operator's to fix, said once rather than at every retry.
    let mut warned: Option<String> = None;
    debug!(
        leader = f.leader,
        shard = shard.id,
        "follower fetcher started"
    );
    while !f.stopped.get() && !shard.shutting_down.get() {
        if f.partitions.borrow().is_empty() {
            let _ = crate::runtime::timeout(Duration::from_secs(1), f.changed.notified()).await;
            continue;
        }
        let stream = match conn.take() {
            Some(s) => s,
            None => match super::peer::connect_to(&shard, f.leader, CONNECT_TIMEOUT).await {
                Ok(s) => s,
                Err(e) => {
                    let text = e.to_string();
                    let misconfigured = matches!(
                        e.kind(),
                        io::ErrorKind::PermissionDenied
                            | io::ErrorKind::InvalidData
                            | io::ErrorKind::InvalidInput
                    );
                    if misconfigured && warned.as_deref() != Some(text.as_str()) {
                        warn!(leader = f.leader, error = %e, "cannot log in to the leader; retrying");
                        warned = Some(text);
                    } else {
                        debug!(leader = f.leader, error = %e, "cannot reach the leader; retrying");
                    }
                    pause(&f, &mut backoff).await;
                    continue;
                }
            },
        };
        correlation = correlation.wrapping_add(1);
        match fetch_once(&shard, &f, stream, correlation).await {
            Ok(Some(s)) => {
                conn = Some(s);
                backoff = BACKOFF_MIN;
                warned = None;
            }
            Ok(None) => debug!(
                leader = f.leader,
                "followed partitions changed; fetching anew"
            ),
            Err(e) => {
                info!(leader = f.leader, error = %e, "fetch from the leader failed; reconnecting");
                pause(&f, &mut backoff).await;
            }
        }
    }
    debug!(
        leader = f.leader,
        shard = shard.id,
        "follower fetcher stopped"
    );
}

async fn pause(f: &Fetcher, backoff: &mut Duration) {
    let _ = crate::runtime::timeout(*backoff, f.changed.notified()).await;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}

/// One fetch round on `stream`; the stream back if it can be reused, `None` if the round was
/// abandoned because the followed partitions changed.
async fn fetch_once(
    shard: &Rc<Shard>,
    f: &Rc<Fetcher>,
    mut stream: PeerConn,
    correlation: i32,
) -> io::Result<Option<PeerConn>> {
    let now = crate::util::now_ms();
    let sent: Vec<(PartitionKey, Followed)> = f
        .partitions
        .borrow()
        .iter()
        .filter(|(_, v)| v.paused_until <= now)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if sent.is_empty() {
        let _ = crate::runtime::timeout(BACKOFF_MIN, f.changed.notified()).await;
        return Ok(Some(stream));
    }
    let wait_ms = shard.config.args.replica_fetch_wait_max_ms;
    let request = build_request(shard, &sent, wait_ms as i32);
    let frame = super::peer::encode(ApiKey::Fetch, FETCH_VERSION, correlation, &request)?;
    // A change of the followed set (a new leader to copy from) must not wait for the leader's
    // long poll to end: the fetch is abandoned with its connection, and the next one names
    // the new set at once.
    let changed = f.changed.notified();
    let exchange = crate::runtime::timeout(
        Duration::from_millis(wait_ms) + Duration::from_secs(10),
        async {
            stream.send(frame).await?;
            read_response(&mut stream, correlation).await
        },
    );
    let answer = match futures_util::future::select(Box::pin(exchange), changed).await {
        futures_util::future::Either::Left((r, _)) => {
            r.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "fetch timed out"))??
        }
        futures_util::future::Either::Right(_) => return Ok(None),
    };
    if answer.error_code != 0 {
        return Err(io::Error::other(format!(
            "fetch refused with error {}",
            answer.error_code
        )));
    }
    apply_response(f, &sent, answer).await;
    Ok(Some(stream))
}

fn build_request(shard: &Shard, sent: &[(PartitionKey, Followed)], wait_ms: i32) -> FetchRequest {
    let epoch = shard
        .shared
        .status()
        .and_then(|s| s.broker_epoch)
        .map_or(-1, |e| e as i64);
    let mut topics: BTreeMap<[u8; 16], Vec<FetchPartition>> = BTreeMap::new();
    for (_, v) in sent {
        let log = &v.partition.log;
        topics.entry(v.topic_id).or_default().push(
            FetchPartition::default()
                .with_partition(v.partition.index)
                .with_current_leader_epoch(v.leader_epoch)
                .with_fetch_offset(log.log_end_offset())
                .with_last_fetched_epoch(log.latest_epoch())
                .with_log_start_offset(log.log_start_offset())
                .with_partition_max_bytes(PARTITION_MAX_BYTES),
        );
    }
    FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(shard.config.args.node_id))
                .with_replica_epoch(epoch),
        )
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(id, partitions)| {
                    FetchTopic::default()
                        .with_topic_id(crate::util::uuid(&id))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

async fn read_response(stream: &mut PeerConn, correlation: i32) -> io::Result<FetchResponse> {
    decode_fetch_answer(stream.read_frame(FRAME_MAX).await?, correlation)
}

/// A leader's Fetch answer (the frame after its size) to request `correlation`: an error for
/// anything malformed, never a panic (bytes from another process; fuzzed by
/// `fuzz/fuzz_targets/replica_fetch_answer.rs`). Record batches are checked when appended.
pub fn decode_fetch_answer(body: Bytes, correlation: i32) -> io::Result<FetchResponse> {
    super::peer::decode_answer(body, ApiKey::Fetch, FETCH_VERSION, correlation)
}

/// Applies the leader's answer to the partitions it names (those still followed at the same
/// epoch), then waits until what was appended counts as this replica's.
async fn apply_response(f: &Rc<Fetcher>, sent: &[(PartitionKey, Followed)], resp: FetchResponse) {
    let by_id: HashMap<([u8; 16], i32), &Followed> = sent
        .iter()
        .map(|(_, v)| ((v.topic_id, v.partition.index), v))
        .collect();
    let mut waits = Vec::new();
    let mut paused = Vec::new();
    let now = crate::util::now_ms();
    for t in resp.responses {
        let topic_id = *t.topic_id.as_bytes();
        for pd in t.partitions {
            let Some(v) = by_id.get(&(topic_id, pd.partition_index)) else {
                continue;
            };
            let p = &v.partition;
            if p.following() != Some((f.leader, v.leader_epoch)) {
                continue; // the role changed meanwhile
            }
            if pd.error_code != 0 {
                let error = ResponseError::try_from_code(pd.error_code);
                debug!(topic = %p.topic, partition = p.index, ?error, "follower fetch error");
                paused.push((p.topic.clone(), p.index));
                continue;
            }
            let log = &p.log;
            if pd.diverging_epoch.epoch >= 0 || pd.diverging_epoch.end_offset >= 0 {
                let diverging = (pd.diverging_epoch.epoch, pd.diverging_epoch.end_offset);
                let local = log.end_offset_for_epoch(diverging.0);
                let to = crate::partition::replica::truncation_offset(
                    diverging,
                    local,
                    log.log_end_offset(),
                    log.log_start_offset(),
                );
                info!(topic = %p.topic, partition = p.index, ?diverging, truncate_to = to, log_end = log.log_end_offset(), "log diverges from the leader's: truncating");
                if let Err(e) = p.truncate_as_follower(f.leader, v.leader_epoch, to).await {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "truncation failed");
                    paused.push((p.topic.clone(), p.index));
                }
                continue;
            }
            let records = pd.records.unwrap_or_default();
            if !records.is_empty() {
                match log.append_replicated(records, now) {
                    Ok(info) => waits.push((p.clone(), info)),
                    Err(e) => {
                        warn!(topic = %p.topic, partition = p.index, error = %e, "appending the leader's batches failed");
                        paused.push((p.topic.clone(), p.index));
                    }
                }
            }
            p.set_follower_hw(pd.high_watermark);
            if pd.log_start_offset > log.log_start_offset() {
                let to = pd.log_start_offset.min(log.written_offset());
                if to > log.log_start_offset() {
                    if let Err(e) = log.delete_records_before(to).await {
                        warn!(topic = %p.topic, partition = p.index, error = %e, "following the leader's log start failed");
                    }
                }
            }
        }
    }
    if !paused.is_empty() {
        let until = now + BACKOFF_MAX.as_millis() as i64 / 2;
        let mut mine = f.partitions.borrow_mut();
        for k in paused {
            if let Some(v) = mine.get_mut(&k) {
                v.paused_until = until;
            }
        }
    }
    let always = |p: &Partition| p.log.config().flush == FlushPolicy::Always;
    let waits = waits.into_iter().map(|(p, info)| async move {
        let r = if always(&p) {
            p.log.wait_append_durable(&info).await
        } else {
            p.log.wait_append_written(&info).await
        };
        if let Err(e) = r {
            warn!(topic = %p.topic, partition = p.index, error = %e, "writing the leader's batches failed");
        }
    });
    futures_util::future::join_all(waits).await;
}

/// The leaders' clock on this shard (cluster mode): followers that lagged too long leave the
/// ISR, unanswered ISR changes are asked again. Kafka checks every half
/// `replica.lag.time.max.ms`; this runs at least every second so retries are not late.
pub async fn leader_ticks(shard: Rc<Shard>) {
    let period =
        Duration::from_millis((shard.config.args.replica_lag_time_max_ms / 2).clamp(5, 1000));
    while !shard.shutting_down.get() {
        crate::runtime::sleep(period).await;
        for p in shard.partitions() {
            if let Some(change) = p.tick() {
                super::controller::alter_isr(&shard, &p, change);
            }
        }
    }
    shard.fetchers.stop_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::fetch::{
        encode_fetch_response, FetchPartitionOut, FetchResponseOut, FetchTopicOut,
    };

    /// A leader's answer as the broker encodes it, without its size prefix.
    fn answer(correlation: i32) -> Vec<u8> {
        let resp = FetchResponseOut {
            topics: vec![FetchTopicOut {
                name: "t".into(),
                topic_id: [7; 16],
                partitions: vec![FetchPartitionOut {
                    partition_index: 0,
                    high_watermark: 5,
                    last_stable_offset: 5,
                    log_start_offset: 0,
                    records: vec![Bytes::from_static(b"not a batch, checked on append")],
                    diverging_epoch: Some((3, 4)),
                    ..Default::default()
                }],
            }],
            ..Default::default()
        };
        let frame: Vec<u8> = encode_fetch_response(FETCH_VERSION, correlation, &resp)
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect();
        frame[4..].to_vec()
    }

    #[test]
    fn leader_answers_decode_and_malformed_ones_are_errors() {
        let good = answer(9);
        let r = decode_fetch_answer(Bytes::from(good.clone()), 9).expect("decodes");
        let p = &r.responses[0].partitions[0];
        assert_eq!(
            (
                p.high_watermark,
                p.diverging_epoch.epoch,
                p.diverging_epoch.end_offset
            ),
            (5, 3, 4)
        );
        assert!(
            decode_fetch_answer(Bytes::from(good.clone()), 8).is_err(),
            "another request's answer"
        );
        for cut in 0..good.len() {
            assert!(
                decode_fetch_answer(Bytes::copy_from_slice(&good[..cut]), 9).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_fetch_answer(Bytes::from(trailing), 9).is_err());
        let mut rng = sluice_base::Rng::new(0x5eed);
        for _ in 0..5_000 {
            let m = rng.mutate(&good, 8);
            let _ = decode_fetch_answer(Bytes::from(m), 9);
        }
    }
}
