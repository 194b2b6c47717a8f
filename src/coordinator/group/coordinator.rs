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

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::records::{GroupValue, OffsetValue, StoredMember, StoredRecord};

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
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub group_id: String,
    pub partition: i32,
    /// `None`: every committed offset of the group.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

#[derive(Debug, Clone)]
pub struct OffsetDeleteRequest {
    pub group_id: String,
    pub partition: i32,
    pub topics: Vec<(String, Vec<i32>)>,
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
    /// Done loading; `records_read` lets the coordinator decide to compact.
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
    /// `Event::Persisted` once durable (or failed).
    Persist {
        partition: i32,
        records: Vec<StoredRecord>,
        token: Option<u64>,
    },
    /// Append this snapshot of every live key of `partition`, then, once durable, move the log
    /// start offset to the snapshot's first offset (everything before it is superseded).
    Snapshot {
        partition: i32,
        records: Vec<StoredRecord>,
    },
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<ReqId>,
    awaiting_sync: Option<ReqId>,
    /// Removed when no heartbeat (or join/sync) came before this time.
    heartbeat_deadline_ms: i64,
    /// Joined during the current rebalance (not yet part of a generation).
    is_new: bool,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

#[derive(Debug)]
struct Group {
    id: String,
    partition: i32,
    state: GroupState,
    state_timestamp_ms: i64,
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, valid until the deadline.
    pending_members: HashMap<String, i64>,
    /// End of the current PreparingRebalance phase.
    rebalance_deadline_ms: i64,
    /// A new group waits out `initial_rebalance_delay_ms` even when all members joined.
    initial_delay: bool,
    offsets: BTreeMap<(String, i32), OffsetValue>,
}

impl Group {
    fn new(id: &str, partition: i32, now_ms: i64) -> Group {
        Group {
            id: id.to_owned(),
            partition,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay: false,
            offsets: BTreeMap::new(),
        }
    }

    fn set_state(&mut self, s: GroupState, now_ms: i64) {
        self.state = s;
        self.state_timestamp_ms = now_ms;
    }

    /// Protocols every member supports, in the order of the first member's preference.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else {
            return Vec::new();
        };
        let mut c: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            c.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        c
    }

    fn supports(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
        except: Option<&str>,
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| Some(m.id.as_str()) != except)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != protocol_type)
        {
            return false;
        }
        protocols.iter().any(|(n, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
    }

    /// Picks the protocol with most first-choice votes among the candidates.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut best: Option<(usize, &String)> = None;
        for c in &candidates {
            let votes = self
                .members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .find(|(p, _)| candidates.contains(p))
                        .is_some_and(|(p, _)| p == c)
                })
                .count();
            if best.is_none_or(|(v, _)| votes > v) {
                best = Some((votes, c));
            }
        }
        best.map(|(_, c)| c.clone())
    }

    fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn to_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self
                        .protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn record(&self) -> StoredRecord {
        StoredRecord::Group {
            group: self.id.clone(),
            value: Some(self.to_value()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading,
    Loaded,
}

/// What a `Persist` with a token completes.
#[derive(Debug)]
enum PendingWrite {
    Commit {
        req: ReqId,
        group: String,
        offsets: Vec<CommitPartition>,
        now_ms: i64,
        /// Per-partition results already decided (e.g. metadata too large).
        refused: Vec<(String, i32, i16)>,
    },
    Delete {
        req: ReqId,
    },
    OffsetDelete {
        req: ReqId,
        results: Vec<(String, i32, i16)>,
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
    next_token: u64,
    rng: u64,
    out: Vec<Action>,
    /// Per offsets partition: records in the log since its start, and that count when live
    /// keys were last compared with it (compaction check).
    log_records: HashMap<i32, (usize, usize)>,
}

impl Coordinator {
    /// `seed` makes generated member ids reproducible in tests.
    pub fn new(config: CoordinatorConfig, seed: u64) -> Coordinator {
        Coordinator {
            config,
            groups: HashMap::new(),
            partitions: HashMap::new(),
            pending: HashMap::new(),
            next_token: 1,
            rng: seed | 1,
            out: Vec::new(),
            log_records: HashMap::new(),
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
            }
            Event::Replay(p, rec) => self.replay(now_ms, p, rec),
            Event::LoadCompleted {
                partition,
                records_read,
            } => self.load_completed(now_ms, partition, records_read),
        }
        self.maybe_compact();
        std::mem::take(&mut self.out)
    }

    /// Counts appended records; when a partition's log holds far more records than live keys
    /// and no commit of it is in flight (its record would precede the snapshot but be missing
    /// from it), appends a snapshot so the driver can drop everything before it.
    fn maybe_compact(&mut self) {
        for a in &self.out {
            if let Action::Persist {
                partition, records, ..
            } = a
            {
                self.log_records.entry(*partition).or_insert((0, 0)).0 += records.len();
            }
        }
        let due: Vec<i32> = self
            .log_records
            .iter()
            .filter(|(_, (count, checked))| *count >= checked + COMPACT_CHECK_EVERY_RECORDS)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            let Some(&(count, checked)) = self.log_records.get(&p) else {
                continue;
            };
            if count < checked + COMPACT_CHECK_EVERY_RECORDS || !self.is_loaded(p) {
                continue;
            }
            let commit_in_flight = self.pending.values().any(|w| match w {
                PendingWrite::Commit { group, .. } => {
                    self.groups.get(group).is_none_or(|g| g.partition == p)
                }
                _ => false,
            });
            if commit_in_flight {
                continue;
            }
            let live = self.live_records(p);
            if count > 2 * live.len() + SNAPSHOT_SLACK_RECORDS {
                self.log_records.insert(p, (live.len(), live.len()));
                self.out.push(Action::Snapshot {
                    partition: p,
                    records: live,
                });
            } else {
                self.log_records.insert(p, (count, count));
            }
        }
    }

    /// Every live key of offsets partition `partition`, as records.
    fn live_records(&self, partition: i32) -> Vec<StoredRecord> {
        let mut live = Vec::new();
        for g in self.groups.values().filter(|g| g.partition == partition) {
            for ((t, p), v) in &g.offsets {
                live.push(StoredRecord::Offset {
                    group: g.id.clone(),
                    topic: t.clone(),
                    partition: *p,
                    value: Some(v.clone()),
                });
            }
            live.push(g.record());
        }
        live
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

    /// xorshift64*: member ids need uniqueness, not secrecy.
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn new_member_id(&mut self, client_id: &str, instance_id: Option<&str>) -> String {
        let (a, b) = (self.random(), self.random());
        let prefix = instance_id.unwrap_or(client_id);
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
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
            });
        }
    }

    // -----------------------------------------------------------------------------------------
    // Join
    // -----------------------------------------------------------------------------------------

    fn join(&mut self, now_ms: i64, req: ReqId, r: JoinRequest) {
        let fail = |e: ResponseError| Reply::Join(JoinResult::error(e, &r.member_id));
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, fail(e));
        }
        if r.group_id.is_empty() {
            return self.reply(req, fail(ResponseError::InvalidGroupId));
        }
        if r.session_timeout_ms < self.config.session_timeout_ms_min
            || r.session_timeout_ms > self.config.session_timeout_ms_max
        {
            return self.reply(req, fail(ResponseError::InvalidSessionTimeout));
        }
        if !self.groups.contains_key(&r.group_id) {
            if !r.member_id.is_empty() {
                return self.reply(req, fail(ResponseError::UnknownMemberId));
            }
            self.groups.insert(
                r.group_id.clone(),
                Group::new(&r.group_id, r.partition, now_ms),
            );
        }
        let Some(g) = self.groups.get(&r.group_id) else {
            return;
        };
        if g.state == GroupState::Dead {
            return self.reply(req, fail(ResponseError::CoordinatorNotAvailable));
        }
        let except = (!r.member_id.is_empty()).then_some(r.member_id.as_str());
        if !g.supports(&r.protocol_type, &r.protocols, except) {
            return self.reply(req, fail(ResponseError::InconsistentGroupProtocol));
        }
        if r.member_id.is_empty() {
            self.join_unknown_member(now_ms, req, r);
        } else {
            self.join_known_member(now_ms, req, r);
        }
    }

    fn join_unknown_member(&mut self, now_ms: i64, req: ReqId, r: JoinRequest) {
        let new_id = self.new_member_id(&r.client_id, r.instance_id.as_deref());
        let members_max = self.config.group_members_max;
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        if let Some(instance) = r.instance_id.clone() {
            if let Some(old_id) = g.static_members.get(&instance).cloned() {
                return self.replace_static_member(now_ms, req, r, old_id, new_id);
            }
        } else if r.require_known_member_id {
            let deadline = now_ms + r.session_timeout_ms as i64;
            g.pending_members.insert(new_id.clone(), deadline);
            return self.reply(
                req,
                Reply::Join(JoinResult::error(ResponseError::MemberIdRequired, &new_id)),
            );
        }
        if g.members.len() >= members_max {
            return self.reply(
                req,
                Reply::Join(JoinResult::error(ResponseError::GroupMaxSizeReached, "")),
            );
        }
        self.add_member_and_rebalance(now_ms, req, r, new_id);
    }

    fn add_member_and_rebalance(&mut self, now_ms: i64, req: ReqId, r: JoinRequest, id: String) {
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        g.pending_members.remove(&id);
        if g.members.is_empty() {
            g.protocol_type = Some(r.protocol_type.clone());
        }
        if let Some(instance) = &r.instance_id {
            g.static_members.insert(instance.clone(), id.clone());
        }
        g.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: r.instance_id.clone(),
                client_id: r.client_id.clone(),
                client_host: r.client_host.clone(),
                session_timeout_ms: r.session_timeout_ms,
                rebalance_timeout_ms: r.rebalance_timeout_ms,
                protocols: r.protocols.clone(),
                assignment: Bytes::new(),
                awaiting_join: Some(req),
                awaiting_sync: None,
                heartbeat_deadline_ms: now_ms + r.session_timeout_ms as i64,
                is_new: true,
            },
        );
        if g.leader.is_none() {
            g.leader = Some(id);
        }
        let group_id = r.group_id.clone();
        self.prepare_rebalance(now_ms, &group_id);
        self.maybe_complete_join(now_ms, &group_id);
    }

    fn replace_static_member(
        &mut self,
        now_ms: i64,
        req: ReqId,
        r: JoinRequest,
        old_id: String,
        new_id: String,
    ) {
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        let Some(mut m) = g.members.remove(&old_id) else {
            g.static_members
                .remove(r.instance_id.as_deref().unwrap_or_default());
            return self.add_member_and_rebalance(now_ms, req, r, new_id);
        };
        // The old incarnation is fenced: anything it still waits for fails.
        let mut fenced = Vec::new();
        if let Some(j) = m.awaiting_join.take() {
            fenced.push((j, true));
        }
        if let Some(s) = m.awaiting_sync.take() {
            fenced.push((s, false));
        }
        let protocols_changed = !m.same_protocols(&r.protocols);
        let was_leader = g.leader.as_deref() == Some(old_id.as_str());
        m.id = new_id.clone();
        m.client_id = r.client_id.clone();
        m.client_host = r.client_host.clone();
        m.session_timeout_ms = r.session_timeout_ms;
        m.rebalance_timeout_ms = r.rebalance_timeout_ms;
        m.protocols = r.protocols.clone();
        m.heartbeat_deadline_ms = now_ms + r.session_timeout_ms as i64;
        g.members.insert(new_id.clone(), m);
        if let Some(instance) = &r.instance_id {
            g.static_members.insert(instance.clone(), new_id.clone());
        }
        if was_leader {
            g.leader = Some(new_id.clone());
        }
        let state = g.state;
        let generation = g.generation;
        let protocol_type = g.protocol_type.clone();
        let protocol = g.protocol.clone();
        let leader = g.leader.clone().unwrap_or_default();
        for (id, join) in fenced {
            let e = ResponseError::FencedInstanceId;
            let reply = if join {
                Reply::Join(JoinResult::error(e, &old_id))
            } else {
                Reply::Sync(SyncResult::error(e))
            };
            self.reply(id, reply);
        }
        let group_id = r.group_id.clone();
        match state {
            GroupState::Stable if !was_leader && !protocols_changed => {
                // Same static member back with the same subscription: no rebalance; it gets
                // its old assignment through SyncGroup.
                self.persist_group(&group_id);
                self.reply(
                    req,
                    Reply::Join(JoinResult {
                        error: NONE,
                        generation,
                        protocol_type,
                        protocol_name: protocol,
                        leader,
                        member_id: new_id,
                        members: Vec::new(),
                    }),
                );
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = self.member_mut(&group_id, &new_id) {
                    m.awaiting_join = Some(req);
                }
                self.maybe_complete_join(now_ms, &group_id);
            }
            _ => {
                if let Some(m) = self.member_mut(&group_id, &new_id) {
                    m.awaiting_join = Some(req);
                }
                self.prepare_rebalance(now_ms, &group_id);
                self.maybe_complete_join(now_ms, &group_id);
            }
        }
    }

    fn member_mut(&mut self, group_id: &str, member_id: &str) -> Option<&mut Member> {
        self.groups.get_mut(group_id)?.members.get_mut(member_id)
    }

    fn join_known_member(&mut self, now_ms: i64, req: ReqId, r: JoinRequest) {
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        if g.pending_members.contains_key(&r.member_id) {
            let id = r.member_id.clone();
            return self.add_member_and_rebalance(now_ms, req, r, id);
        }
        if let Some(instance) = &r.instance_id {
            if let Some(current) = g.static_members.get(instance) {
                if *current != r.member_id {
                    return self.reply(
                        req,
                        Reply::Join(JoinResult::error(
                            ResponseError::FencedInstanceId,
                            &r.member_id,
                        )),
                    );
                }
            }
        }
        let state = g.state;
        let is_leader = g.leader.as_deref() == Some(r.member_id.as_str());
        let Some(m) = g.members.get_mut(&r.member_id) else {
            return self.reply(
                req,
                Reply::Join(JoinResult::error(
                    ResponseError::UnknownMemberId,
                    &r.member_id,
                )),
            );
        };
        m.heartbeat_deadline_ms = now_ms + r.session_timeout_ms as i64;
        m.session_timeout_ms = r.session_timeout_ms;
        m.rebalance_timeout_ms = r.rebalance_timeout_ms;
        let unchanged = m.same_protocols(&r.protocols);
        if let Some(old) = m.awaiting_join.replace(req) {
            // A retried join replaces the earlier one, which its client gave up on.
            self.out.push(Action::Reply(
                old,
                Reply::Join(JoinResult::error(
                    ResponseError::RebalanceInProgress,
                    &r.member_id,
                )),
            ));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        let Some(m) = g.members.get_mut(&r.member_id) else {
            return;
        };
        m.protocols = r.protocols.clone();
        let group_id = r.group_id.clone();
        match state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, &group_id),
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && !(state == GroupState::Stable && is_leader) =>
            {
                // A repeated join (lost response, or a follower rejoining unchanged): answer
                // with the current generation, no rebalance.
                m.awaiting_join = None;
                let result = join_result(
                    g,
                    &r.member_id,
                    state == GroupState::CompletingRebalance && is_leader,
                );
                self.reply(req, Reply::Join(result));
            }
            _ => {
                self.prepare_rebalance(now_ms, &group_id);
                self.maybe_complete_join(now_ms, &group_id);
            }
        }
    }

    /// Moves a group to PreparingRebalance (failing pending syncs) unless it is there already.
    fn prepare_rebalance(&mut self, now_ms: i64, group_id: &str) {
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        if g.state == GroupState::PreparingRebalance {
            return;
        }
        let mut failed = Vec::new();
        if g.state == GroupState::CompletingRebalance {
            for m in g.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(s) = m.awaiting_sync.take() {
                    failed.push(s);
                }
            }
        }
        let timeout = if g.state == GroupState::Empty {
            initial_delay
        } else {
            g.members
                .values()
                .map(|m| m.rebalance_timeout_ms as i64)
                .max()
                .unwrap_or(0)
        };
        g.rebalance_deadline_ms = now_ms + timeout;
        g.initial_delay = g.state == GroupState::Empty && initial_delay > 0;
        g.set_state(GroupState::PreparingRebalance, now_ms);
        for s in failed {
            self.reply(
                s,
                Reply::Sync(SyncResult::error(ResponseError::RebalanceInProgress)),
            );
        }
    }

    fn maybe_complete_join(&mut self, now_ms: i64, group_id: &str) {
        let Some(g) = self.groups.get(group_id) else {
            return;
        };
        if g.state == GroupState::PreparingRebalance
            && g.all_joined()
            && (!g.initial_delay || now_ms >= g.rebalance_deadline_ms)
        {
            self.complete_join(now_ms, group_id);
        }
    }

    /// Ends PreparingRebalance: drops members that did not rejoin, starts a new generation.
    fn complete_join(&mut self, now_ms: i64, group_id: &str) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            remove_member(g, &id);
        }
        g.pending_members.clear();
        g.generation += 1;
        if g.members.is_empty() {
            g.protocol = None;
            g.protocol_type = if g.offsets.is_empty() {
                None
            } else {
                g.protocol_type.take()
            };
            g.leader = None;
            g.set_state(GroupState::Empty, now_ms);
            self.persist_group(group_id);
            return;
        }
        g.protocol = g.select_protocol();
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g.set_state(GroupState::CompletingRebalance, now_ms);
        let leader = g.leader.clone().unwrap_or_default();
        let mut replies = Vec::new();
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let result = join_result(g, &id, id == leader);
            if let Some(m) = g.members.get_mut(&id) {
                m.is_new = false;
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
                if let Some(req) = m.awaiting_join.take() {
                    replies.push((req, result));
                }
            }
        }
        for (req, result) in replies {
            self.reply(req, Reply::Join(result));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sync, heartbeat, leave
    // -----------------------------------------------------------------------------------------

    /// Checks member id, static instance and generation; `Err` is the error to answer.
    fn check_member(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let g = self
            .groups
            .get(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if g.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(instance) = instance_id {
            if let Some(current) = g.static_members.get(instance) {
                if current != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !g.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    fn sync(&mut self, now_ms: i64, req: ReqId, r: SyncRequest) {
        let fail = |e| Reply::Sync(SyncResult::error(e));
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, fail(e));
        }
        if let Err(e) = self.check_member(
            &r.group_id,
            &r.member_id,
            r.instance_id.as_deref(),
            r.generation,
        ) {
            return self.reply(req, fail(e));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        let mismatch = r
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != g.protocol_type.as_ref())
            || r.protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != g.protocol.as_ref());
        if mismatch {
            return self.reply(req, fail(ResponseError::InconsistentGroupProtocol));
        }
        let protocol_type = g.protocol_type.clone();
        let protocol_name = g.protocol.clone();
        let ok = |assignment: Bytes| {
            Reply::Sync(SyncResult {
                error: NONE,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment,
            })
        };
        match g.state {
            GroupState::Empty | GroupState::Dead => {
                self.reply(req, fail(ResponseError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                self.reply(req, fail(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let Some(m) = g.members.get_mut(&r.member_id) else {
                    return;
                };
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
                let a = m.assignment.clone();
                self.reply(req, ok(a));
            }
            GroupState::CompletingRebalance => {
                let is_leader = g.leader.as_deref() == Some(r.member_id.as_str());
                let Some(m) = g.members.get_mut(&r.member_id) else {
                    return;
                };
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
                if let Some(old) = m.awaiting_sync.replace(req) {
                    self.out
                        .push(Action::Reply(old, fail(ResponseError::RebalanceInProgress)));
                }
                if !is_leader {
                    return;
                }
                let Some(g) = self.groups.get_mut(&r.group_id) else {
                    return;
                };
                let assigned: HashMap<&String, &Bytes> =
                    r.assignments.iter().map(|(k, v)| (k, v)).collect();
                let mut replies = Vec::new();
                for m in g.members.values_mut() {
                    m.assignment = assigned
                        .get(&m.id)
                        .map(|b| (*b).clone())
                        .unwrap_or_default();
                    if let Some(s) = m.awaiting_sync.take() {
                        replies.push((s, m.assignment.clone()));
                    }
                }
                g.set_state(GroupState::Stable, now_ms);
                let group_id = r.group_id.clone();
                self.persist_group(&group_id);
                for (s, a) in replies {
                    self.reply(s, ok(a));
                }
            }
        }
    }

    fn heartbeat(&mut self, now_ms: i64, req: ReqId, r: HeartbeatRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, Reply::Heartbeat(code(e)));
        }
        if let Err(e) = self.check_member(
            &r.group_id,
            &r.member_id,
            r.instance_id.as_deref(),
            r.generation,
        ) {
            return self.reply(req, Reply::Heartbeat(code(e)));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        let state = g.state;
        if let Some(m) = g.members.get_mut(&r.member_id) {
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
        let error = match state {
            GroupState::Empty | GroupState::Dead => code(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => NONE,
        };
        self.reply(req, Reply::Heartbeat(error));
    }

    fn leave(&mut self, now_ms: i64, req: ReqId, r: LeaveRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, Reply::Leave(code(e), Vec::new()));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            let results = r
                .members
                .iter()
                .map(|(m, i)| (m.clone(), i.clone(), code(ResponseError::UnknownMemberId)))
                .collect();
            return self.reply(
                req,
                Reply::Leave(code(ResponseError::UnknownMemberId), results),
            );
        };
        let mut results = Vec::with_capacity(r.members.len());
        let mut removed_any = false;
        let mut replies = Vec::new();
        for (member_id, instance_id) in &r.members {
            let resolved = match instance_id {
                Some(instance) => match g.static_members.get(instance) {
                    Some(current) if member_id.is_empty() || current == member_id => {
                        Ok(current.clone())
                    }
                    Some(_) => Err(ResponseError::FencedInstanceId),
                    None => Err(ResponseError::UnknownMemberId),
                },
                None if g.pending_members.remove(member_id).is_some() => {
                    results.push((member_id.clone(), None, NONE));
                    continue;
                }
                None if g.members.contains_key(member_id) => Ok(member_id.clone()),
                None => Err(ResponseError::UnknownMemberId),
            };
            match resolved {
                Ok(id) => {
                    if let Some(m) = remove_member(g, &id) {
                        if let Some(j) = m.awaiting_join {
                            replies.push((
                                j,
                                Reply::Join(JoinResult::error(ResponseError::UnknownMemberId, &id)),
                            ));
                        }
                        if let Some(s) = m.awaiting_sync {
                            replies.push((
                                s,
                                Reply::Sync(SyncResult::error(ResponseError::UnknownMemberId)),
                            ));
                        }
                    }
                    removed_any = true;
                    results.push((member_id.clone(), instance_id.clone(), NONE));
                }
                Err(e) => results.push((member_id.clone(), instance_id.clone(), code(e))),
            }
        }
        let top = if r.members.len() == 1 {
            results[0].2
        } else {
            NONE
        };
        for (id, reply) in replies {
            self.reply(id, reply);
        }
        if removed_any {
            self.on_members_removed(now_ms, &r.group_id);
        }
        self.reply(req, Reply::Leave(top, results));
    }

    /// After members left or expired: rebalance the rest (or finish an ongoing one).
    fn on_members_removed(&mut self, now_ms: i64, group_id: &str) {
        let Some(g) = self.groups.get(group_id) else {
            return;
        };
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, group_id);
                self.maybe_complete_join(now_ms, group_id);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, group_id),
            GroupState::Empty | GroupState::Dead => {}
        }
        // A rebalance with nobody left completes at once (→ Empty).
        if let Some(g) = self.groups.get(group_id) {
            if g.state == GroupState::PreparingRebalance && g.members.is_empty() {
                self.complete_join(now_ms, group_id);
            }
        }
    }

    fn tick(&mut self, now_ms: i64) {
        let mut expired: Vec<(String, String)> = Vec::new();
        let mut due: Vec<String> = Vec::new();
        for g in self.groups.values_mut() {
            g.pending_members.retain(|_, deadline| *deadline > now_ms);
            for m in g.members.values() {
                // Members waiting in a join are kept alive by the rebalance timeout instead;
                // members waiting for the leader's sync are kept alive until it comes.
                let waiting = m.awaiting_join.is_some() || m.awaiting_sync.is_some();
                if !waiting && m.heartbeat_deadline_ms <= now_ms {
                    expired.push((g.id.clone(), m.id.clone()));
                }
            }
            if g.state == GroupState::PreparingRebalance {
                due.push(g.id.clone());
            }
        }
        for (group_id, member_id) in expired {
            if let Some(g) = self.groups.get_mut(&group_id) {
                remove_member(g, &member_id);
            }
            self.on_members_removed(now_ms, &group_id);
        }
        for group_id in due {
            let still = self.groups.get(&group_id).is_some_and(|g| {
                g.state == GroupState::PreparingRebalance && now_ms >= g.rebalance_deadline_ms
            });
            if still {
                self.complete_join(now_ms, &group_id);
            } else {
                // Expired MEMBER_ID_REQUIRED reservations may have been all it waited for.
                self.maybe_complete_join(now_ms, &group_id);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Offsets
    // -----------------------------------------------------------------------------------------

    fn commit(&mut self, now_ms: i64, req: ReqId, r: CommitRequest) {
        let all = |e: ResponseError| {
            Reply::Commit(
                r.offsets
                    .iter()
                    .map(|o| (o.topic.clone(), o.partition, code(e)))
                    .collect(),
            )
        };
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, all(e));
        }
        if r.group_id.is_empty() {
            return self.reply(req, all(ResponseError::InvalidGroupId));
        }
        let simple = r.generation < 0 && r.member_id.is_empty();
        let state = self.groups.get(&r.group_id).map(|g| g.state);
        let check = match state {
            None if simple => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
            Some(GroupState::Empty) if simple => Ok(()),
            Some(GroupState::Dead) => Err(ResponseError::CoordinatorNotAvailable),
            Some(s) => self
                .check_member(
                    &r.group_id,
                    &r.member_id,
                    r.instance_id.as_deref(),
                    r.generation,
                )
                .and_then(|()| {
                    if s == GroupState::CompletingRebalance {
                        Err(ResponseError::RebalanceInProgress)
                    } else {
                        Ok(())
                    }
                }),
        };
        if let Err(e) = check {
            return self.reply(req, all(e));
        }
        if !self.groups.contains_key(&r.group_id) {
            self.groups.insert(
                r.group_id.clone(),
                Group::new(&r.group_id, r.partition, now_ms),
            );
        }
        if let Some(m) = self.member_mut(&r.group_id, &r.member_id) {
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
        let max = self.config.offset_metadata_bytes_max;
        let (ok, too_big): (Vec<CommitPartition>, Vec<CommitPartition>) = r
            .offsets
            .into_iter()
            .partition(|o| o.metadata.as_ref().is_none_or(|m| m.len() <= max));
        let refused: Vec<(String, i32, i16)> = too_big
            .into_iter()
            .map(|o| {
                (
                    o.topic,
                    o.partition,
                    code(ResponseError::OffsetMetadataTooLarge),
                )
            })
            .collect();
        if ok.is_empty() {
            return self.reply(req, Reply::Commit(refused));
        }
        let records = ok
            .iter()
            .map(|o| StoredRecord::Offset {
                group: r.group_id.clone(),
                topic: o.topic.clone(),
                partition: o.partition,
                value: Some(offset_value(o, now_ms)),
            })
            .collect();
        let token = self.next_token();
        self.pending.insert(
            token,
            PendingWrite::Commit {
                req,
                group: r.group_id.clone(),
                offsets: ok,
                now_ms,
                refused,
            },
        );
        self.out.push(Action::Persist {
            partition: r.partition,
            records,
            token: Some(token),
        });
    }

    fn persisted(&mut self, token: u64, error: i16) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        match p {
            PendingWrite::Commit {
                req,
                group,
                offsets,
                now_ms,
                mut refused,
            } => {
                if error == NONE {
                    if let Some(g) = self.groups.get_mut(&group) {
                        for o in &offsets {
                            g.offsets
                                .insert((o.topic.clone(), o.partition), offset_value(o, now_ms));
                        }
                    }
                }
                refused.extend(offsets.into_iter().map(|o| (o.topic, o.partition, error)));
                self.reply(req, Reply::Commit(refused));
            }
            PendingWrite::Delete { req } => self.reply(req, Reply::Delete(error)),
            PendingWrite::OffsetDelete { req, results } => {
                let results = results
                    .into_iter()
                    .map(|(t, p, e)| (t, p, if e == NONE { error } else { e }))
                    .collect();
                self.reply(req, Reply::OffsetDelete(error, results));
            }
        }
    }

    fn fetch(&mut self, req: ReqId, r: FetchRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, Reply::Fetch(code(e), Vec::new()));
        }
        let g = self.groups.get(&r.group_id);
        let found = |topic: &str, partition: i32| -> FetchedOffset {
            let v = g.and_then(|g| g.offsets.get(&(topic.to_owned(), partition)));
            FetchedOffset {
                topic: topic.to_owned(),
                partition,
                offset: v.map_or(-1, |v| v.offset),
                leader_epoch: v.map_or(-1, |v| v.leader_epoch),
                metadata: v.map(|v| v.metadata.clone()).unwrap_or_default(),
                error: NONE,
            }
        };
        let offsets = match &r.topics {
            Some(topics) => topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(|p| found(t, *p)).collect::<Vec<_>>())
                .collect(),
            None => g
                .map(|g| g.offsets.keys().map(|(t, p)| found(t, *p)).collect())
                .unwrap_or_default(),
        };
        self.reply(req, Reply::Fetch(NONE, offsets));
    }

    fn describe(&mut self, req: ReqId, group_id: &str, partition: i32) {
        let mut d = GroupDescription {
            error: NONE,
            group_id: group_id.to_owned(),
            state: GroupState::Dead.name().to_owned(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        if let Some(e) = self.partition_error(partition) {
            d.error = code(e);
            return self.reply(req, Reply::Describe(d));
        }
        if let Some(g) = self.groups.get(group_id) {
            let stable = g.state == GroupState::Stable;
            d.state = g.state.name().to_owned();
            d.protocol_type = g.protocol_type.clone().unwrap_or_default();
            if stable {
                d.protocol = g.protocol.clone().unwrap_or_default();
            }
            d.members = g
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&d.protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect();
        }
        self.reply(req, Reply::Describe(d));
    }

    fn list(&mut self, req: ReqId) {
        let mut groups: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| self.is_loaded(g.partition) && g.state != GroupState::Dead)
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name().to_owned(),
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        self.reply(req, Reply::List(groups));
    }

    fn delete(&mut self, now_ms: i64, req: ReqId, group_id: &str, partition: i32) {
        if let Some(e) = self.partition_error(partition) {
            return self.reply(req, Reply::Delete(code(e)));
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            return self.reply(req, Reply::Delete(code(ResponseError::GroupIdNotFound)));
        };
        if g.state == GroupState::Dead {
            return self.reply(req, Reply::Delete(code(ResponseError::GroupIdNotFound)));
        }
        if !g.members.is_empty() || g.state != GroupState::Empty {
            return self.reply(req, Reply::Delete(code(ResponseError::NonEmptyGroup)));
        }
        let mut records: Vec<StoredRecord> = g
            .offsets
            .keys()
            .map(|(t, p)| StoredRecord::Offset {
                group: group_id.to_owned(),
                topic: t.clone(),
                partition: *p,
                value: None,
            })
            .collect();
        records.push(StoredRecord::Group {
            group: group_id.to_owned(),
            value: None,
        });
        let partition = g.partition;
        // Gone at once: OffsetFetch after DeleteGroups must not see the offsets.
        self.groups.remove(group_id);
        let _ = now_ms;
        let token = self.next_token();
        self.pending.insert(token, PendingWrite::Delete { req });
        self.out.push(Action::Persist {
            partition,
            records,
            token: Some(token),
        });
    }

    /// Drops every group's offsets of `topics` and appends their tombstones. Commits of them
    /// still in flight are durable before the tombstones, so they are answered but not
    /// applied, and get tombstones too.
    fn topics_deleted(&mut self, topics: &[String]) {
        let gone = |t: &str| topics.iter().any(|d| d == t);
        let mut tombstones: BTreeMap<i32, Vec<StoredRecord>> = BTreeMap::new();
        let mut bury = |partition: i32, group: &str, topic: String, p: i32| {
            tombstones
                .entry(partition)
                .or_default()
                .push(StoredRecord::Offset {
                    group: group.to_owned(),
                    topic,
                    partition: p,
                    value: None,
                });
        };
        for g in self.groups.values_mut() {
            let keys: Vec<(String, i32)> =
                g.offsets.keys().filter(|(t, _)| gone(t)).cloned().collect();
            for (topic, p) in keys {
                g.offsets.remove(&(topic.clone(), p));
                bury(g.partition, &g.id, topic, p);
            }
        }
        for write in self.pending.values_mut() {
            if let PendingWrite::Commit {
                group,
                offsets,
                refused,
                ..
            } = write
            {
                let Some(partition) = self.groups.get(group.as_str()).map(|g| g.partition) else {
                    continue;
                };
                let (deleted, kept): (Vec<CommitPartition>, Vec<CommitPartition>) =
                    offsets.drain(..).partition(|o| gone(&o.topic));
                *offsets = kept;
                for o in deleted {
                    refused.push((o.topic.clone(), o.partition, NONE));
                    bury(partition, group, o.topic, o.partition);
                }
            }
        }
        for (partition, records) in tombstones {
            self.out.push(Action::Persist {
                partition,
                records,
                token: None,
            });
        }
    }

    fn offset_delete(&mut self, req: ReqId, r: OffsetDeleteRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, Reply::OffsetDelete(code(e), Vec::new()));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return self.reply(
                req,
                Reply::OffsetDelete(code(ResponseError::GroupIdNotFound), Vec::new()),
            );
        };
        let subscribed: Option<Vec<String>> = if g.members.is_empty() {
            Some(Vec::new())
        } else if g.protocol_type.as_deref() == Some("consumer") {
            let protocol = g.protocol.clone().unwrap_or_default();
            Some(
                g.members
                    .values()
                    .flat_map(|m| subscribed_topics(&m.metadata_for(&protocol)))
                    .collect(),
            )
        } else {
            None
        };
        let Some(subscribed) = subscribed else {
            return self.reply(
                req,
                Reply::OffsetDelete(code(ResponseError::NonEmptyGroup), Vec::new()),
            );
        };
        let mut results = Vec::new();
        let mut records = Vec::new();
        for (topic, partitions) in &r.topics {
            for p in partitions {
                if subscribed.contains(topic) {
                    results.push((
                        topic.clone(),
                        *p,
                        code(ResponseError::GroupSubscribedToTopic),
                    ));
                    continue;
                }
                if g.offsets.remove(&(topic.clone(), *p)).is_some() {
                    records.push(StoredRecord::Offset {
                        group: r.group_id.clone(),
                        topic: topic.clone(),
                        partition: *p,
                        value: None,
                    });
                }
                results.push((topic.clone(), *p, NONE));
            }
        }
        if records.is_empty() {
            return self.reply(req, Reply::OffsetDelete(NONE, results));
        }
        let partition = g.partition;
        let token = self.next_token();
        self.pending
            .insert(token, PendingWrite::OffsetDelete { req, results });
        self.out.push(Action::Persist {
            partition,
            records,
            token: Some(token),
        });
    }

    // -----------------------------------------------------------------------------------------
    // Loading
    // -----------------------------------------------------------------------------------------

    fn replay(&mut self, now_ms: i64, partition: i32, rec: StoredRecord) {
        match rec {
            StoredRecord::Offset {
                group,
                topic,
                partition: p,
                value,
            } => match value {
                Some(v) => {
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, partition, now_ms))
                        .offsets
                        .insert((topic, p), v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, p));
                    }
                }
            },
            StoredRecord::Group { group, value } => match value {
                Some(v) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, partition, now_ms));
                    restore_group(g, v, now_ms);
                }
                None => {
                    self.groups.remove(&group);
                }
            },
        }
    }

    fn load_completed(&mut self, now_ms: i64, partition: i32, records_read: usize) {
        self.partitions.insert(partition, Load::Loaded);
        // Restored members get a fresh session to reach us again.
        for g in self
            .groups
            .values_mut()
            .filter(|g| g.partition == partition)
        {
            for m in g.members.values_mut() {
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
            }
        }
        let live = self.live_records(partition);
        // Superseded records dominate: rewrite the live keys and let the driver drop the rest.
        if records_read > 2 * live.len() + SNAPSHOT_SLACK_RECORDS {
            self.log_records.insert(partition, (live.len(), live.len()));
            self.out.push(Action::Snapshot {
                partition,
                records: live,
            });
        } else {
            self.log_records
                .insert(partition, (records_read, records_read));
        }
    }
}

/// Records beyond twice the live keys tolerated before a load rewrites a snapshot.
const SNAPSHOT_SLACK_RECORDS: usize = 64;

/// While running, live keys are compared with the log's record count this often (records).
const COMPACT_CHECK_EVERY_RECORDS: usize = 1_000;

fn offset_value(o: &CommitPartition, now_ms: i64) -> OffsetValue {
    OffsetValue {
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: o.metadata.clone().unwrap_or_default(),
        commit_timestamp_ms: now_ms,
    }
}

fn join_result(g: &Group, member_id: &str, with_members: bool) -> JoinResult {
    let protocol = g.protocol.clone().unwrap_or_default();
    JoinResult {
        error: NONE,
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol.clone(),
        leader: g.leader.clone().unwrap_or_default(),
        member_id: member_id.to_owned(),
        members: if with_members {
            g.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

fn remove_member(g: &mut Group, id: &str) -> Option<Member> {
    let m = g.members.remove(id)?;
    if let Some(instance) = &m.instance_id {
        if g.static_members.get(instance).is_some_and(|cur| cur == id) {
            g.static_members.remove(instance);
        }
    }
    if g.leader.as_deref() == Some(id) {
        g.leader = g.members.keys().next().cloned();
    }
    Some(m)
}

fn restore_group(g: &mut Group, v: GroupValue, now_ms: i64) {
    g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
    g.generation = v.generation;
    g.protocol = v.protocol.clone();
    g.leader = v.leader;
    g.members.clear();
    g.static_members.clear();
    let protocol = v.protocol.unwrap_or_default();
    for m in v.members {
        if let Some(instance) = &m.instance_id {
            g.static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        g.members.insert(
            m.member_id.clone(),
            Member {
                id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline_ms: now_ms + m.session_timeout_ms as i64,
                is_new: false,
            },
        );
    }
    let state = if g.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    g.set_state(state, v.state_timestamp_ms);
}

/// Topics of a ConsumerProtocolSubscription (`version i16 | topics [string] | …`); empty if
/// it cannot be parsed.
pub fn subscribed_topics(metadata: &[u8]) -> Vec<String> {
    fn parse(b: &[u8]) -> Option<Vec<String>> {
        let n = i32::from_be_bytes(b.get(2..6)?.try_into().ok()?);
        let mut pos = 6usize;
        let mut out = Vec::new();
        for _ in 0..n.max(0) {
            let len = i16::from_be_bytes(b.get(pos..pos + 2)?.try_into().ok()?);
            pos += 2;
            let len = usize::try_from(len).ok()?;
            out.push(String::from_utf8(b.get(pos..pos + len)?.to_vec()).ok()?);
            pos += len;
        }
        Some(out)
    }
    parse(metadata).unwrap_or_default()
}

#[cfg(test)]
mod tests;
