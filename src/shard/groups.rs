//! The per-shard driver of the group [`Coordinator`]: the only place with I/O and time.
//!
//! - Requests (already on the coordinator shard) get a [`ReqId`] and a one-shot channel; the
//!   coordinator's `Reply` action completes it.
//! - `Persist` actions are appended to the `__consumer_offsets` partition synchronously (so
//!   log order = decision order); a task waits for durability (per the flush policy) and feeds
//!   `Persisted` back — in append order per partition, whatever order the waits finish in
//!   (`internal_log.rs`). The log cleaner
//!   compacts the partitions (`cleanup.policy=compact`).
//! - A transactional offset commit (TxnOffsetCommit) is verified first (KIP-890 part 1, as a
//!   produce is: [`serve`]): the offsets partition's guard, the transaction coordinator's
//!   answer, then the commit is fed with the guard standing ([`GroupDriver::verified`]), which
//!   its `Persist` checks before appending.
//! - [`run`] (one task per shard) creates the topic (shard 0), loads this shard's offsets
//!   partitions, then ticks the coordinator every [`TICK_MS`].
//!
//! Invariant: the coordinator's `RefCell` is never borrowed across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tracing::{info, warn};

use crate::cluster::image::MetadataImage;
use crate::controller::NewTopic;
use crate::coordinator::group::coordinator::{
    self, Action, Coordinator, CoordinatorConfig, Event, Reply, ReqId,
};
use crate::coordinator::group::records::{decode_batches, encode_batch, Decoded, StoredRecord};
use crate::coordinator::group::{offsets_topic_configs, partition_for, OFFSETS_TOPIC, TICK_MS};
use crate::errors::commit_error;
use crate::shard::controller::{self};
use crate::shard::internal_log::{read_whole_log, PersistQueue};
use crate::shard::{MeshMsg, Shard};
use crate::util::now_ms;

/// Per-shard group state (a field of [`Shard`]).
pub struct GroupDriver {
    coord: RefCell<Coordinator>,
    waiters: RefCell<HashMap<ReqId, flume::Sender<Reply>>>,
    next_req: Cell<ReqId>,
    /// Persists not yet reported, released in append order per partition.
    persists: PersistQueue,
    /// The first load is done: leadership changes load and unload from then on.
    started: Cell<bool>,
    /// A cluster's `__consumer_offsets` creation was asked for (once per process).
    pub offsets_topic_requested: Cell<bool>,
    /// While a verified transactional offset commit is fed: (producer id, verification guard).
    /// Its `Persist` comes out of that same feed (the coordinator persists a commit at once);
    /// a transactional write fed without it needs its transaction open already.
    verified: Cell<Option<(i64, u64)>>,
}

impl Default for GroupDriver {
    fn default() -> Self {
        let seed = sluice_base::Rng::from_time().next_u64();
        GroupDriver {
            coord: RefCell::new(Coordinator::new(CoordinatorConfig::default(), seed)),
            waiters: RefCell::new(HashMap::new()),
            next_req: Cell::new(1),
            persists: PersistQueue::default(),
            started: Cell::new(false),
            offsets_topic_requested: Cell::new(false),
            verified: Cell::new(None),
        }
    }
}

impl GroupDriver {
    /// Every group this shard coordinates (metrics).
    pub fn summaries(&self) -> Vec<coordinator::GroupSummary> {
        self.coord.borrow().summaries()
    }

    /// Submits a request built by `make` and waits for its reply; `verified`: the guard of a
    /// verified transactional offset commit (see [`serve`]).
    pub async fn request(
        shard: &Rc<Shard>,
        make: impl FnOnce(ReqId) -> Event,
        verified: Option<(i64, u64)>,
    ) -> Result<Reply, ResponseError> {
        let d = &shard.groups;
        let id = d.next_req.get();
        d.next_req.set(id + 1);
        let (tx, rx) = flume::bounded(1);
        d.waiters.borrow_mut().insert(id, tx);
        d.verified.set(verified);
        feed(shard, make(id));
        d.verified.set(None);
        rx.recv_async()
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)
    }
}

/// Runs a group request that reached its coordinator shard. A transactional offset commit
/// whose producer has no transaction open in the offsets partition is first verified with the
/// transaction coordinator (KIP-890 part 1), or for a transaction version 2 producer added to
/// its transaction (part 2): refused, it writes nothing.
pub async fn serve(
    shard: &Rc<Shard>,
    request: coordinator::Request,
) -> Result<Reply, ResponseError> {
    let mut verified = None;
    if let coordinator::Request::Commit(c) = &request {
        let check = crate::shard::txns::check_for(shard, c.txn_add);
        if let (Some(id), Some(producer), Some(check)) = (&c.transactional_id, c.txn, check) {
            let guard = shard
                .partition(OFFSETS_TOPIC, c.partition)
                .filter(|p| p.is_leader(None))
                .and_then(|p| p.log.verification_guard(producer.0, producer.1, c.txn_add));
            if let Some(guard) = guard {
                let part = vec![(OFFSETS_TOPIC.to_owned(), c.partition)];
                let code = crate::shard::txns::verify(shard, id, producer, part, check, true)
                    .await
                    .first()
                    .copied()
                    .unwrap_or(ResponseError::UnknownServerError.code());
                crate::metrics::ShardMetrics::add(&shard.metrics.txn_verifications, 1);
                if code != 0 {
                    crate::metrics::ShardMetrics::add(&shard.metrics.txn_verification_failures, 1);
                    let error = txn_commit_error(code);
                    return Ok(Reply::Commit(
                        c.offsets
                            .iter()
                            .map(|o| (o.topic.clone(), o.partition, error))
                            .collect(),
                    ));
                }
                verified = Some((producer.0, guard));
            }
        }
    }
    GroupDriver::request(shard, move |id| request.into_event(id), verified).await
}

/// What a TxnOffsetCommit is told when the transaction coordinator did not verify the offsets
/// partition: a fenced epoch as INVALID_PRODUCER_EPOCH, a partition not in the transaction as
/// INVALID_TXN_STATE, a coordinator that could not answer as COORDINATOR_LOAD_IN_PROGRESS
/// (retried by clients without looking for another group coordinator).
fn txn_commit_error(code: i16) -> i16 {
    use ResponseError as E;
    if crate::shard::txns::verification_unanswered(code) {
        return E::CoordinatorLoadInProgress.code();
    }
    match ResponseError::try_from_code(code) {
        Some(E::ProducerFenced) => E::InvalidProducerEpoch.code(),
        Some(E::TransactionAbortable) => E::InvalidTxnState.code(),
        _ => code,
    }
}

/// A transaction marker of `producer_id` was written to offsets partition `partition` (this
/// shard owns it): the producer's offsets committed in the transaction become visible there,
/// or are dropped.
pub fn txn_marker(shard: &Rc<Shard>, partition: i32, producer_id: i64, commit: bool) {
    feed(
        shard,
        Event::TxnMarker {
            partition,
            producer_id,
            commit,
        },
    );
}

/// Deleted topics: the coordinator drops their committed offsets (see `Event::TopicsDeleted`).
pub fn topics_deleted(shard: &Rc<Shard>, topics: Vec<String>) {
    feed(shard, Event::TopicsDeleted(topics));
}

/// Applies one event now and carries out the resulting actions.
fn feed(shard: &Rc<Shard>, event: Event) {
    let actions = shard.groups.coord.borrow_mut().on_event(now_ms(), event);
    for a in actions {
        execute(shard, a);
    }
}

fn execute(shard: &Rc<Shard>, action: Action) {
    match action {
        Action::Reply(id, reply) => {
            let tx = shard.groups.waiters.borrow_mut().remove(&id);
            if let Some(tx) = tx {
                let _ = tx.try_send(reply);
            }
        }
        Action::Persist {
            partition,
            records,
            token,
            txn,
        } => {
            let seq = shard.groups.persists.start(partition, token);
            let appended = append(shard, partition, &records, txn);
            match appended {
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
    }
}

/// Records the outcome of persist `seq` and reports every finished persist at the front of the
/// partition's queue, so the coordinator sees them in append order (see `internal_log.rs`).
fn persisted(shard: &Rc<Shard>, partition: i32, seq: u64, error: i16) {
    let ready = shard.groups.persists.finish(partition, seq, error);
    for (token, error) in ready {
        match token {
            Some(token) => feed(shard, Event::Persisted { token, error }),
            None if error != 0 => warn!(partition, error, "persisting group metadata failed"),
            None => {}
        }
    }
}

type AppendResult =
    Result<(Rc<crate::partition::Partition>, sluice_storage::AppendInfo), ResponseError>;

/// Appends `records` as one batch to offsets partition `partition` (synchronous); with `txn`,
/// as a transactional batch of that producer.
fn append(
    shard: &Rc<Shard>,
    partition: i32,
    records: &[StoredRecord],
    txn: Option<(i64, i16)>,
) -> AppendResult {
    let part = shard
        .partition(OFFSETS_TOPIC, partition)
        .filter(|p| p.is_leader(None))
        .ok_or(ResponseError::NotCoordinator)?;
    // KIP-890 part 1: transactional offsets open the producer's transaction here only under
    // the guard their verification got (see `serve`).
    if let Some((pid, epoch)) = txn {
        let guard = shard
            .groups
            .verified
            .get()
            .filter(|(p, _)| *p == pid)
            .map(|(_, g)| g);
        if (shard.config.args.transaction_partition_verification_enable || guard.is_some())
            && !part.log.txn_verified(pid, epoch, guard)
        {
            crate::metrics::ShardMetrics::add(&shard.metrics.txn_verification_failures, 1);
            return Err(ResponseError::InvalidTxnState);
        }
    }
    let now = now_ms();
    let batch = encode_batch(records, now, txn).map_err(|e| {
        warn!(error = %e, "encoding __consumer_offsets batch failed");
        ResponseError::UnknownServerError
    })?;
    let info = part.append(batch, now).map_err(|e| commit_error(&e))?;
    Ok((part, info))
}

/// The per-shard group task: topic creation (shard 0), loading, then the timer.
pub async fn run(shard: Rc<Shard>) {
    // A cluster creates the topic on the first FindCoordinator (as Kafka does), once the
    // brokers have registered and its partitions spread over them.
    if shard.id == 0 && !shard.config.clustered() && shard.metadata().topic(OFFSETS_TOPIC).is_none()
    {
        let topic = NewTopic {
            assignment: None,
            name: OFFSETS_TOPIC.to_owned(),
            partitions: shard.config.args.offsets_topic_num_partitions,
            replication_factor: -1,
            configs: offsets_topic_configs(),
        };
        for r in controller::create_topics(&shard, vec![topic], false).await {
            if let Err(e) = r {
                if !matches!(e.error, ResponseError::TopicAlreadyExists) {
                    warn!(error = %e.message, "creating __consumer_offsets failed");
                }
            }
        }
    }
    let owned = loop {
        if shard.shutting_down.get() {
            return;
        }
        if let Some(t) = shard.metadata().topic(OFFSETS_TOPIC).cloned() {
            let owned: Vec<i32> = (0..t.partition_count())
                .filter(|p| shard.owner_of(&t, *p) == shard.id && shard.leads(&t, *p))
                .collect();
            if owned
                .iter()
                .all(|p| shard.partition(OFFSETS_TOPIC, *p).is_some())
            {
                // From here on, leadership changes load and unload (`leadership_changed`).
                shard.groups.started.set(true);
                break owned;
            }
        }
        crate::runtime::sleep(Duration::from_millis(20)).await;
    };
    for p in owned {
        load(&shard, p).await;
    }
    loop {
        crate::runtime::sleep(Duration::from_millis(TICK_MS)).await;
        if shard.shutting_down.get() {
            return;
        }
        feed(&shard, Event::Tick);
    }
}

/// Replays offsets partition `p` into the coordinator.
async fn load(shard: &Rc<Shard>, p: i32) {
    let Some(part) = shard.partition(OFFSETS_TOPIC, p) else {
        return;
    };
    feed(shard, Event::LoadStarted(p));
    let log_start = part.log.log_start_offset();
    let mut records_read = 0usize;
    read_whole_log(&part, OFFSETS_TOPIC, p, |chunk| {
        match decode_batches(chunk) {
            Ok(recs) => {
                for (offset, decoded) in recs {
                    if offset < log_start {
                        continue;
                    }
                    records_read += 1;
                    let event = match decoded {
                        Decoded::Record { rec, txn: None } => Event::Replay(p, rec),
                        Decoded::Record {
                            rec,
                            txn: Some(producer_id),
                        } => Event::ReplayTxn(p, producer_id, rec),
                        Decoded::Marker {
                            producer_id,
                            commit,
                        } => Event::TxnMarker {
                            partition: p,
                            producer_id,
                            commit,
                        },
                    };
                    feed(shard, event);
                }
            }
            Err(e) => {
                warn!(partition = p, error = %e, "undecodable __consumer_offsets batch skipped")
            }
        }
    })
    .await;
    feed(
        shard,
        Event::LoadCompleted {
            partition: p,
            records_read,
        },
    );
    info!(
        partition = p,
        records_read, "loaded __consumer_offsets partition"
    );
}

/// Offsets partitions of this shard whose leadership this broker gained or lost between
/// `old` and `new` (cluster mode): gained ones are loaded, lost ones unloaded.
pub fn leadership_changed(shard: &Rc<Shard>, old: &MetadataImage, new: &MetadataImage) {
    if !shard.config.clustered() || !shard.groups.started.get() {
        return;
    }
    let Some(t) = new.topic(OFFSETS_TOPIC) else {
        return;
    };
    let before = old.topic(OFFSETS_TOPIC);
    for p in 0..t.partition_count() {
        if shard.owner_of(t, p) != shard.id {
            continue;
        }
        let led_before = before.is_some_and(|b| b.id == t.id && shard.leads(b, p));
        match (led_before, shard.leads(t, p)) {
            (false, true) => {
                let s = shard.clone();
                crate::runtime::spawn(async move { load(&s, p).await }).detach();
            }
            (true, false) => {
                info!(
                    partition = p,
                    "no longer leading this __consumer_offsets partition: unloading its groups"
                );
                feed(shard, Event::Unloaded(p));
            }
            _ => {}
        }
    }
}

/// The offsets partition of `group` and the broker leading it (its coordinator).
/// COORDINATOR_NOT_AVAILABLE until `__consumer_offsets` exists and the partition has a leader.
pub fn coordinator_of(shard: &Shard, group: &str) -> Result<(i32, i32), ResponseError> {
    let image = shard.metadata();
    let topic = image
        .topic(OFFSETS_TOPIC)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let partition = partition_for(group, topic.partition_count());
    if !shard.config.clustered() {
        return Ok((partition, shard.config.args.node_id));
    }
    match topic.partitions.get(partition as usize).map(|p| p.leader) {
        Some(leader) if leader >= 0 => Ok((partition, leader)),
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// Where a group's coordinator lives here: (offsets partition, owner shard).
/// COORDINATOR_NOT_AVAILABLE until `__consumer_offsets` exists; NOT_COORDINATOR when another
/// broker leads the group's partition.
pub fn route(shard: &Shard, group: &str) -> Result<(i32, usize), ResponseError> {
    let (partition, leader) = coordinator_of(shard, group)?;
    if leader != shard.config.args.node_id {
        return Err(ResponseError::NotCoordinator);
    }
    let image = shard.metadata();
    let topic = image
        .topic(OFFSETS_TOPIC)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    Ok((partition, shard.owner_of(topic, partition)))
}

/// Runs a coordinator request for `group` on its coordinator shard and returns the reply;
/// `make` builds the request for the group's offsets partition. `Err` is the Kafka error when
/// the coordinator cannot be reached.
pub async fn call(
    shard: &Rc<Shard>,
    group: &str,
    make: impl FnOnce(i32) -> coordinator::Request,
) -> Result<coordinator::Reply, ResponseError> {
    let (partition, owner) = route(shard, group)?;
    let request = make(partition);
    shard
        .request(owner, |reply| MeshMsg::Group { request, reply })
        .await
        .map_err(|_| ResponseError::CoordinatorNotAvailable)?
}
