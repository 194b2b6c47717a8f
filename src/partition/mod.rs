//! Partitions: a partition's log and its state as a replica.
//!
//! The high watermark lives here, not in storage: it is the end of what is committed. On a
//! single node it is the log's written offset. In a cluster the partition's leader computes it
//! over its in-sync replicas ([`replica::LeaderState`]) and a follower takes it from its
//! leader's fetch answers (capped at its own log end). Consumers read only below it
//! ([`Partition::read`]); acks=all waits for it ([`Partition::wait_acks`]); fetch `min_bytes`
//! waits for it to move ([`Partition::wait_for_data`]).
//!
//! A replica's *position* (what the high watermark is computed from) is its written offset, or
//! its durable offset with `--flush always`: with that policy a record counts as held by a
//! replica only once that replica synced it (see `docs/replication.md`).
//!
//! Must not touch: other partitions, the mesh, metadata (a partition is given its registration).

pub mod dir;
pub mod records;
pub mod replica;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use sluice_storage::{AppendInfo, FlushPolicy, Log, Notify, ReadResult, StorageError};

use crate::cluster::image::PartitionRegistration;
use replica::{AlterIsr, LeaderState, ReplicaPolicy};

/// A partition's role on this broker.
#[derive(Debug)]
pub enum Role {
    /// A single node: every write is committed once written.
    Single,
    /// This broker leads the partition (in a cluster).
    Leader(Box<LeaderState>),
    /// Another broker leads it (`leader` -1: none) and this one copies it.
    Follower { leader: i32, leader_epoch: i32 },
}

/// Why an acks=all write was not acknowledged.
#[derive(Debug)]
pub enum AckError {
    Storage(StorageError),
    /// Leadership moved before the write was committed.
    NotLeader,
    /// Committed, but the ISR shrank below `min.insync.replicas` meanwhile.
    NotEnoughReplicasAfterAppend,
}

impl AckError {
    pub fn code(&self) -> ResponseError {
        match self {
            AckError::Storage(e) => crate::errors::storage_error(e),
            AckError::NotLeader => ResponseError::NotLeaderOrFollower,
            AckError::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend,
        }
    }
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::Storage(e) => e.fmt(f),
            AckError::NotLeader => f.write_str("leadership moved before the write was committed"),
            AckError::NotEnoughReplicasAfterAppend => {
                f.write_str("the in-sync replicas fell below min.insync.replicas")
            }
        }
    }
}

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub topic_id: [u8; 16],
    pub index: i32,
    pub log: Rc<Log>,
    /// The leader epoch of the partition's registration, kept current by the shard's
    /// metadata applier (every leader change bumps it).
    pub leader_epoch: Cell<i32>,
    role: RefCell<Role>,
    /// The high watermark as a follower (and the start of a new leader's).
    follower_hw: Cell<i64>,
    /// Woken when the high watermark or the role may have changed, or a truncation ended.
    progress: Notify,
    /// A follower's truncation is in progress ([`Partition::truncate_as_follower`]).
    truncating: Cell<bool>,
    /// acks=all writes waiting for the high watermark, by (last offset, arrival), with the
    /// leader epoch they were appended at (Kafka's produce purgatory). Bounded by the produce
    /// requests in flight.
    acks_waiting: RefCell<AckWaiters>,
    acks_seq: Cell<u64>,
}

type AckWaiters = BTreeMap<(i64, u64), (i32, flume::Sender<Result<(), AckError>>)>;

/// A partition's name: (topic, index).
pub type PartitionKey = (String, i32);

impl Partition {
    pub fn new(
        topic: String,
        topic_id: [u8; 16],
        index: i32,
        log: Rc<Log>,
        leader_epoch: i32,
        clustered: bool,
    ) -> Partition {
        // In a cluster a replica knows nothing until its registration is applied.
        let role = if clustered {
            Role::Follower {
                leader: -1,
                leader_epoch: -1,
            }
        } else {
            Role::Single
        };
        Partition {
            topic,
            topic_id,
            index,
            log,
            leader_epoch: Cell::new(leader_epoch),
            role: RefCell::new(role),
            follower_hw: Cell::new(0),
            progress: Notify::default(),
            truncating: Cell::new(false),
            acks_waiting: RefCell::new(BTreeMap::new()),
            acks_seq: Cell::new(0),
        }
    }

    /// This replica's position: what it holds as far as the high watermark is concerned.
    pub fn position(&self) -> i64 {
        if self.log.config().flush == FlushPolicy::Always {
            self.log.durable_offset()
        } else {
            self.log.written_offset()
        }
    }

    /// First offset not yet committed; consumers see only offsets below it.
    pub fn high_watermark(&self) -> i64 {
        let now = crate::util::now_ms();
        let position = self.position();
        match &mut *self.role.borrow_mut() {
            Role::Single => self.log.written_offset(),
            Role::Leader(s) => {
                s.on_local_end(now, position);
                s.high_watermark()
            }
            Role::Follower { .. } => self.follower_hw.get().min(self.log.written_offset()),
        }
    }

    /// Whether this broker leads the partition at `epoch` (any epoch: `None`).
    pub fn is_leader(&self, epoch: Option<i32>) -> bool {
        match &*self.role.borrow() {
            Role::Single => true,
            Role::Leader(s) => epoch.is_none_or(|e| e == s.leader_epoch()),
            Role::Follower { .. } => false,
        }
    }

    /// The leader's log end when its epoch began (0 for a single node).
    pub fn epoch_start(&self) -> i64 {
        match &*self.role.borrow() {
            Role::Leader(s) => s.epoch_start(),
            _ => 0,
        }
    }

    /// Whether acks=all writes may be appended: the ISR is at least the effective
    /// `min.insync.replicas` (always on a single node).
    pub fn isr_allows_writes(&self) -> bool {
        match &*self.role.borrow() {
            Role::Leader(s) => s.isr_allows_writes(),
            Role::Single => true,
            Role::Follower { .. } => false,
        }
    }

    /// The leader this follower copies, and its epoch (`None` when leading or single).
    pub fn following(&self) -> Option<(i32, i32)> {
        match &*self.role.borrow() {
            Role::Follower {
                leader,
                leader_epoch,
            } => Some((*leader, *leader_epoch)),
            _ => None,
        }
    }

    /// Committed batches from the one containing `offset`, up to `max_bytes` (at least one).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        self.log
            .read(offset, max_bytes, self.high_watermark())
            .await
    }

    /// The last stable offset: below it every transaction is decided (read_committed
    /// consumers read up to here). The high watermark when no transaction is open; never
    /// below the log start, as in Kafka: retention or DeleteRecords may remove the start of a
    /// transaction still open, and a consumer told an offset below the log start would be
    /// sent out of range.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.log
            .first_unstable_offset()
            .map_or(hw, |first| first.max(self.log.log_start_offset()).min(hw))
    }

    /// Batches from the one containing `offset` below `bound` (at most the high watermark: the
    /// caller read it, or the last stable offset, synchronously before), up to `max_bytes` (at
    /// least one batch with `min_one`, see `Log::read_limited`).
    pub async fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        bound: i64,
    ) -> Result<ReadResult, StorageError> {
        self.log
            .read_limited(offset, max_bytes, min_one, bound)
            .await
    }

    /// A follower's read: written batches from `offset`, past the high watermark.
    pub async fn read_for_replica(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        self.log
            .read_limited(offset, max_bytes, min_one, self.log.written_offset())
            .await
    }

    /// Resolves once the high watermark (read_committed: the last stable offset) is past
    /// `offset`, or the log closed. Cancel-safe.
    pub async fn wait_for_data(&self, offset: i64, read_committed: bool) {
        loop {
            let changed = self.progress.notified();
            let bound = if read_committed {
                self.last_stable_offset()
            } else {
                self.high_watermark()
            };
            if bound > offset || self.log.is_closed() {
                return;
            }
            let position = self.position();
            futures_util::future::select(changed, Box::pin(self.log.wait_written_beyond(position)))
                .await;
        }
    }

    /// Resolves once there is written data past `offset` for a follower to copy.
    pub async fn wait_for_replica_data(&self, offset: i64) {
        self.log.wait_written_beyond(offset).await
    }

    /// Appends a producer's batches as this partition's leader.
    pub fn append(&self, records: Bytes, now_ms: i64) -> Result<AppendInfo, StorageError> {
        self.log.append(records, self.leader_epoch.get(), now_ms)
    }

    /// Resolves when the append `info` satisfies `acks`: 0 at once, 1 once written, -1 (all)
    /// once committed (durable per the flush policy on a single node; past the high watermark
    /// of the in-sync replicas in a cluster).
    pub async fn wait_acks(&self, info: &AppendInfo, acks: i16) -> Result<(), AckError> {
        match acks {
            0 => Ok(()),
            1 => self
                .log
                .wait_append_written(info)
                .await
                .map_err(AckError::Storage),
            _ => {
                if matches!(&*self.role.borrow(), Role::Single) {
                    return self
                        .log
                        .wait_append_durable(info)
                        .await
                        .map_err(AckError::Storage);
                }
                let epoch = self.leader_epoch.get();
                // This replica's position first (durable with `--flush always`), then the
                // followers'.
                self.log
                    .wait_append_durable(info)
                    .await
                    .map_err(AckError::Storage)?;
                self.wait_committed(info.last_offset, epoch).await
            }
        }
    }

    /// Waits until the high watermark passes `last_offset` while this broker leads at `epoch`.
    /// Called once the write is this replica's (its position is past it), so only followers
    /// can hold it back: it waits in the partition's purgatory, completed in offset order when
    /// follower fetches move the high watermark ([`Partition::complete_acks`]) — one wake-up
    /// per completed write, however many wait.
    async fn wait_committed(&self, last_offset: i64, epoch: i32) -> Result<(), AckError> {
        if !self.is_leader(Some(epoch)) {
            return Err(AckError::NotLeader);
        }
        if self.high_watermark() > last_offset {
            return self.ack_outcome();
        }
        let (tx, rx) = flume::bounded(1);
        let seq = self.acks_seq.get();
        self.acks_seq.set(seq + 1);
        self.acks_waiting
            .borrow_mut()
            .insert((last_offset, seq), (epoch, tx));
        rx.recv_async().await.unwrap_or(Err(AckError::NotLeader))
    }

    /// What a write the high watermark passed is answered with.
    fn ack_outcome(&self) -> Result<(), AckError> {
        match &*self.role.borrow() {
            Role::Leader(s) if !s.enough_replicas() => Err(AckError::NotEnoughReplicasAfterAppend),
            _ => Ok(()),
        }
    }

    /// Answers the waiting acks=all writes the high watermark passed, and fails those of a
    /// leader epoch this broker no longer leads.
    fn complete_acks(&self) {
        if self.acks_waiting.borrow().is_empty() {
            return;
        }
        let epoch = match &*self.role.borrow() {
            Role::Leader(s) => Some(s.leader_epoch()),
            _ => None,
        };
        let hw = self.high_watermark();
        let done = {
            let mut waiting = self.acks_waiting.borrow_mut();
            let rest = waiting.split_off(&(hw, 0));
            let mut done: Vec<_> = std::mem::replace(&mut *waiting, rest).into_iter().collect();
            let stale: Vec<(i64, u64)> = waiting
                .iter()
                .filter(|(_, (e, _))| Some(*e) != epoch)
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                if let Some(v) = waiting.remove(&k) {
                    done.push((k, v));
                }
            }
            done
        };
        let outcome = self.ack_outcome();
        for (_, (e, tx)) in done {
            let r = if Some(e) != epoch {
                Err(AckError::NotLeader)
            } else {
                match &outcome {
                    Ok(()) => Ok(()),
                    Err(_) => Err(AckError::NotEnoughReplicasAfterAppend),
                }
            };
            let _ = tx.try_send(r);
        }
    }

    /// Applies this broker's part in the partition's registration `reg` (cluster mode): lead
    /// it, follow it, or update the leader's view. `me` is this broker; `live` the unfenced
    /// brokers and their epochs. Returns an ISR change to send to the controller, if due.
    pub async fn set_registration(
        &self,
        me: i32,
        reg: &PartitionRegistration,
        live: &BTreeMap<i32, u64>,
        policy: ReplicaPolicy,
    ) -> Option<AlterIsr> {
        self.leader_epoch.set(reg.leader_epoch);
        let now = crate::util::now_ms();
        let position = self.position();
        let change = if reg.leader == me {
            let same_epoch = matches!(&*self.role.borrow(),
                Role::Leader(s) if s.leader_epoch() == reg.leader_epoch);
            if same_epoch {
                match &mut *self.role.borrow_mut() {
                    Role::Leader(s) => {
                        s.on_registration(now, reg.clone(), live.clone(), policy, position)
                    }
                    _ => None,
                }
            } else {
                // A truncation the follower started must end first: finishing after this
                // point it would cut the new leader's log.
                loop {
                    let done = self.progress.notified();
                    if !self.truncating.get() {
                        break;
                    }
                    done.await;
                }
                // From here to `begin_epoch`'s first step nothing yields: no follower append
                // can slip in between the role change and the epoch's start offset.
                let hw = self.high_watermark();
                let state = LeaderState::new(
                    me,
                    reg.clone(),
                    live.clone(),
                    policy,
                    self.log.log_end_offset(),
                    hw,
                    now,
                );
                tracing::info!(topic = %self.topic, partition = self.index, leader_epoch = reg.leader_epoch, epoch_start = state.epoch_start(), high_watermark = state.high_watermark(), "leading");
                *self.role.borrow_mut() = Role::Leader(Box::new(state));
                // Record the new epoch's start before taking writes (Kafka's makeLeader).
                if let Err(e) = self.log.begin_epoch(reg.leader_epoch).await {
                    tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "persisting the leader epoch start failed");
                }
                None
            }
        } else {
            let hw = self.high_watermark();
            let was_leader = matches!(&*self.role.borrow(), Role::Leader(_));
            if was_leader {
                tracing::info!(topic = %self.topic, partition = self.index, leader = reg.leader, leader_epoch = reg.leader_epoch, "following");
            }
            self.follower_hw.set(hw);
            *self.role.borrow_mut() = Role::Follower {
                leader: reg.leader,
                leader_epoch: reg.leader_epoch,
            };
            None
        };
        self.complete_acks();
        self.progress.notify_all();
        change
    }

    /// A follower fetched at `fetch_offset` (its log end): the leader's bookkeeping. Returns an
    /// ISR change to send, if due.
    pub fn on_follower_fetch(&self, replica: i32, fetch_offset: i64) -> Option<AlterIsr> {
        let now = crate::util::now_ms();
        let position = self.position();
        let change = match &mut *self.role.borrow_mut() {
            Role::Leader(s) => s.on_fetch(now, replica, fetch_offset, position),
            _ => None,
        };
        self.complete_acks();
        self.progress.notify_all();
        change
    }

    /// Time passes for the leader: followers that lag too long leave the ISR.
    pub fn tick(&self) -> Option<AlterIsr> {
        let now = crate::util::now_ms();
        let position = self.position();
        let change = match &mut *self.role.borrow_mut() {
            Role::Leader(s) => s.on_tick(now, position),
            _ => None,
        };
        self.complete_acks();
        change
    }

    /// Truncates the log to `offset` as the follower of `leader` at `leader_epoch` (a
    /// divergence its leader reported). Nothing happens if the role changed meanwhile; a
    /// change to leading waits until the truncation is over.
    pub async fn truncate_as_follower(
        &self,
        leader: i32,
        leader_epoch: i32,
        offset: i64,
    ) -> Result<(), StorageError> {
        if self.following() != Some((leader, leader_epoch)) || self.truncating.get() {
            return Ok(());
        }
        self.truncating.set(true);
        let r = self.log.truncate_to(offset).await;
        self.truncating.set(false);
        self.progress.notify_all();
        r
    }

    /// A follower learned its leader's high watermark.
    pub fn set_follower_hw(&self, leader_hw: i64) {
        let hw = leader_hw.min(self.log.written_offset());
        if hw > self.follower_hw.get() {
            self.follower_hw.set(hw);
            self.progress.notify_all();
        }
    }

    /// As its leader: (under-replicated: ISR smaller than the replicas, under min ISR, the
    /// largest follower lag in offsets behind this replica's position). `None` unless leading
    /// in a cluster.
    pub fn replication_health(&self) -> Option<(bool, bool, i64)> {
        let position = self.position();
        match &*self.role.borrow() {
            Role::Leader(s) => {
                let reg = s.registration();
                let lag = reg
                    .replicas
                    .iter()
                    .filter_map(|&r| s.follower(r))
                    .map(|f| position - f.leo.max(0))
                    .max()
                    .unwrap_or(0)
                    .max(0);
                Some((
                    reg.isr.len() < reg.replicas.len(),
                    !s.isr_allows_writes(),
                    lag,
                ))
            }
            _ => None,
        }
    }

    /// Whether `replica` is a follower of this partition as its leader sees it (one of the
    /// replicas other than the leader).
    pub fn is_follower(&self, replica: i32) -> bool {
        match &*self.role.borrow() {
            Role::Leader(s) => s.follower(replica).is_some(),
            _ => false,
        }
    }
}
