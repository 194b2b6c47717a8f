//! The per-shard driver of the [`TxnCoordinator`]: the only place with I/O and time for
//! transactions (see docs/architecture.md §7.1).
//!
//! - Requests (already on the coordinator shard) get a [`ReqId`] and a one-shot channel; the
//!   coordinator's `Reply` action completes it.
//! - `Persist`: one record appended to its `__transaction_state` partition synchronously (log
//!   order = decision order), reported as `Persisted` in append order once committed
//!   (`internal_log.rs`).
//! - `AllocateProducerId`: a producer id from the controller's blocks.
//! - `WriteMarkers`: a commit or abort marker appended to each partition of the transaction on
//!   its owner shard (`ops::write_markers`) when this broker leads it, else sent to its leader
//!   as WriteTxnMarkers over the inter-broker listener (`peer::PeerConn`, a few idle
//!   connections kept per broker); reported as `MarkersWritten` with the partitions to retry.
//! - [`verify`] (KIP-890): a partition leader's question to a coordinator, here or on another
//!   broker (AddPartitionsToTxn v4 with `verify_only`), whether a producer added partitions to
//!   its transaction (part 1), or its request to add them (v5, part 2: transaction version 2).
//! - [`run`] (one task per shard) loads the state partitions this shard owns and leads once
//!   the topic exists (it is created on the first transaction coordinator lookup), unloads
//!   those it stops leading, and ticks the coordinator every [`TICK_MS`].
//!
//! Invariant: the coordinator's `RefCell` is never borrowed across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::coordinator::partition_for;
use crate::coordinator::txn::coordinator::{
    Action, Event, Reply, ReqId, Request, TxnConfig, TxnCoordinator, TxnSummary,
};
use crate::coordinator::txn::records::{decode_batches, encode_batch, TxnRecord};
use crate::coordinator::txn::{TICK_MS, TRANSACTION_STATE_TOPIC};
use crate::errors::commit_error;
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::internal_log::{read_whole_log, PersistQueue};
use crate::shard::peer::PeerConn;
use crate::shard::{MeshMsg, Shard};
use crate::util::now_ms;

/// How often the loaded partitions are compared with the ones this shard owns and leads.
const RECONCILE_MS: u64 = 100;
/// The WriteTxnMarkers version sent to other brokers (v1: flexible).
const WRITE_MARKERS_VERSION: i16 = 1;
/// Idle connections kept per broker for markers.
const MARKER_CONNS_PER_BROKER: usize = 2;
/// Connecting to another broker for markers gives up after this.
const MARKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A WriteTxnMarkers exchange with another broker gives up after this; the coordinator then
/// retries its partitions.
const MARKER_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest WriteTxnMarkers (or verification) answer accepted.
const MARKER_ANSWER_MAX: usize = 1 << 20;
/// The AddPartitionsToTxn version a leader verifies with (v4: batched, `verify_only`).
const VERIFY_VERSION: i16 = 4;
/// The AddPartitionsToTxn version a leader adds a partition with (v5: transaction version 2,
/// KIP-890 part 2).
const ADD_VERSION: i16 = 5;

/// What a partition leader asks the transaction coordinator before a producer's first
/// transactional batch opens its transaction in a partition (KIP-890).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnCheck {
    /// Part 1 (the classic protocol): did the producer add the partition?
    Verify,
    /// Part 2 (transaction version 2: Produce v12, TxnOffsetCommit v5, whose producers send
    /// no AddPartitionsToTxn / AddOffsetsToTxn): add the partition to its transaction.
    Add,
}
/// A verification exchange with another broker gives up after this; the producer is told
/// NOT_ENOUGH_REPLICAS and retries.
const VERIFY_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-shard transaction coordinator state (a field of [`Shard`]).
pub struct TxnDriver {
    coord: RefCell<TxnCoordinator>,
    waiters: RefCell<HashMap<ReqId, flume::Sender<Reply>>>,
    next_req: Cell<ReqId>,
    persists: PersistQueue,
    /// State partitions loaded (or loading), with the leader epoch they were loaded at.
    loaded: RefCell<BTreeMap<i32, i32>>,
    /// `__transaction_state` creation was asked for (once per process, unless it failed).
    pub topic_requested: Cell<bool>,
    /// Idle connections to other brokers for WriteTxnMarkers (cluster mode), by broker id.
    peers: RefCell<HashMap<i32, Vec<PeerConn>>>,
}

impl TxnDriver {
    pub fn new(config: &Config) -> TxnDriver {
        let args = &config.args;
        TxnDriver {
            coord: RefCell::new(TxnCoordinator::new(TxnConfig {
                max_timeout_ms: args.transaction_max_timeout_ms,
                id_expiration_ms: args.transactional_id_expiration_ms,
                ..TxnConfig::default()
            })),
            waiters: RefCell::new(HashMap::new()),
            next_req: Cell::new(1),
            persists: PersistQueue::default(),
            loaded: RefCell::new(BTreeMap::new()),
            topic_requested: Cell::new(false),
            peers: RefCell::new(HashMap::new()),
        }
    }

    /// Transactional ids this shard coordinates, for metrics.
    pub fn summaries(&self) -> Vec<TxnSummary> {
        self.coord.borrow().summaries()
    }

    /// Submits `request` to this shard's coordinator and waits for its reply.
    pub async fn request(shard: &Rc<Shard>, request: Request) -> Result<Reply, ResponseError> {
        let d = &shard.txns;
        let id = d.next_req.get();
        d.next_req.set(id + 1);
        let (tx, rx) = flume::bounded(1);
        d.waiters.borrow_mut().insert(id, tx);
        feed(shard, request.into_event(id));
        rx.recv_async()
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)
    }
}

/// Applies one event now and carries out the resulting actions.
fn feed(shard: &Rc<Shard>, event: Event) {
    let level = shard.transaction_version();
    let actions = {
        let mut coord = shard.txns.coord.borrow_mut();
        coord.set_transaction_version(level);
        coord.on_event(now_ms(), event)
    };
    for a in actions {
        execute(shard, a);
    }
}

fn execute(shard: &Rc<Shard>, action: Action) {
    match action {
        Action::Reply(id, reply) => {
            let tx = shard.txns.waiters.borrow_mut().remove(&id);
            if let Some(tx) = tx {
                let _ = tx.try_send(reply);
            }
        }
        Action::AllocateProducerId { token } => {
            let s = shard.clone();
            crate::runtime::spawn(async move {
                let result = on_controller(&s, ControllerOp::AllocateProducerId)
                    .await
                    .and_then(ControllerReply::producer_id)
                    .map_err(|e| e.error.code());
                feed(&s, Event::ProducerId { token, result });
            })
            .detach();
        }
        Action::Persist {
            partition,
            record,
            token,
        } => {
            let seq = shard.txns.persists.start(partition, Some(token));
            match append(shard, partition, &record) {
                Ok((part, info)) => {
                    let s = shard.clone();
                    crate::runtime::spawn(async move {
                        // As acks=all: durable on a single node, committed by the ISR in a
                        // cluster.
                        let error = match part.wait_acks(&info, -1).await {
                            Ok(()) => 0,
                            Err(crate::partition::AckError::Storage(e)) => commit_error(&e).code(),
                            Err(_) => ResponseError::NotCoordinator.code(),
                        };
                        persisted(&s, partition, seq, error);
                    })
                    .detach();
                }
                Err(e) => persisted(shard, partition, seq, e.code()),
            }
        }
        Action::WriteMarkers {
            token,
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            partitions,
        } => {
            let s = shard.clone();
            crate::runtime::spawn(async move {
                let marker = Marker {
                    producer_id,
                    producer_epoch,
                    commit,
                    coordinator_epoch,
                };
                debug!(
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    commit,
                    coordinator_epoch,
                    ?partitions,
                    "writing transaction markers"
                );
                let retry = write_markers(&s, marker, partitions).await;
                if !retry.is_empty() {
                    info!(
                        transactional_id,
                        producer_id,
                        partitions = ?&retry[..retry.len().min(8)],
                        count = retry.len(),
                        "transaction markers not written yet; retrying"
                    );
                }
                feed(&s, Event::MarkersWritten { token, retry });
            })
            .detach();
        }
    }
}

fn persisted(shard: &Rc<Shard>, partition: i32, seq: u64, error: i16) {
    for (token, error) in shard.txns.persists.finish(partition, seq, error) {
        if let Some(token) = token {
            feed(shard, Event::Persisted { token, error });
        }
    }
}

type AppendResult =
    Result<(Rc<crate::partition::Partition>, sluice_storage::AppendInfo), ResponseError>;

/// Appends `record` as one batch to state partition `partition` (synchronous).
fn append(shard: &Rc<Shard>, partition: i32, record: &TxnRecord) -> AppendResult {
    let part = shard
        .partition(TRANSACTION_STATE_TOPIC, partition)
        .filter(|p| p.is_leader(None))
        .ok_or(ResponseError::NotCoordinator)?;
    let now = now_ms();
    let batch = encode_batch(std::slice::from_ref(record), now).map_err(|e| {
        warn!(error = %e, "encoding a __transaction_state batch failed");
        ResponseError::UnknownServerError
    })?;
    let info = part.append(batch, now).map_err(|e| commit_error(&e))?;
    Ok((part, info))
}

/// A transaction marker to write: what `ops::write_markers` appends to each partition.
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Whether a marker write that failed with `error` is done anyway: the topic is gone, or a
/// newer producer epoch or coordinator took over (Kafka's coordinator drops these too).
pub fn marker_error_is_final(error: i16) -> bool {
    [
        ResponseError::UnknownTopicOrPartition,
        ResponseError::InvalidProducerEpoch,
        ResponseError::ProducerFenced,
        ResponseError::TransactionCoordinatorFenced,
    ]
    .iter()
    .any(|e| e.code() == error)
}

/// Writes `marker` to every partition: those this broker leads on their owner shards, the
/// others through a WriteTxnMarkers request to their leader (Kafka's coordinator-to-broker
/// call). Returns the partitions to retry: not written yet, and not refused for good.
async fn write_markers(
    shard: &Rc<Shard>,
    marker: Marker,
    partitions: Vec<(String, i32)>,
) -> Vec<(String, i32)> {
    let pending = |error: i16| error != 0 && !marker_error_is_final(error);
    let me = shard.config.args.node_id;
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let mut retry = Vec::new();
    let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    let image = shard.metadata();
    for (tp, error) in write_local_markers(shard, marker, partitions).await {
        if !pending(error) {
            continue;
        }
        debug!(topic = %tp.0, partition = tp.1, error, "marker not written here");
        let leader = image
            .topic(&tp.0)
            .and_then(|t| t.partitions.get(usize::try_from(tp.1).ok()?))
            .map(|p| p.leader)
            .filter(|l| error == not_leader && *l >= 0 && *l != me && shard.config.clustered());
        match leader {
            Some(l) => remote.entry(l).or_default().push(tp),
            None => retry.push(tp),
        }
    }
    let sends = remote.into_iter().map(|(leader, parts)| {
        let shard = shard.clone();
        async move {
            match remote_markers(&shard, leader, marker, &parts).await {
                Ok(written) => written
                    .into_iter()
                    .filter(|(_, e)| pending(*e))
                    .map(|(tp, e)| {
                        debug!(leader, topic = %tp.0, partition = tp.1, error = e, "marker refused by the leader");
                        tp
                    })
                    .collect(),
                Err(e) => {
                    info!(leader, error = %e, "WriteTxnMarkers to the partitions' leader failed; retrying");
                    parts
                }
            }
        }
    });
    for r in futures_util::future::join_all(sends).await {
        retry.extend(r);
    }
    retry
}

/// Sends `marker` for `parts` to broker `leader` as one WriteTxnMarkers request; the error
/// code it answers per partition (NOT_LEADER_OR_FOLLOWER for one it left out).
async fn remote_markers(
    shard: &Rc<Shard>,
    leader: i32,
    marker: Marker,
    parts: &[(String, i32)],
) -> std::io::Result<Vec<((String, i32), i16)>> {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(marker.producer_id))
            .with_producer_epoch(marker.producer_epoch)
            .with_transaction_result(marker.commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(crate::util::sb(t.to_owned())))
                            .with_partition_indexes(ps)
                    })
                    .collect(),
            )]);
    let answer: WriteTxnMarkersResponse = peer_call(
        shard,
        leader,
        (ApiKey::WriteTxnMarkers, WRITE_MARKERS_VERSION),
        &request,
        MARKER_CALL_TIMEOUT,
    )
    .await?;
    let mut codes: HashMap<(&str, i32), i16> = HashMap::new();
    for m in &answer.markers {
        for t in &m.topics {
            for p in &t.partitions {
                codes.insert((t.name.0.as_str(), p.partition_index), p.error_code);
            }
        }
    }
    Ok(parts
        .iter()
        .map(|(t, p)| {
            let code = codes
                .get(&(t.as_str(), *p))
                .copied()
                .unwrap_or(ResponseError::NotLeaderOrFollower.code());
            ((t.clone(), *p), code)
        })
        .collect())
}

/// One request to broker `to` and its answer, over an idle pooled connection or a new one
/// (kept for the next call if the exchange went well), within `within`.
async fn peer_call<Req, Resp>(
    shard: &Rc<Shard>,
    to: i32,
    (api, version): (kafka_protocol::messages::ApiKey, i16),
    request: &Req,
    within: Duration,
) -> std::io::Result<Resp>
where
    Req: kafka_protocol::protocol::Encodable,
    Resp: kafka_protocol::protocol::Decodable,
{
    let pooled = shard
        .txns
        .peers
        .borrow_mut()
        .get_mut(&to)
        .and_then(Vec::pop);
    let mut conn = match pooled {
        Some(c) => c,
        None => crate::shard::peer::connect_to(shard, to, MARKER_CONNECT_TIMEOUT).await?,
    };
    let answer: Resp =
        crate::runtime::timeout(within, conn.call(api, version, request, MARKER_ANSWER_MAX))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")
            })??;
    let mut peers = shard.txns.peers.borrow_mut();
    let idle = peers.entry(to).or_default();
    if idle.len() < MARKER_CONNS_PER_BROKER {
        idle.push(conn);
    }
    Ok(answer)
}

/// The question a partition leader asks before a producer's first transactional batch
/// there: `Add` for a transaction version 2 producer (always), `Verify` when
/// `--transaction-partition-verification-enable` is on, else none.
pub fn check_for(shard: &Shard, epoch_bump: bool) -> Option<TxnCheck> {
    if epoch_bump {
        Some(TxnCheck::Add)
    } else {
        shard
            .config
            .args
            .transaction_partition_verification_enable
            .then_some(TxnCheck::Verify)
    }
}

/// KIP-890: asks `transactional_id`'s coordinator whether `producer` (id, epoch) added `parts`
/// to its ongoing transaction ([`TxnCheck::Verify`]), or to add them ([`TxnCheck::Add`]). An
/// error code per partition, in order, as the coordinator answers AddPartitionsToTxn (NONE:
/// it did, or added them; TRANSACTION_ABORTABLE: it did not); COORDINATOR_NOT_AVAILABLE,
/// NOT_COORDINATOR or NETWORK_EXCEPTION when the coordinator cannot answer. With `forward`
/// false (a question another broker sent here) a coordinator elsewhere is NOT_COORDINATOR: a
/// question is never passed on, so brokers whose metadata disagree cannot bounce it between
/// them.
pub async fn verify(
    shard: &Rc<Shard>,
    transactional_id: &str,
    producer: (i64, i16),
    parts: Vec<(String, i32)>,
    check: TxnCheck,
    forward: bool,
) -> Vec<i16> {
    let all = |e: ResponseError, n: usize| vec![e.code(); n];
    let n = parts.len();
    let leader = match coordinator_of(shard, transactional_id) {
        Ok((_, leader)) => leader,
        Err(e) => return all(e, n),
    };
    let codes = if leader != shard.config.args.node_id && !forward {
        all(ResponseError::NotCoordinator, n)
    } else if leader == shard.config.args.node_id {
        let reply = call(shard, transactional_id, |partition| {
            Request::Add(crate::coordinator::txn::coordinator::AddRequest {
                transactional_id: transactional_id.to_owned(),
                partition,
                producer_id: producer.0,
                producer_epoch: producer.1,
                partitions: parts.clone(),
                verify_only: check == TxnCheck::Verify,
            })
        })
        .await;
        match reply {
            Ok(Reply::Add(results)) => results.into_iter().map(|(_, _, e)| e).collect(),
            Ok(_) => all(ResponseError::UnknownServerError, n),
            Err(e) => all(e, n),
        }
    } else {
        match remote_verify(shard, leader, transactional_id, producer, &parts, check).await {
            Ok(codes) => codes,
            Err(e) => {
                debug!(leader, error = %e, "verification with the coordinator failed");
                all(ResponseError::NetworkException, n)
            }
        }
    };
    if codes.len() == n {
        codes
    } else {
        all(ResponseError::UnknownServerError, n)
    }
}

/// Whether a [`verify`] answer means the coordinator could not answer (loading, moved,
/// unreachable, deciding the transaction): the writer is told to retry, not refused.
pub fn verification_unanswered(code: i16) -> bool {
    use ResponseError as E;
    matches!(
        ResponseError::try_from_code(code),
        Some(
            E::NetworkException
                | E::CoordinatorLoadInProgress
                | E::CoordinatorNotAvailable
                | E::NotCoordinator
                | E::ConcurrentTransactions
        )
    )
}

/// [`verify`] with the coordinator on broker `to`: one AddPartitionsToTxn request (v4 to
/// verify, v5 to add).
async fn remote_verify(
    shard: &Rc<Shard>,
    to: i32,
    transactional_id: &str,
    producer: (i64, i16),
    parts: &[(String, i32)],
    check: TxnCheck,
) -> std::io::Result<Vec<i16>> {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::{
        AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProducerId, TopicName,
        TransactionalId,
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(crate::util::sb(
                transactional_id.to_owned(),
            )))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_verify_only(check == TxnCheck::Verify)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(crate::util::sb(t.to_owned())))
                            .with_partitions(ps)
                    })
                    .collect(),
            ),
    ]);
    let answer: AddPartitionsToTxnResponse = peer_call(
        shard,
        to,
        (
            ApiKey::AddPartitionsToTxn,
            match check {
                TxnCheck::Verify => VERIFY_VERSION,
                TxnCheck::Add => ADD_VERSION,
            },
        ),
        &request,
        VERIFY_CALL_TIMEOUT,
    )
    .await?;
    if answer.error_code != 0 {
        return Ok(vec![answer.error_code; parts.len()]);
    }
    let mut codes: HashMap<(&str, i32), i16> = HashMap::new();
    for t in answer
        .results_by_transaction
        .iter()
        .filter(|r| r.transactional_id.0.as_str() == transactional_id)
        .flat_map(|r| &r.topic_results)
    {
        for p in &t.results_by_partition {
            codes.insert(
                (t.name.0.as_str(), p.partition_index),
                p.partition_error_code,
            );
        }
    }
    Ok(parts
        .iter()
        .map(|(t, p)| {
            codes
                .get(&(t.as_str(), *p))
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code())
        })
        .collect())
}

/// Writes `marker` to those of `partitions` this broker leads, on their owner shards, and
/// waits until each is committed. Returns an error code per partition, in input order:
/// UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist, NOT_LEADER_OR_FOLLOWER for
/// one led elsewhere (also the answer of WriteTxnMarkers, Kafka's broker-to-broker API).
pub async fn write_local_markers(
    shard: &Rc<Shard>,
    marker: Marker,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), i16)> {
    let image = shard.metadata();
    let mut errors = vec![0i16; partitions.len()];
    let mut by_owner: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, (topic, p)) in partitions.iter().enumerate() {
        match image.topic(topic).filter(|m| m.has_partition(*p)) {
            None => errors[i] = ResponseError::UnknownTopicOrPartition.code(),
            Some(meta) if !shard.leads(meta, *p) => {
                errors[i] = ResponseError::NotLeaderOrFollower.code()
            }
            Some(meta) => by_owner
                .entry(shard.owner_of(meta, *p))
                .or_default()
                .push(i),
        }
    }
    let writes = by_owner.into_iter().map(|(owner, idxs)| {
        let shard = shard.clone();
        let parts: Vec<(String, i32)> = idxs.iter().map(|&i| partitions[i].clone()).collect();
        async move {
            let answers = shard
                .request(owner, |reply| MeshMsg::WriteMarkers {
                    parts,
                    marker,
                    reply,
                })
                .await
                .unwrap_or_default();
            (idxs, answers)
        }
    });
    for (idxs, answers) in futures_util::future::join_all(writes).await {
        for (k, i) in idxs.into_iter().enumerate() {
            errors[i] = answers
                .get(k)
                .copied()
                .unwrap_or(ResponseError::NotLeaderOrFollower.code());
        }
    }
    partitions.into_iter().zip(errors).collect()
}

/// The per-shard transaction task: loads and unloads state partitions as ownership and
/// leadership change, and ticks the coordinator.
pub async fn run(shard: Rc<Shard>) {
    let ticks_per_tick = (TICK_MS / RECONCILE_MS).max(1);
    let mut n = 0u64;
    loop {
        crate::runtime::sleep(Duration::from_millis(RECONCILE_MS)).await;
        if shard.shutting_down.get() {
            return;
        }
        reconcile(&shard);
        n += 1;
        if n.is_multiple_of(ticks_per_tick) && !shard.txns.loaded.borrow().is_empty() {
            feed(&shard, Event::Tick);
        }
    }
}

/// Loads the state partitions this shard owns and leads that are not loaded (or were loaded
/// at an older leader epoch), and unloads those it no longer leads.
fn reconcile(shard: &Rc<Shard>) {
    let image = shard.metadata();
    let Some(topic) = image.topic(TRANSACTION_STATE_TOPIC) else {
        return;
    };
    let mut wanted: BTreeMap<i32, i32> = BTreeMap::new();
    for p in 0..topic.partition_count() {
        if shard.owner_of(topic, p) != shard.id || !shard.leads(topic, p) {
            continue;
        }
        if let Some(part) = shard.partition(TRANSACTION_STATE_TOPIC, p) {
            if part.is_leader(None) {
                wanted.insert(p, part.leader_epoch.get());
            }
        }
    }
    let loaded = shard.txns.loaded.borrow().clone();
    for (&p, &epoch) in &loaded {
        if wanted.get(&p) != Some(&epoch) {
            info!(partition = p, "unloading __transaction_state partition");
            shard.txns.loaded.borrow_mut().remove(&p);
            feed(shard, Event::Unloaded(p));
        }
    }
    for (p, epoch) in wanted {
        if shard.txns.loaded.borrow().get(&p) == Some(&epoch) {
            continue;
        }
        shard.txns.loaded.borrow_mut().insert(p, epoch);
        let s = shard.clone();
        crate::runtime::spawn(async move { load(&s, p, epoch).await }).detach();
    }
}

/// Replays state partition `p` into the coordinator (as the leader at `epoch`).
async fn load(shard: &Rc<Shard>, p: i32, epoch: i32) {
    let Some(part) = shard.partition(TRANSACTION_STATE_TOPIC, p) else {
        return;
    };
    feed(
        shard,
        Event::LoadStarted {
            partition: p,
            coordinator_epoch: epoch,
        },
    );
    let log_start = part.log.log_start_offset();
    let mut records_read = 0usize;
    read_whole_log(
        &part,
        TRANSACTION_STATE_TOPIC,
        p,
        |chunk| match decode_batches(chunk) {
            Ok(recs) => {
                for (offset, rec) in recs {
                    if offset >= log_start {
                        records_read += 1;
                        feed(shard, Event::Replay(p, rec));
                    }
                }
            }
            Err(e) => {
                warn!(partition = p, error = %e, "undecodable __transaction_state batch skipped")
            }
        },
    )
    .await;
    // Loaded at this epoch still (not unloaded or reloaded meanwhile)?
    if shard.txns.loaded.borrow().get(&p) != Some(&epoch) {
        return;
    }
    feed(shard, Event::LoadCompleted(p));
    info!(
        partition = p,
        records_read, "loaded __transaction_state partition"
    );
}

/// The state partition of `transactional_id` and the broker leading it (its coordinator).
/// COORDINATOR_NOT_AVAILABLE until `__transaction_state` exists and the partition has a leader.
pub fn coordinator_of(shard: &Shard, transactional_id: &str) -> Result<(i32, i32), ResponseError> {
    let image = shard.metadata();
    let topic = image
        .topic(TRANSACTION_STATE_TOPIC)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let partition = partition_for(transactional_id, topic.partition_count());
    if !shard.config.clustered() {
        return Ok((partition, shard.config.args.node_id));
    }
    match topic.partitions.get(partition as usize).map(|p| p.leader) {
        Some(leader) if leader >= 0 => Ok((partition, leader)),
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// Runs a coordinator request for `transactional_id` on its coordinator shard; `make` builds
/// it for the id's state partition. `Err` is the Kafka error when the coordinator cannot be
/// reached (NOT_COORDINATOR when another broker leads the id's partition).
pub async fn call(
    shard: &Rc<Shard>,
    transactional_id: &str,
    make: impl FnOnce(i32) -> Request,
) -> Result<Reply, ResponseError> {
    let (partition, leader) = coordinator_of(shard, transactional_id)?;
    if leader != shard.config.args.node_id {
        return Err(ResponseError::NotCoordinator);
    }
    let image = shard.metadata();
    let topic = image
        .topic(TRANSACTION_STATE_TOPIC)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let owner = shard.owner_of(topic, partition);
    let request = make(partition);
    shard
        .request(owner, |reply| MeshMsg::Txn { request, reply })
        .await
        .map_err(|_| ResponseError::CoordinatorNotAvailable)?
}

/// ListTransactions: every shard's coordinator answers for the ids it holds.
pub async fn list_all(
    shard: &Rc<Shard>,
    filter: crate::coordinator::txn::coordinator::ListFilter,
) -> Vec<crate::coordinator::txn::coordinator::ListedTxn> {
    let asks = (0..shard.shards).map(|owner| {
        let shard = shard.clone();
        let request = Request::List(filter.clone());
        async move {
            shard
                .request(owner, |reply| MeshMsg::Txn { request, reply })
                .await
                .ok()
                .and_then(Result::ok)
        }
    });
    let mut out = Vec::new();
    for r in futures_util::future::join_all(asks).await {
        if let Some(Reply::List(l)) = r {
            out.extend(l);
        }
    }
    out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    out
}
