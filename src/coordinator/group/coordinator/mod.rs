//! The group coordinator of one shard: a pure state machine for Kafka's classic rebalance
//! protocol and committed offsets. No I/O, no runtime, no clock: the driver feeds it events with
//! the current time (`on_event(now_ms, event)`) and carries out the [`Action`]s it returns
//! (replies to waiting requests, records to append to `__consumer_offsets`).
//!
//! It owns the groups whose `__consumer_offsets` partition is owned by this shard. A partition's
//! groups are served only once it is loaded (`LoadStarted` → `Replay`… → `LoadCompleted`);
//! before that, requests get COORDINATOR_LOAD_IN_PROGRESS.
//!
//! Group states, as in Kafka:
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / rebalance timeout──▶ CompletingRebalance
//!   ▲                   ▲                                                      │ leader SyncGroup
//!   └── last member ────┴──── join of a new member / leave / session expiry ◀── Stable
//! ```
//! The broker never interprets assignments: the leader member computes them (any assignor) and
//! the coordinator relays them. It picks the protocol every member supports, by member vote.
//!
//! Invariants: a request gets exactly one reply; offsets become visible (OffsetFetch) only after
//! their records are durable (`Persisted`); a member id appears in at most one group.
//!
//! Files (each adds its own `impl Coordinator` block, split along the protocol's seams):
//! - `mod.rs`: the public types (config, [`GroupState`], requests, [`Event`], replies,
//!   [`Action`]), the [`Coordinator`] struct, `new`, the `on_event` dispatch, summaries and the
//!   small helpers the other files share;
//! - `state.rs`: the internal state: `Group`, `Member`, partition load state, pending writes;
//! - `join.rs`: JoinGroup and the rebalance it drives (PreparingRebalance → CompletingRebalance),
//!   static members, member ids;
//! - `membership.rs`: SyncGroup, Heartbeat, LeaveGroup and session expiry (`Tick`);
//! - `offsets.rs`: OffsetCommit, OffsetFetch, OffsetDelete, deleted topics, and the
//!   `Persisted` completions of writes with a token;
//! - `admin.rs`: DescribeGroups, ListGroups, DeleteGroups;
//! - `load.rs`: loading a `__consumer_offsets` partition (replay; the log cleaner compacts
//!   the log);
//! - `tests.rs`: deterministic tests with a simulated clock.

mod admin;
mod join;
mod load;
mod membership;
mod offsets;
mod state;

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::records::StoredRecord;
use state::{Group, Load, Member, PendingWrite, TxnOffset};

pub use offsets::subscribed_topics;

/// Identifies a waiting request (allocated by the driver).
pub type ReqId = u64;

const NONE: i16 = 0;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Tunables (Kafka's broker config names in comments).
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// group.min.session.timeout.ms
    pub session_timeout_ms_min: i32,
    /// group.max.session.timeout.ms
    pub session_timeout_ms_max: i32,
    /// group.initial.rebalance.delay.ms: how long a new group waits for more members.
    pub initial_rebalance_delay_ms: i64,
    /// offset.metadata.max.bytes
    pub offset_metadata_bytes_max: usize,
    /// group.max.size
    pub group_members_max: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            session_timeout_ms_min: 1_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 0,
            offset_metadata_bytes_max: 4096,
            group_members_max: 1_000,
        }
    }
}

/// Classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events and actions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub partition: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a dynamic member without id first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub partition: i32,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub partition: i32,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LeaveRequest {
    pub group_id: String,
    pub partition: i32,
    /// (member_id, group_instance_id); member_id may be empty when the instance id names it.
    pub members: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct CommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub partition: i32,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub offsets: Vec<CommitPartition>,
    /// TxnOffsetCommit: (producer id, epoch). The offsets are written in the producer's
    /// transaction and become visible only when its commit marker reaches this partition.
    pub txn: Option<(i64, i16)>,
    /// TxnOffsetCommit: the producer's transactional id (its coordinator verifies that the
    /// producer added this partition, KIP-890 part 1; the driver asks, not this coordinator).
    pub transactional_id: Option<String>,
    /// TxnOffsetCommit v5 (transaction version 2, KIP-890 part 2): the producer sent no
    /// AddOffsetsToTxn, so the driver has its coordinator add this partition instead.
    pub txn_add: bool,
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub group_id: String,
    pub partition: i32,
    /// `None`: every committed offset of the group.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
    /// OffsetFetch v7+ `require_stable` (KIP-447): a partition with offsets committed in a
    /// transaction not yet decided answers UNSTABLE_OFFSET_COMMIT (the client retries).
    pub require_stable: bool,
}

#[derive(Debug, Clone)]
pub struct OffsetDeleteRequest {
    pub group_id: String,
    pub partition: i32,
    pub topics: Vec<(String, Vec<i32>)>,
}

/// A client request for the coordinator, before its driver gives it a [`ReqId`] (this is what
/// travels between shards).
#[derive(Debug, Clone)]
pub enum Request {
    Join(JoinRequest),
    Sync(SyncRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveRequest),
    Commit(CommitRequest),
    Fetch(FetchRequest),
    /// Describe a group (id, offsets partition).
    Describe(String, i32),
    List,
    /// Delete a group (id, offsets partition).
    Delete(String, i32),
    OffsetDelete(OffsetDeleteRequest),
}

impl Request {
    /// The coordinator's input for this request, answered under `id`.
    pub fn into_event(self, id: ReqId) -> Event {
        match self {
            Request::Join(r) => Event::Join(id, r),
            Request::Sync(r) => Event::Sync(id, r),
            Request::Heartbeat(r) => Event::Heartbeat(id, r),
            Request::Leave(r) => Event::Leave(id, r),
            Request::Commit(r) => Event::Commit(id, r),
            Request::Fetch(r) => Event::Fetch(id, r),
            Request::Describe(g, p) => Event::Describe(id, g, p),
            Request::List => Event::List(id),
            Request::Delete(g, p) => Event::Delete(id, g, p),
            Request::OffsetDelete(r) => Event::OffsetDelete(id, r),
        }
    }
}

/// Inputs of the state machine.
#[derive(Debug, Clone)]
pub enum Event {
    /// Time passed: expire sessions, end rebalances whose timeout passed.
    Tick,
    Join(ReqId, JoinRequest),
    Sync(ReqId, SyncRequest),
    Heartbeat(ReqId, HeartbeatRequest),
    Leave(ReqId, LeaveRequest),
    Commit(ReqId, CommitRequest),
    Fetch(ReqId, FetchRequest),
    Describe(ReqId, String, i32),
    List(ReqId),
    Delete(ReqId, String, i32),
    OffsetDelete(ReqId, OffsetDeleteRequest),
    /// Records of a `Persist` with this token are durable (`error` 0) or failed.
    Persisted {
        token: u64,
        error: i16,
    },
    /// These topics were deleted: their committed offsets go too, as in Kafka (a re-created
    /// topic of the same name must not resume at the old offsets).
    TopicsDeleted(Vec<String>),
    /// The driver starts loading an offsets partition this shard owns.
    LoadStarted(i32),
    /// One record read from the partition, in log order.
    Replay(i32, StoredRecord),
    /// This broker no longer leads the offsets partition: its groups are dropped (another
    /// broker loads them).
    Unloaded(i32),
    /// A record of a transactional batch of `producer_id`, read from the partition: pending
    /// until the producer's marker.
    ReplayTxn(i32, i64, StoredRecord),
    /// A transaction marker of `producer_id` was written to offsets partition `partition` (or
    /// read from it while loading): its pending offsets there become visible, or are dropped.
    TxnMarker {
        partition: i32,
        producer_id: i64,
        commit: bool,
    },
    /// Done loading (`records_read`: how many records the load replayed).
    LoadCompleted {
        partition: i32,
        records_read: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: code(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: code(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub error: i16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupDescription {
    pub error: i16,
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

/// Answers to requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Join(JoinResult),
    Sync(SyncResult),
    Heartbeat(i16),
    /// Top-level error, then per member (member_id, instance_id, error).
    Leave(i16, Vec<(String, Option<String>, i16)>),
    /// Per partition (topic, partition, error).
    Commit(Vec<(String, i32, i16)>),
    /// Group-level error, then offsets.
    Fetch(i16, Vec<FetchedOffset>),
    Describe(GroupDescription),
    List(Vec<ListedGroup>),
    Delete(i16),
    /// Group-level error, then per partition (topic, partition, error).
    OffsetDelete(i16, Vec<(String, i32, i16)>),
}

/// Outputs of the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Reply(ReqId, Reply),
    /// Append these records to offsets partition `partition`; with a token, report
    /// `Event::Persisted` once durable (or failed). With `txn` (producer id, epoch), as a
    /// transactional batch of that producer.
    Persist {
        partition: i32,
        records: Vec<StoredRecord>,
        token: Option<u64>,
        txn: Option<(i64, i16)>,
    },
}

/// A group as metrics see it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group: String,
    pub state: &'static str,
    pub members: usize,
    /// (topic, partition, committed offset)
    pub offsets: Vec<(String, i32, i64)>,
}

/// The coordinator of one shard. See the module documentation.
pub struct Coordinator {
    config: CoordinatorConfig,
    groups: HashMap<String, Group>,
    partitions: HashMap<i32, Load>,
    pending: HashMap<u64, PendingWrite>,
    /// Offsets committed in open transactions, per producer id: (offsets partition, group,
    /// topic, partition, value), in commit order.
    txn_offsets: HashMap<i64, Vec<TxnOffset>>,
    next_token: u64,
    rng: sluice_base::Rng,
    out: Vec<Action>,
}

impl Coordinator {
    /// `seed` makes generated member ids reproducible in tests.
    pub fn new(config: CoordinatorConfig, seed: u64) -> Coordinator {
        Coordinator {
            config,
            groups: HashMap::new(),
            partitions: HashMap::new(),
            pending: HashMap::new(),
            txn_offsets: HashMap::new(),
            next_token: 1,
            rng: sluice_base::Rng::new(seed | 1),
            out: Vec::new(),
        }
    }

    /// The single entry point: applies `event` at time `now_ms` and returns what to do.
    pub fn on_event(&mut self, now_ms: i64, event: Event) -> Vec<Action> {
        match event {
            Event::Tick => self.tick(now_ms),
            Event::Join(req, r) => self.join(now_ms, req, r),
            Event::Sync(req, r) => self.sync(now_ms, req, r),
            Event::Heartbeat(req, r) => self.heartbeat(now_ms, req, r),
            Event::Leave(req, r) => self.leave(now_ms, req, r),
            Event::Commit(req, r) => self.commit(now_ms, req, r),
            Event::Fetch(req, r) => self.fetch(req, r),
            Event::Describe(req, g, p) => self.describe(req, &g, p),
            Event::List(req) => self.list(req),
            Event::Delete(req, g, p) => self.delete(now_ms, req, &g, p),
            Event::OffsetDelete(req, r) => self.offset_delete(req, r),
            Event::Persisted { token, error } => self.persisted(token, error),
            Event::TopicsDeleted(topics) => self.topics_deleted(&topics),
            Event::LoadStarted(p) => {
                self.partitions.insert(p, Load::Loading);
                self.groups.retain(|_, g| g.partition != p);
                self.drop_txn_offsets(p);
            }
            Event::Replay(p, rec) => self.replay(now_ms, p, rec),
            Event::ReplayTxn(p, producer_id, rec) => self.replay_txn(p, producer_id, rec),
            Event::TxnMarker {
                partition,
                producer_id,
                commit,
            } => self.txn_marker(now_ms, partition, producer_id, commit),
            Event::Unloaded(p) => self.unload(p),
            Event::LoadCompleted { partition, .. } => self.load_completed(now_ms, partition),
        }
        std::mem::take(&mut self.out)
    }

    /// A read-only view of every group, for metrics: (group, state, members, committed offsets).
    pub fn summaries(&self) -> Vec<GroupSummary> {
        self.groups
            .values()
            .map(|g| GroupSummary {
                group: g.id.clone(),
                state: g.state.name(),
                members: g.members.len(),
                offsets: g
                    .offsets
                    .iter()
                    .map(|((t, p), v)| (t.clone(), *p, v.offset))
                    .collect(),
            })
            .collect()
    }

    /// Whether `partition` is loaded (requests for its groups are served).
    pub fn is_loaded(&self, partition: i32) -> bool {
        self.partitions.get(&partition) == Some(&Load::Loaded)
    }

    fn reply(&mut self, req: ReqId, r: Reply) {
        self.out.push(Action::Reply(req, r));
    }

    fn next_token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// The error for a request on `partition` if it cannot be served now.
    fn partition_error(&self, partition: i32) -> Option<ResponseError> {
        match self.partitions.get(&partition) {
            Some(Load::Loaded) => None,
            // Not started yet: routing says we own it, so the load is about to begin.
            Some(Load::Loading) | None => Some(ResponseError::CoordinatorLoadInProgress),
        }
    }

    fn persist_group(&mut self, group_id: &str) {
        if let Some(g) = self.groups.get(group_id) {
            let rec = g.record();
            let partition = g.partition;
            self.out.push(Action::Persist {
                partition,
                records: vec![rec],
                token: None,
                txn: None,
            });
        }
    }

    fn member_mut(&mut self, group_id: &str, member_id: &str) -> Option<&mut Member> {
        self.groups.get_mut(group_id)?.members.get_mut(member_id)
    }
}

#[cfg(test)]
mod tests;
