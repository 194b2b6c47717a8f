//! The transaction coordinator of one shard: a pure state machine for Kafka's transaction
//! protocol (InitProducerId, AddPartitionsToTxn / AddOffsetsToTxn, EndTxn; the classic flow and
//! transaction version 2 of KIP-890, where every EndTxn bumps the producer's epoch). No I/O,
//! no runtime, no clock: the driver feeds it events with the current time and carries out the
//! [`Action`]s it returns (replies, records to append to `__transaction_state`, producer ids to
//! allocate, commit/abort markers to write).
//!
//! States of one transactional id, as in Kafka (every arrow is a record written to the log
//! first; the state changes only once that record is durable):
//! ```text
//!        InitProducerId (epoch + 1)                 AddPartitions
//! Empty / Complete* ─────────────────▶ Empty ──────────────────────▶ Ongoing ◀─┐ AddPartitions
//!       ▲                                                             │  └─────┘
//!       │ markers written                    EndTxn / timeout / fence │
//!       └──── CompleteCommit / CompleteAbort ◀── PrepareCommit / PrepareAbort
//! ```
//! A timed-out transaction, and an ongoing one whose id a new producer initialises, is aborted
//! with the epoch bumped (Kafka's PrepareEpochFence; twice with transaction version 2 on, as
//! Kafka's coordinator ends it as a version 2 transaction), so the old producer is fenced: its
//! requests get PRODUCER_FENCED from then on.
//!
//! Transaction version 2 (an EndTxn v5+; docs/architecture.md §7.1): the Prepare* record
//! carries the epoch + 1, the markers are written with it, and the reply hands the producer its
//! new epoch, so a late write of the ended transaction is fenced by its epoch at every
//! partition. An id whose epoch would pass `i16::MAX - 1` moves to a new producer id (the
//! Prepare* record names it, the Complete* record takes it, epoch 0). EndTxn answers follow
//! Kafka's table (see [`TxnCoordinator::end_v2`]): a retry of a completed EndTxn (epoch one
//! below, or the previous id at `i16::MAX - 1` after a rotation) is answered again, an abort
//! with no partition added completes at once with the epoch bumped.
//!
//! Invariants (checked by the seeded simulation in `txn/sim.rs`):
//! - one transition in flight per transactional id (others get CONCURRENT_TRANSACTIONS);
//! - a Prepare* record is durable before any marker is written, and a transaction's markers are
//!   all commit or all abort; once PrepareCommit is durable the commit completes, even across a
//!   reload of the partition (`LoadCompleted` resumes the markers);
//! - (producer id, epoch) returned by InitProducerId only grow for a transactional id;
//! - every request gets exactly one reply.

use std::collections::{BTreeSet, HashMap, VecDeque};

use kafka_protocol::ResponseError;

use super::records::{TxnRecord, TxnState, TxnValue};

/// Identifies a waiting request (allocated by the driver).
pub type ReqId = u64;

const NONE: i16 = 0;
const NO_PRODUCER_ID: i64 = -1;
const NO_EPOCH: i16 = -1;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// The highest `transaction.version` feature level this coordinator implements (2: KIP-890
/// part 2); `--transaction-version` and ApiVersions' supported range stop there.
pub const TRANSACTION_VERSION_MAX: i16 = 2;

/// Tunables (Kafka's broker config names in comments).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// transaction.max.timeout.ms
    pub max_timeout_ms: i32,
    /// transactional.id.expiration.ms: an id idle this long (no transaction under way) is
    /// forgotten.
    pub id_expiration_ms: i64,
    /// The finalized `transaction.version` feature level: at 2 the coordinator's own aborts
    /// (timeouts, fencing) end the transaction as a version 2 one (one more epoch bump).
    pub transaction_version: i16,
    /// How long a marker write that failed waits before it is tried again.
    pub marker_retry_backoff_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 3_600_000,
            transaction_version: 2,
            marker_retry_backoff_ms: 100,
        }
    }
}

/// InitProducerId with a transactional id.
#[derive(Debug, Clone)]
pub struct InitRequest {
    pub transactional_id: String,
    /// The `__transaction_state` partition of the id (routing computed it).
    pub partition: i32,
    pub timeout_ms: i32,
    /// KIP-360: the producer id and epoch the client had (`None`: a new producer).
    pub expected: Option<(i64, i16)>,
}

/// AddPartitionsToTxn (AddOffsetsToTxn arrives as the group's `__consumer_offsets` partition).
#[derive(Debug, Clone)]
pub struct AddRequest {
    pub transactional_id: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
    /// AddPartitionsToTxn v4+ from a partition leader (KIP-890): only check that the
    /// partitions are in the transaction.
    pub verify_only: bool,
}

/// EndTxn.
#[derive(Debug, Clone)]
pub struct EndRequest {
    pub transactional_id: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// Transaction version 2 (EndTxn v5+, KIP-890 part 2): completing bumps the epoch, and the
    /// reply names the producer's id and epoch for its next transaction.
    pub bump_epoch: bool,
}

/// ListTransactions filters (empty = any).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub states: Vec<String>,
    pub producer_ids: Vec<i64>,
}

/// A client request for the coordinator, before its driver gives it a [`ReqId`] (this is what
/// travels between shards).
#[derive(Debug, Clone)]
pub enum Request {
    Init(InitRequest),
    Add(AddRequest),
    End(EndRequest),
    /// DescribeTransactions of one id (id, state partition).
    Describe(String, i32),
    List(ListFilter),
}

impl Request {
    /// The coordinator's input for this request, answered under `id`.
    pub fn into_event(self, id: ReqId) -> Event {
        match self {
            Request::Init(r) => Event::Init(id, r),
            Request::Add(r) => Event::Add(id, r),
            Request::End(r) => Event::End(id, r),
            Request::Describe(t, p) => Event::Describe(id, t, p),
            Request::List(f) => Event::List(id, f),
        }
    }
}

/// Inputs of the state machine.
#[derive(Debug, Clone)]
pub enum Event {
    /// Time passed: abort timed-out transactions, retry marker writes, expire idle ids.
    Tick,
    Init(ReqId, InitRequest),
    Add(ReqId, AddRequest),
    End(ReqId, EndRequest),
    /// DescribeTransactions of one id (id, state partition).
    Describe(ReqId, String, i32),
    List(ReqId, ListFilter),
    /// The answer to `Action::AllocateProducerId` (an error code on failure).
    ProducerId {
        token: u64,
        result: Result<i64, i16>,
    },
    /// The record of a `Persist` with this token is durable (`error` 0) or failed.
    Persisted {
        token: u64,
        error: i16,
    },
    /// The markers of a `WriteMarkers` with this token are written, except on `retry`.
    MarkersWritten {
        token: u64,
        retry: Vec<(String, i32)>,
    },
    /// The driver starts loading a state partition this broker now leads at `coordinator_epoch`
    /// (the partition's leader epoch).
    LoadStarted {
        partition: i32,
        coordinator_epoch: i32,
    },
    /// One record read from the partition, in log order.
    Replay(i32, TxnRecord),
    LoadCompleted(i32),
    /// This broker no longer leads the state partition: its ids are dropped.
    Unloaded(i32),
}

/// DescribeTransactions' answer for one id.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnDescription {
    pub error: i16,
    pub transactional_id: String,
    pub state: String,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
}

/// ListTransactions' entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
}

/// Answers to requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Init {
        error: i16,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// Per partition (topic, partition, error).
    Add(Vec<(String, i32, i16)>),
    /// EndTxn: the producer id and epoch are the producer's next ones with transaction version
    /// 2 when `error` is NONE, -1 otherwise.
    End {
        error: i16,
        producer_id: i64,
        producer_epoch: i16,
    },
    Describe(TxnDescription),
    List(Vec<ListedTxn>),
}

/// Outputs of the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Reply(ReqId, Reply),
    /// Get a new producer id (from the controller's blocks); answer with `Event::ProducerId`.
    AllocateProducerId {
        token: u64,
    },
    /// Append `record` to state partition `partition`; report `Event::Persisted` with `token`.
    Persist {
        partition: i32,
        record: TxnRecord,
        token: u64,
    },
    /// Write a commit (or abort) marker for (producer_id, producer_epoch) to each partition;
    /// report `Event::MarkersWritten` with `token`. A partition whose topic is gone counts as
    /// written.
    WriteMarkers {
        token: u64,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        partitions: Vec<(String, i32)>,
    },
}

/// A transactional id as metrics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnSummary {
    pub transactional_id: String,
    pub state: TxnState,
    pub start_ms: i64,
}

/// One transactional id.
#[derive(Debug, Clone)]
struct Txn {
    /// Its `__transaction_state` partition.
    partition: i32,
    /// The durable state (what the log says).
    meta: TxnValue,
    /// KIP-360: the id and epoch before the last bump, so a retried InitProducerId of the
    /// producer that got them is answered again instead of fenced (memory only).
    last_producer_id: i64,
    last_epoch: i16,
    /// What is in flight for this id.
    pending: Pending,
    /// An epoch fence whose write failed: the epoch in `meta` is already the bumped one (the
    /// write may have reached the log) and is not bumped again.
    failed_fence: bool,
    /// AddPartitionsToTxn and AddOffsetsToTxn requests that came while this id was busy (the
    /// previous transaction completing, or another write of this id in flight: librdkafka
    /// sends AddOffsetsToTxn and AddPartitionsToTxn of a new transaction at once), in arrival
    /// order: served one at a time as the id becomes idle ([`TxnCoordinator::unpark`]),
    /// instead of CONCURRENT_TRANSACTIONS at once, which clients retry only after a backoff
    /// (librdkafka: ~100 ms per transaction). With its arrival time: after [`PARK_MS`] it gets
    /// CONCURRENT_TRANSACTIONS. At most [`PARKED_MAX`].
    parked: VecDeque<(ReqId, AddRequest, i64)>,
}

/// How long an AddPartitionsToTxn may wait for the id to become idle.
pub const PARK_MS: i64 = 1_000;
/// Requests parked per transactional id at most; more get CONCURRENT_TRANSACTIONS at once.
const PARKED_MAX: usize = 4;

#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Idle,
    /// A producer id allocation, a record write or a marker write with this token.
    Token(u64),
    /// Markers still to write (maybe none: then the Complete record) once `due_ms` passes.
    Retry {
        due_ms: i64,
        partitions: Vec<(String, i32)>,
    },
}

impl Txn {
    /// The previous transaction is completing, or a write of this id is in flight.
    fn busy(&self) -> bool {
        self.pending != Pending::Idle
            || matches!(
                self.meta.state,
                TxnState::PrepareCommit | TxnState::PrepareAbort
            )
    }
}

/// What a token completes.
#[derive(Debug, Clone)]
enum Step {
    /// A producer id for InitProducerId (a new id, or the epoch of the old one is exhausted).
    Alloc {
        txn: String,
        req: ReqId,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    },
    /// A record write; `new: None` is a tombstone.
    Write {
        txn: String,
        new: Option<TxnValue>,
        last: (i64, i16),
        then: Then,
    },
    Markers {
        txn: String,
    },
    /// A producer id to rotate to: an EndTxn's epoch bump would exhaust the current one.
    AllocEnd {
        txn: String,
        ending: Ending,
    },
}

/// A version 2 EndTxn on its way to its Prepare record.
#[derive(Debug, Clone, Copy)]
struct Ending {
    req: ReqId,
    commit: bool,
    /// An abort with nothing to mark (Kafka's `noPartitionAdded`), starting now.
    no_partition_added: bool,
}

/// What follows a durable write.
#[derive(Debug, Clone)]
enum Then {
    Init(ReqId),
    Add(ReqId, Vec<(String, i32)>),
    /// A Prepare* record: answer the request that waits (if any), then write the markers.
    Prepare(Option<Waiter>),
    /// The Complete* record after the markers.
    Complete,
    /// The tombstone of an id idle for `transactional.id.expiration.ms`.
    Expire,
}

/// The request a Prepare* record answers once durable.
#[derive(Debug, Clone, Copy)]
enum Waiter {
    /// EndTxn: NONE (with the producer's next identity when `bumped`).
    End { req: ReqId, bumped: bool },
    /// InitProducerId that found a transaction under way: CONCURRENT_TRANSACTIONS, so it
    /// retries once the abort completes.
    Init(ReqId),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Load {
    Loading(i32),
    Loaded(i32),
}

/// The coordinator of one shard. See the module documentation.
pub struct TxnCoordinator {
    config: TxnConfig,
    txns: HashMap<String, Txn>,
    partitions: HashMap<i32, Load>,
    steps: HashMap<u64, Step>,
    next_token: u64,
    out: Vec<Action>,
}

fn exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// Kafka's mapping of a failed `__transaction_state` append to the client's error.
fn write_error(error: i16) -> i16 {
    use ResponseError as E;
    match ResponseError::try_from_code(error) {
        Some(
            E::UnknownTopicOrPartition
            | E::NotEnoughReplicas
            | E::NotEnoughReplicasAfterAppend
            | E::RequestTimedOut,
        ) => code(E::CoordinatorNotAvailable),
        Some(E::NotLeaderOrFollower | E::KafkaStorageError) => code(E::NotCoordinator),
        Some(E::MessageTooLarge | E::RecordListTooLarge) => code(E::UnknownServerError),
        _ => error,
    }
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            txns: HashMap::new(),
            partitions: HashMap::new(),
            steps: HashMap::new(),
            next_token: 1,
            out: Vec::new(),
        }
    }

    /// The cluster's finalized `transaction.version` changed (UpdateFeatures): the
    /// coordinator's own aborts follow it from the next event on.
    pub fn set_transaction_version(&mut self, level: i16) {
        self.config.transaction_version = level;
    }

    /// The single entry point: applies `event` at time `now_ms` and returns what to do.
    pub fn on_event(&mut self, now_ms: i64, event: Event) -> Vec<Action> {
        match event {
            Event::Tick => self.tick(now_ms),
            Event::Init(req, r) => self.init(now_ms, req, r),
            Event::Add(req, r) => self.add(now_ms, req, r),
            Event::End(req, r) => self.end(now_ms, req, r),
            Event::Describe(req, id, p) => self.describe(req, &id, p),
            Event::List(req, f) => self.list(req, &f),
            Event::ProducerId { token, result } => self.producer_id(now_ms, token, result),
            Event::Persisted { token, error } => self.persisted(now_ms, token, error),
            Event::MarkersWritten { token, retry } => self.markers_written(now_ms, token, retry),
            Event::LoadStarted {
                partition,
                coordinator_epoch,
            } => {
                self.drop_partition(partition);
                self.partitions
                    .insert(partition, Load::Loading(coordinator_epoch));
            }
            Event::Replay(p, rec) => self.replay(p, rec),
            Event::LoadCompleted(p) => self.load_completed(now_ms, p),
            Event::Unloaded(p) => {
                self.drop_partition(p);
                self.partitions.remove(&p);
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Every loaded id with a transaction under way or completing, for metrics.
    pub fn summaries(&self) -> Vec<TxnSummary> {
        self.txns
            .iter()
            .filter(|(_, t)| t.meta.producer_id != NO_PRODUCER_ID)
            .map(|(id, t)| TxnSummary {
                transactional_id: id.clone(),
                state: t.meta.state,
                start_ms: t.meta.start_ms,
            })
            .collect()
    }

    /// Whether state partition `partition` is loaded (its ids are served).
    pub fn is_loaded(&self, partition: i32) -> bool {
        matches!(self.partitions.get(&partition), Some(Load::Loaded(_)))
    }

    fn reply(&mut self, req: ReqId, r: Reply) {
        self.out.push(Action::Reply(req, r));
    }

    fn init_error(&mut self, req: ReqId, error: ResponseError) {
        self.init_reply(req, code(error), NO_PRODUCER_ID, NO_EPOCH);
    }

    fn init_reply(&mut self, req: ReqId, error: i16, producer_id: i64, producer_epoch: i16) {
        self.reply(
            req,
            Reply::Init {
                error,
                producer_id,
                producer_epoch,
            },
        );
    }

    fn add_reply(&mut self, req: ReqId, partitions: &[(String, i32)], error: i16) {
        let r = partitions
            .iter()
            .map(|(t, p)| (t.clone(), *p, error))
            .collect();
        self.reply(req, Reply::Add(r));
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// The error for a request on `partition` if it cannot be served now.
    fn partition_error(&self, partition: i32) -> Option<ResponseError> {
        match self.partitions.get(&partition) {
            Some(Load::Loaded(_)) => None,
            Some(Load::Loading(_)) => Some(ResponseError::CoordinatorLoadInProgress),
            // Routing sent it here, yet this shard does not lead the partition (any more).
            None => Some(ResponseError::NotCoordinator),
        }
    }

    /// Starts writing `new` (or a tombstone) for `txn`; `then` follows once it is durable.
    fn write(&mut self, txn: &str, new: Option<TxnValue>, last: (i64, i16), then: Then) {
        let Some(t) = self.txns.get_mut(txn) else {
            return;
        };
        let token = self.next_token;
        self.next_token += 1;
        t.pending = Pending::Token(token);
        let partition = t.partition;
        self.out.push(Action::Persist {
            partition,
            record: TxnRecord {
                transactional_id: txn.to_owned(),
                value: new.clone(),
            },
            token,
        });
        self.steps.insert(
            token,
            Step::Write {
                txn: txn.to_owned(),
                new,
                last,
                then,
            },
        );
    }

    // -----------------------------------------------------------------------------------------
    // InitProducerId
    // -----------------------------------------------------------------------------------------

    fn init(&mut self, now_ms: i64, req: ReqId, r: InitRequest) {
        if r.transactional_id.is_empty() {
            return self.init_error(req, ResponseError::InvalidRequest);
        }
        if r.timeout_ms <= 0 || r.timeout_ms > self.config.max_timeout_ms {
            return self.init_error(req, ResponseError::InvalidTransactionTimeout);
        }
        if let Some(e) = self.partition_error(r.partition) {
            return self.init_error(req, e);
        }
        let Some(t) = self.txns.get(&r.transactional_id) else {
            // A new id: it needs a producer id first. The placeholder holds the id's place so
            // a concurrent InitProducerId gets CONCURRENT_TRANSACTIONS.
            let token = self.token();
            self.txns.insert(
                r.transactional_id.clone(),
                Txn {
                    partition: r.partition,
                    meta: TxnValue {
                        producer_id: NO_PRODUCER_ID,
                        producer_epoch: NO_EPOCH,
                        timeout_ms: r.timeout_ms,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        last_update_ms: now_ms,
                        start_ms: -1,
                        prev_producer_id: NO_PRODUCER_ID,
                        next_producer_id: NO_PRODUCER_ID,
                    },
                    last_producer_id: NO_PRODUCER_ID,
                    last_epoch: NO_EPOCH,
                    pending: Pending::Token(token),
                    failed_fence: false,
                    parked: VecDeque::new(),
                },
            );
            self.steps.insert(
                token,
                Step::Alloc {
                    txn: r.transactional_id,
                    req,
                    timeout_ms: r.timeout_ms,
                    expected: r.expected,
                },
            );
            self.out.push(Action::AllocateProducerId { token });
            return;
        };
        if t.pending != Pending::Idle {
            return self.init_error(req, ResponseError::ConcurrentTransactions);
        }
        // KIP-360: a producer that names its old id and epoch is fenced unless it is the
        // current one, or a retry whose bump exhausted the previous id.
        if let Some((pid, epoch)) = r.expected {
            let valid = t.meta.producer_epoch == NO_EPOCH
                || pid == t.meta.producer_id
                || (pid == t.last_producer_id && exhausted(epoch));
            if !valid {
                return self.init_error(req, ResponseError::ProducerFenced);
            }
        }
        match t.meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                self.init_error(req, ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // Abort the transaction under way with the epoch bumped (fencing its producer),
                // then tell this one to retry: its retry bumps the epoch again.
                let txn = r.transactional_id;
                self.fence_and_abort(now_ms, &txn, Some(req));
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if exhausted(t.meta.producer_epoch)
                    && r.expected.is_none_or(|(_, e)| e == t.meta.producer_epoch)
                {
                    let token = self.token();
                    if let Some(t) = self.txns.get_mut(&r.transactional_id) {
                        t.pending = Pending::Token(token);
                    }
                    self.steps.insert(
                        token,
                        Step::Alloc {
                            txn: r.transactional_id,
                            req,
                            timeout_ms: r.timeout_ms,
                            expected: r.expected,
                        },
                    );
                    self.out.push(Action::AllocateProducerId { token });
                    return;
                }
                let (epoch, last_epoch) = match r.expected {
                    None => (t.meta.producer_epoch + 1, NO_EPOCH),
                    Some((_, e))
                        if t.meta.producer_epoch == NO_EPOCH || e == t.meta.producer_epoch =>
                    {
                        (t.meta.producer_epoch + 1, t.meta.producer_epoch)
                    }
                    // A retry of a call that succeeded: the same epoch again.
                    Some((_, e)) if e == t.last_epoch => (t.meta.producer_epoch, t.last_epoch),
                    Some(_) => return self.init_error(req, ResponseError::ProducerFenced),
                };
                let new = TxnValue {
                    producer_id: t.meta.producer_id,
                    producer_epoch: epoch,
                    timeout_ms: r.timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    last_update_ms: now_ms,
                    start_ms: -1,
                    prev_producer_id: NO_PRODUCER_ID,
                    next_producer_id: NO_PRODUCER_ID,
                };
                let last = (t.last_producer_id, last_epoch);
                self.write(&r.transactional_id, Some(new), last, Then::Init(req));
            }
            // Never stored by us: an id in these states is being removed or is corrupt.
            TxnState::Dead | TxnState::PrepareEpochFence => {
                self.init_error(req, ResponseError::ConcurrentTransactions)
            }
        }
    }

    fn producer_id(&mut self, now_ms: i64, token: u64, result: Result<i64, i16>) {
        let (txn, req, timeout_ms, expected) = match self.steps.remove(&token) {
            Some(Step::Alloc {
                txn,
                req,
                timeout_ms,
                expected,
            }) => (txn, req, timeout_ms, expected),
            Some(Step::AllocEnd { txn, ending }) => {
                return self.rotated(now_ms, &txn, ending, result)
            }
            _ => return,
        };
        let Some(t) = self.txns.get_mut(&txn) else {
            return;
        };
        match result {
            Err(error) => {
                t.pending = Pending::Idle;
                let gone = t.meta.producer_id == NO_PRODUCER_ID;
                self.init_reply(req, error, NO_PRODUCER_ID, NO_EPOCH);
                if gone {
                    self.remove_txn(now_ms, &txn);
                } else {
                    self.unpark(now_ms, &txn);
                }
            }
            Ok(pid) => {
                // A new id starts at epoch 0; a rotated one too, remembering the old id (and
                // its epoch if the client named it, so its retry is recognised).
                let last = if t.meta.producer_id == NO_PRODUCER_ID {
                    (NO_PRODUCER_ID, NO_EPOCH)
                } else {
                    let last_epoch = if expected.is_some() {
                        t.meta.producer_epoch
                    } else {
                        NO_EPOCH
                    };
                    (t.meta.producer_id, last_epoch)
                };
                let new = TxnValue {
                    producer_id: pid,
                    producer_epoch: 0,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    last_update_ms: now_ms,
                    start_ms: -1,
                    prev_producer_id: NO_PRODUCER_ID,
                    next_producer_id: NO_PRODUCER_ID,
                };
                self.write(&txn, Some(new), last, Then::Init(req));
            }
        }
    }

    /// Aborts `txn`'s ongoing transaction with the epoch bumped (once more with transaction
    /// version 2, as Kafka's version 2 completion bumps it again); `req` (an InitProducerId)
    /// gets CONCURRENT_TRANSACTIONS once the abort is decided.
    fn fence_and_abort(&mut self, now_ms: i64, txn: &str, req: Option<ReqId>) {
        let Some(t) = self.txns.get(txn) else {
            return;
        };
        // A fence whose write failed already holds the bumped epoch (it may be in the log).
        let epoch = if t.failed_fence {
            t.meta.producer_epoch
        } else if self.config.transaction_version >= 2 {
            t.meta.producer_epoch.saturating_add(2)
        } else {
            t.meta.producer_epoch.saturating_add(1)
        };
        let new = TxnValue {
            producer_epoch: epoch,
            state: TxnState::PrepareAbort,
            last_update_ms: now_ms,
            ..t.meta.clone()
        };
        let last = (t.last_producer_id, NO_EPOCH);
        self.write(txn, Some(new), last, Then::Prepare(req.map(Waiter::Init)));
    }

    // -----------------------------------------------------------------------------------------
    // AddPartitionsToTxn / AddOffsetsToTxn
    // -----------------------------------------------------------------------------------------

    /// The error for a request naming (producer_id, epoch) of `txn`, if any.
    fn producer_error(&self, txn: &str, producer_id: i64, epoch: i16) -> Option<ResponseError> {
        let Some(t) = self.txns.get(txn) else {
            return Some(ResponseError::InvalidProducerIdMapping);
        };
        if t.meta.producer_id != producer_id {
            Some(ResponseError::InvalidProducerIdMapping)
        } else if t.meta.producer_epoch != epoch {
            Some(ResponseError::ProducerFenced)
        } else if t.pending != Pending::Idle {
            Some(ResponseError::ConcurrentTransactions)
        } else {
            None
        }
    }

    /// AddPartitionsToTxn with `verify_only` (KIP-890 part 1, from a partition leader about
    /// to append a producer's first transactional batch): per partition NONE if it is in the
    /// ongoing transaction, TRANSACTION_ABORTABLE if not, as Kafka's coordinator answers. A
    /// write of the id in flight is not waited for (the partition is in the durable state
    /// once its AddPartitionsToTxn was answered); a transaction being decided is
    /// CONCURRENT_TRANSACTIONS.
    fn verify(&mut self, req: ReqId, r: &AddRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.add_reply(req, &r.partitions, code(e));
        }
        let Some(t) = self.txns.get(&r.transactional_id) else {
            return self.add_reply(
                req,
                &r.partitions,
                code(ResponseError::InvalidProducerIdMapping),
            );
        };
        let refused = if t.meta.producer_id != r.producer_id {
            Some(ResponseError::InvalidProducerIdMapping)
        } else if t.meta.producer_epoch != r.producer_epoch {
            Some(ResponseError::ProducerFenced)
        } else if matches!(
            t.meta.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        ) {
            Some(ResponseError::ConcurrentTransactions)
        } else {
            None
        };
        if let Some(e) = refused {
            return self.add_reply(req, &r.partitions, code(e));
        }
        let ongoing = t.meta.state == TxnState::Ongoing;
        let answers = r
            .partitions
            .iter()
            .map(|(topic, p)| {
                let error = if ongoing && t.meta.partitions.contains(&(topic.clone(), *p)) {
                    NONE
                } else {
                    code(ResponseError::TransactionAbortable)
                };
                (topic.clone(), *p, error)
            })
            .collect();
        self.reply(req, Reply::Add(answers));
    }

    fn add(&mut self, now_ms: i64, req: ReqId, r: AddRequest) {
        if r.transactional_id.is_empty() {
            return self.add_reply(req, &r.partitions, code(ResponseError::InvalidRequest));
        }
        if r.verify_only {
            return self.verify(req, &r);
        }
        // The producer's previous transaction is completing, or another write of this id is
        // in flight: wait for it (see `Txn::parked`).
        if self.partition_error(r.partition).is_none() {
            if let Some(t) = self.txns.get_mut(&r.transactional_id) {
                if t.meta.producer_id == r.producer_id
                    && t.meta.producer_epoch == r.producer_epoch
                    && t.busy()
                    && t.parked.len() < PARKED_MAX
                {
                    t.parked.push_back((req, r, now_ms));
                    return;
                }
            }
        }
        if let Some(e) = self
            .partition_error(r.partition)
            .or_else(|| self.producer_error(&r.transactional_id, r.producer_id, r.producer_epoch))
        {
            return self.add_reply(req, &r.partitions, code(e));
        }
        let Some(t) = self.txns.get(&r.transactional_id) else {
            return;
        };
        if matches!(
            t.meta.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        ) {
            return self.add_reply(
                req,
                &r.partitions,
                code(ResponseError::ConcurrentTransactions),
            );
        }
        if t.meta.state == TxnState::Ongoing
            && r.partitions.iter().all(|tp| t.meta.partitions.contains(tp))
        {
            return self.add_reply(req, &r.partitions, NONE);
        }
        let start_ms = match t.meta.state {
            TxnState::Ongoing => t.meta.start_ms,
            _ => now_ms,
        };
        let mut partitions = t.meta.partitions.clone();
        partitions.extend(r.partitions.iter().cloned());
        let new = TxnValue {
            state: TxnState::Ongoing,
            partitions,
            last_update_ms: now_ms,
            start_ms,
            ..t.meta.clone()
        };
        let last = (t.last_producer_id, t.last_epoch);
        self.write(
            &r.transactional_id,
            Some(new),
            last,
            Then::Add(req, r.partitions),
        );
    }

    // -----------------------------------------------------------------------------------------
    // EndTxn, markers, completion
    // -----------------------------------------------------------------------------------------

    fn end_reply(&mut self, req: ReqId, error: i16) {
        self.end_reply_as(req, error, (NO_PRODUCER_ID, NO_EPOCH));
    }

    fn end_reply_as(&mut self, req: ReqId, error: i16, (producer_id, producer_epoch): (i64, i16)) {
        self.reply(
            req,
            Reply::End {
                error,
                producer_id,
                producer_epoch,
            },
        );
    }

    fn end(&mut self, now_ms: i64, req: ReqId, r: EndRequest) {
        if r.transactional_id.is_empty() {
            return self.end_reply(req, code(ResponseError::InvalidRequest));
        }
        if r.bump_epoch {
            return self.end_v2(now_ms, req, r);
        }
        if let Some(e) = self
            .partition_error(r.partition)
            .or_else(|| self.producer_error(&r.transactional_id, r.producer_id, r.producer_epoch))
        {
            return self.end_reply(req, code(e));
        }
        let Some(t) = self.txns.get(&r.transactional_id) else {
            return;
        };
        use TxnState as S;
        let error = match (t.meta.state, r.commit) {
            (S::Ongoing, _) => {
                let new = TxnValue {
                    state: if r.commit {
                        S::PrepareCommit
                    } else {
                        S::PrepareAbort
                    },
                    last_update_ms: now_ms,
                    ..t.meta.clone()
                };
                let last = (t.last_producer_id, t.last_epoch);
                let waiter = Waiter::End { req, bumped: false };
                return self.write(
                    &r.transactional_id,
                    Some(new),
                    last,
                    Then::Prepare(Some(waiter)),
                );
            }
            // A retry of an EndTxn that completed.
            (S::CompleteCommit, true) | (S::CompleteAbort, false) => NONE,
            (S::PrepareCommit, true) | (S::PrepareAbort, false) => {
                code(ResponseError::ConcurrentTransactions)
            }
            _ => code(ResponseError::InvalidTxnState),
        };
        self.end_reply(req, error);
    }

    /// EndTxn with transaction version 2 (Kafka's `endTransaction` above version 1). With
    /// "retry" an epoch one below the id's (or, after a rotation, the previous id at
    /// `i16::MAX - 1`) and "current" the id's epoch:
    /// ```text
    ///                  abort            commit
    ///                  retry  current   retry  current
    /// Empty            FENCED bump      FENCED INVALID_TXN_STATE
    /// CompleteAbort    NONE   bump      ITS    ITS
    /// CompleteCommit   ITS    bump      NONE   ITS
    /// ```
    /// "bump" is an abort with no partition added: Prepare/CompleteAbort with no markers and
    /// the epoch bumped. Ongoing (current epoch only) prepares the decision; Prepare* answers
    /// a retry with CONCURRENT_TRANSACTIONS (same decision) or INVALID_TXN_STATE.
    fn end_v2(&mut self, now_ms: i64, req: ReqId, r: EndRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.end_reply(req, code(e));
        }
        let Some(t) = self.txns.get(&r.transactional_id) else {
            return self.end_reply(req, code(ResponseError::InvalidProducerIdMapping));
        };
        let m = &t.meta;
        let retry_on_bump = m.producer_id == r.producer_id
            && i32::from(m.producer_epoch) == i32::from(r.producer_epoch) + 1;
        let retry_on_overflow = m.prev_producer_id == r.producer_id
            && r.producer_epoch == i16::MAX - 1
            && m.producer_epoch == 0;
        let current = m.producer_epoch == r.producer_epoch;
        use TxnState as S;
        let valid_epoch = match m.state {
            S::Ongoing | S::Empty | S::Dead | S::PrepareEpochFence => current,
            S::PrepareCommit | S::PrepareAbort => retry_on_bump,
            S::CompleteCommit | S::CompleteAbort => retry_on_bump || retry_on_overflow || current,
        };
        let retry = retry_on_bump || retry_on_overflow;
        let prepare_state = matches!(m.state, S::PrepareCommit | S::PrepareAbort);
        let error = if m.producer_id != r.producer_id && !retry_on_overflow {
            Some(ResponseError::InvalidProducerIdMapping)
        } else if !valid_epoch {
            Some(ResponseError::ProducerFenced)
        } else if t.pending != Pending::Idle && !prepare_state {
            Some(ResponseError::ConcurrentTransactions)
        } else {
            None
        };
        if let Some(e) = error {
            return self.end_reply(req, code(e));
        }
        let its = code(ResponseError::InvalidTxnState);
        let concurrent = code(ResponseError::ConcurrentTransactions);
        let identity = (m.producer_id, m.producer_epoch);
        let txn = r.transactional_id;
        let ending = |commit, no_partition_added| Ending {
            req,
            commit,
            no_partition_added,
        };
        match (m.state, r.commit) {
            (S::Ongoing, commit) => self.prepare_end(now_ms, &txn, ending(commit, false), None),
            (S::CompleteCommit, true) | (S::CompleteAbort, false) if retry => {
                self.end_reply_as(req, NONE, identity)
            }
            (S::CompleteCommit, false) if retry => self.end_reply(req, its),
            (S::CompleteCommit | S::CompleteAbort | S::Empty, false) => {
                self.prepare_end(now_ms, &txn, ending(false, true), None)
            }
            (S::PrepareCommit, true) | (S::PrepareAbort, false) => self.end_reply(req, concurrent),
            // Never stored by us: an id in these states is being removed or is corrupt.
            (S::Dead | S::PrepareEpochFence, _) => self.end_reply(req, concurrent),
            _ => self.end_reply(req, its),
        }
    }

    /// Writes the Prepare* record of a version 2 EndTxn: the epoch + 1, and when the id is
    /// exhausted the producer id `next` it moves to (allocated first when `None`).
    fn prepare_end(&mut self, now_ms: i64, txn: &str, ending: Ending, next: Option<i64>) {
        let Some(t) = self.txns.get(txn) else {
            return;
        };
        if exhausted(t.meta.producer_epoch) && next.is_none() {
            let token = self.token();
            if let Some(t) = self.txns.get_mut(txn) {
                t.pending = Pending::Token(token);
            }
            let txn = txn.to_owned();
            self.steps.insert(token, Step::AllocEnd { txn, ending });
            self.out.push(Action::AllocateProducerId { token });
            return;
        }
        let mut new = TxnValue {
            state: if ending.commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            },
            producer_epoch: t.meta.producer_epoch.saturating_add(1),
            last_update_ms: now_ms,
            next_producer_id: next.unwrap_or(NO_PRODUCER_ID),
            ..t.meta.clone()
        };
        if ending.no_partition_added {
            new.partitions.clear();
            new.start_ms = now_ms;
        }
        let last = (t.last_producer_id, t.meta.producer_epoch);
        let waiter = Waiter::End {
            req: ending.req,
            bumped: true,
        };
        self.write(txn, Some(new), last, Then::Prepare(Some(waiter)));
    }

    /// The producer id for a version 2 EndTxn that exhausts the current one.
    fn rotated(&mut self, now_ms: i64, txn: &str, ending: Ending, result: Result<i64, i16>) {
        let Some(t) = self.txns.get_mut(txn) else {
            return;
        };
        t.pending = Pending::Idle;
        match result {
            Err(error) => {
                self.end_reply(ending.req, error);
                self.unpark(now_ms, txn);
            }
            Ok(pid) => self.prepare_end(now_ms, txn, ending, Some(pid)),
        }
    }

    /// Writes the markers of a decided transaction to `partitions`, or its Complete* record
    /// when none are left (or there were none: a version 2 abort with no partition added).
    fn mark_or_complete(&mut self, now_ms: i64, txn: &str, partitions: Vec<(String, i32)>) {
        if partitions.is_empty() {
            self.complete(now_ms, txn);
        } else {
            self.send_markers(txn, partitions);
        }
    }

    fn send_markers(&mut self, txn: &str, partitions: Vec<(String, i32)>) {
        let token = self.token();
        let Some(t) = self.txns.get_mut(txn) else {
            return;
        };
        t.pending = Pending::Token(token);
        let (producer_id, producer_epoch) = (t.meta.producer_id, t.meta.producer_epoch);
        let commit = t.meta.state == TxnState::PrepareCommit;
        let coordinator_epoch = match self.partitions.get(&t.partition) {
            Some(Load::Loaded(e) | Load::Loading(e)) => *e,
            None => -1,
        };
        self.out.push(Action::WriteMarkers {
            token,
            transactional_id: txn.to_owned(),
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            partitions,
        });
        self.steps.insert(
            token,
            Step::Markers {
                txn: txn.to_owned(),
            },
        );
    }

    fn markers_written(&mut self, now_ms: i64, token: u64, retry: Vec<(String, i32)>) {
        let Some(Step::Markers { txn }) = self.steps.remove(&token) else {
            return;
        };
        let Some(t) = self.txns.get_mut(&txn) else {
            return;
        };
        if !retry.is_empty() {
            t.pending = Pending::Retry {
                due_ms: now_ms + self.config.marker_retry_backoff_ms,
                partitions: retry,
            };
            return;
        }
        t.pending = Pending::Idle;
        self.complete(now_ms, &txn);
    }

    /// Writes the Complete* record of a transaction whose markers are all written.
    fn complete(&mut self, now_ms: i64, txn: &str) {
        let Some(t) = self.txns.get(txn) else {
            return;
        };
        let state = match t.meta.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return,
        };
        let mut new = TxnValue {
            state,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            ..t.meta.clone()
        };
        if new.next_producer_id != NO_PRODUCER_ID {
            // A version 2 completion that exhausted the id: the producer moves to the new one.
            new.prev_producer_id = new.producer_id;
            new.producer_id = new.next_producer_id;
            new.producer_epoch = 0;
            new.next_producer_id = NO_PRODUCER_ID;
        }
        let last = (t.last_producer_id, t.last_epoch);
        self.write(txn, Some(new), last, Then::Complete);
    }

    fn persisted(&mut self, now_ms: i64, token: u64, error: i16) {
        let Some(Step::Write {
            txn,
            new,
            last,
            then,
        }) = self.steps.remove(&token)
        else {
            return;
        };
        let Some(t) = self.txns.get_mut(&txn) else {
            return;
        };
        t.pending = Pending::Idle;
        if error != NONE {
            let error = write_error(error);
            match then {
                Then::Init(req) => {
                    let gone = t.meta.producer_id == NO_PRODUCER_ID;
                    self.init_reply(req, error, NO_PRODUCER_ID, NO_EPOCH);
                    if gone {
                        return self.remove_txn(now_ms, &txn);
                    }
                }
                Then::Add(req, partitions) => self.add_reply(req, &partitions, error),
                Then::Prepare(reply) => {
                    // An epoch fence that failed keeps its bumped epoch: the write may have
                    // reached the log, and the fenced producer must stay fenced. (A version 2
                    // EndTxn's abort bumps the epoch too, but fences nobody: its producer
                    // retries with the epoch it has.)
                    let fence = !matches!(reply, Some(Waiter::End { .. }));
                    if let Some(new) = new.as_ref().filter(|_| fence) {
                        if new.state == TxnState::PrepareAbort
                            && new.producer_epoch != t.meta.producer_epoch
                        {
                            t.meta.producer_epoch = new.producer_epoch;
                            t.failed_fence = true;
                        }
                    }
                    // The waiting EndTxn (or fencing InitProducerId) gets the write's error.
                    match reply {
                        Some(Waiter::End { req, .. }) => self.end_reply(req, error),
                        Some(Waiter::Init(req)) => {
                            self.init_reply(req, error, NO_PRODUCER_ID, NO_EPOCH)
                        }
                        None => {}
                    }
                }
                Then::Complete => {
                    // Try again after the backoff (no markers left to write).
                    t.pending = Pending::Retry {
                        due_ms: now_ms + self.config.marker_retry_backoff_ms,
                        partitions: Vec::new(),
                    };
                }
                Then::Expire => {}
            }
            self.unpark(now_ms, &txn);
            return;
        }
        let Some(new) = new else {
            // The tombstone of an expired id.
            return self.remove_txn(now_ms, &txn);
        };
        t.meta = new;
        t.last_producer_id = last.0;
        t.last_epoch = last.1;
        t.failed_fence = false;
        match then {
            Then::Init(req) => {
                let (pid, epoch) = (t.meta.producer_id, t.meta.producer_epoch);
                self.init_reply(req, NONE, pid, epoch);
            }
            Then::Add(req, partitions) => self.add_reply(req, &partitions, NONE),
            Then::Prepare(reply) => {
                let partitions: Vec<_> = t.meta.partitions.iter().cloned().collect();
                // The producer's identity for its next transaction (version 2).
                let next = if t.meta.next_producer_id != NO_PRODUCER_ID {
                    (t.meta.next_producer_id, 0)
                } else {
                    (t.meta.producer_id, t.meta.producer_epoch)
                };
                match reply {
                    Some(Waiter::End { req, bumped: true }) => self.end_reply_as(req, NONE, next),
                    Some(Waiter::End { req, bumped: false }) => self.end_reply(req, NONE),
                    Some(Waiter::Init(req)) => self.init_reply(
                        req,
                        code(ResponseError::ConcurrentTransactions),
                        NO_PRODUCER_ID,
                        NO_EPOCH,
                    ),
                    None => {}
                }
                self.mark_or_complete(now_ms, &txn, partitions);
            }
            Then::Complete | Then::Expire => {}
        }
        self.unpark(now_ms, &txn);
    }

    /// Forgets `txn`; its parked requests are answered as for an unknown id.
    fn remove_txn(&mut self, now_ms: i64, txn: &str) {
        if let Some(t) = self.txns.remove(txn) {
            for (req, r, _) in t.parked {
                self.add(now_ms, req, r);
            }
        }
    }

    /// Serves `txn`'s parked requests in arrival order while it is idle (each one that
    /// writes makes it busy again; the rest wait for that write).
    fn unpark(&mut self, now_ms: i64, txn: &str) {
        loop {
            let Some(t) = self.txns.get_mut(txn) else {
                return;
            };
            if t.busy() {
                return;
            }
            let Some((req, r, _)) = t.parked.pop_front() else {
                return;
            };
            self.add(now_ms, req, r);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Time: timeouts, marker retries, expiry
    // -----------------------------------------------------------------------------------------

    fn tick(&mut self, now_ms: i64) {
        let mut waited = Vec::new();
        for t in self.txns.values_mut() {
            while t
                .parked
                .front()
                .is_some_and(|(_, _, at)| now_ms - at >= PARK_MS)
            {
                waited.extend(t.parked.pop_front());
            }
        }
        waited.sort_by_key(|(req, _, _)| *req);
        for (req, r, _) in waited {
            self.add_reply(
                req,
                &r.partitions,
                code(ResponseError::ConcurrentTransactions),
            );
        }
        let mut timed_out = Vec::new();
        let mut retries = Vec::new();
        let mut expired = Vec::new();
        for (id, t) in &self.txns {
            if !self.is_loaded(t.partition) {
                continue;
            }
            match &t.pending {
                Pending::Idle => match t.meta.state {
                    TxnState::Ongoing if t.meta.start_ms + t.meta.timeout_ms as i64 <= now_ms => {
                        timed_out.push(id.clone())
                    }
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                        if t.meta.last_update_ms + self.config.id_expiration_ms <= now_ms =>
                    {
                        expired.push(id.clone())
                    }
                    _ => {}
                },
                Pending::Retry { due_ms, partitions } if *due_ms <= now_ms => {
                    retries.push((id.clone(), partitions.clone()))
                }
                _ => {}
            }
        }
        // Sorted: the order of actions must not depend on the hash map's.
        timed_out.sort();
        retries.sort();
        expired.sort();
        for id in timed_out {
            self.fence_and_abort(now_ms, &id, None);
        }
        for (id, partitions) in retries {
            if let Some(t) = self.txns.get_mut(&id) {
                t.pending = Pending::Idle;
            }
            self.mark_or_complete(now_ms, &id, partitions);
        }
        for id in expired {
            let last = self
                .txns
                .get(&id)
                .map(|t| (t.last_producer_id, t.last_epoch))
                .unwrap_or((NO_PRODUCER_ID, NO_EPOCH));
            self.write(&id, None, last, Then::Expire);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Describe / List
    // -----------------------------------------------------------------------------------------

    fn describe(&mut self, req: ReqId, id: &str, partition: i32) {
        let mut d = TxnDescription {
            error: NONE,
            transactional_id: id.to_owned(),
            state: String::new(),
            timeout_ms: 0,
            start_ms: -1,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_EPOCH,
            partitions: Vec::new(),
        };
        if id.is_empty() {
            d.error = code(ResponseError::InvalidRequest);
        } else if let Some(e) = self.partition_error(partition) {
            d.error = code(e);
        } else {
            match self.txns.get(id) {
                Some(t) if t.meta.producer_id != NO_PRODUCER_ID => {
                    d.state = t.meta.state.name().to_owned();
                    d.timeout_ms = t.meta.timeout_ms;
                    d.start_ms = t.meta.start_ms;
                    d.producer_id = t.meta.producer_id;
                    d.producer_epoch = t.meta.producer_epoch;
                    d.partitions = t.meta.partitions.iter().cloned().collect();
                }
                _ => d.error = code(ResponseError::TransactionalIdNotFound),
            }
        }
        self.reply(req, Reply::Describe(d));
    }

    fn list(&mut self, req: ReqId, f: &ListFilter) {
        let mut out: Vec<ListedTxn> = self
            .txns
            .iter()
            .filter(|(_, t)| t.meta.producer_id != NO_PRODUCER_ID && self.is_loaded(t.partition))
            .filter(|(_, t)| {
                f.states.is_empty() || f.states.iter().any(|s| s == t.meta.state.name())
            })
            .filter(|(_, t)| {
                f.producer_ids.is_empty() || f.producer_ids.contains(&t.meta.producer_id)
            })
            .map(|(id, t)| ListedTxn {
                transactional_id: id.clone(),
                producer_id: t.meta.producer_id,
                state: t.meta.state.name().to_owned(),
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        self.reply(req, Reply::List(out));
    }

    // -----------------------------------------------------------------------------------------
    // Loading and unloading a state partition
    // -----------------------------------------------------------------------------------------

    fn replay(&mut self, partition: i32, rec: TxnRecord) {
        if !matches!(self.partitions.get(&partition), Some(Load::Loading(_))) {
            return;
        }
        match rec.value {
            Some(meta) => {
                self.txns.insert(
                    rec.transactional_id,
                    Txn {
                        partition,
                        meta,
                        last_producer_id: NO_PRODUCER_ID,
                        last_epoch: NO_EPOCH,
                        pending: Pending::Idle,
                        failed_fence: false,
                        parked: VecDeque::new(),
                    },
                );
            }
            None => {
                self.txns.remove(&rec.transactional_id);
            }
        }
    }

    fn load_completed(&mut self, now_ms: i64, partition: i32) {
        let Some(Load::Loading(epoch)) = self.partitions.get(&partition).copied() else {
            return;
        };
        self.partitions.insert(partition, Load::Loaded(epoch));
        // Decided transactions finish: their markers are written (again: writing a marker
        // twice is harmless, the second finds no open transaction).
        let mut decided: Vec<(String, Vec<(String, i32)>)> = self
            .txns
            .iter()
            .filter(|(_, t)| t.partition == partition)
            .filter(|(_, t)| {
                matches!(
                    t.meta.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort
                )
            })
            .map(|(id, t)| (id.clone(), t.meta.partitions.iter().cloned().collect()))
            .collect();
        decided.sort();
        for (id, partitions) in decided {
            self.mark_or_complete(now_ms, &id, partitions);
        }
    }

    /// Forgets the ids of `partition`; requests waiting on them get NOT_COORDINATOR.
    fn drop_partition(&mut self, partition: i32) {
        let ids: BTreeSet<String> = self
            .txns
            .iter()
            .filter(|(_, t)| t.partition == partition)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let mut tokens: Vec<u64> = self
            .steps
            .iter()
            .filter(|(_, s)| match s {
                Step::Alloc { txn, .. }
                | Step::AllocEnd { txn, .. }
                | Step::Write { txn, .. }
                | Step::Markers { txn } => ids.contains(txn),
            })
            .map(|(t, _)| *t)
            .collect();
        tokens.sort();
        let not_coordinator = code(ResponseError::NotCoordinator);
        let mut parked: Vec<(ReqId, AddRequest)> = self
            .txns
            .values_mut()
            .filter(|t| t.partition == partition)
            .flat_map(|t| std::mem::take(&mut t.parked))
            .map(|(req, r, _)| (req, r))
            .collect();
        parked.sort_by_key(|(req, _)| *req);
        for (req, r) in parked {
            self.add_reply(req, &r.partitions, not_coordinator);
        }
        for token in tokens {
            match self.steps.remove(&token) {
                Some(Step::Alloc { req, .. })
                | Some(Step::Write {
                    then: Then::Init(req),
                    ..
                }) => self.init_reply(req, not_coordinator, NO_PRODUCER_ID, NO_EPOCH),
                Some(Step::Write {
                    then: Then::Add(req, partitions),
                    ..
                }) => self.add_reply(req, &partitions, not_coordinator),
                Some(Step::Write {
                    then: Then::Prepare(Some(Waiter::Init(req))),
                    ..
                }) => self.init_reply(req, not_coordinator, NO_PRODUCER_ID, NO_EPOCH),
                Some(Step::Write {
                    then: Then::Prepare(Some(Waiter::End { req, .. })),
                    ..
                })
                | Some(Step::AllocEnd {
                    ending: Ending { req, .. },
                    ..
                }) => self.end_reply(req, not_coordinator),
                _ => {}
            }
        }
        self.txns.retain(|_, t| t.partition != partition);
    }
}
