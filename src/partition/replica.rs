//! The leader's view of a partition's replicas, and the follower's truncation rule: pure state
//! and functions, no I/O (see `docs/architecture.md`, "Replication"). The shard's driver feeds
//! the leader state follower fetches, its own log end and clock ticks, and carries out what it
//! answers (an ISR change to send to the controller); the seeded simulation in `sim` drives
//! the same code under faults, with the real controller.
//!
//! The rules are Kafka's (`Partition.scala`):
//! - a follower's position is its fetch offset; it is *caught up* when it fetched everything
//!   the leader had at its previous fetch, and the time of that is kept;
//! - it joins the ISR once its position reaches the high watermark and the start of the
//!   current leader epoch, and leaves after `replica.lag.time.max.ms` without catching up;
//! - one ISR change is in flight at a time; while an expansion is pending the high watermark
//!   already counts the new member (stricter), while a shrink is pending it still counts the
//!   old one (never advance on an unconfirmed shrink);
//! - the high watermark is the least position over the leader and the maximal ISR (and over
//!   live followers that caught up recently but are not in the ISR yet), never moves back, and
//!   stays while the committed ISR is smaller than the effective `min.insync.replicas`
//!   (KIP-966), which is what makes the eligible leader replicas safe to elect.

use std::collections::BTreeMap;

use crate::cluster::image::PartitionRegistration;

/// How long a pending ISR change waits for the controller before it is asked again.
pub const ISR_CHANGE_RETRY_MS: i64 = 5_000;

/// The limits a leader applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaPolicy {
    /// `replica.lag.time.max.ms`.
    pub lag_max_ms: i64,
    /// min(`min.insync.replicas`, replication factor).
    pub min_isr: usize,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// Its log end as its last fetch said; -1 until it fetched from this leader epoch.
    pub leo: i64,
    pub last_fetch_ms: i64,
    /// The leader's own position when that fetch came.
    pub last_fetch_leader_end: i64,
    /// When it last had everything the leader had (0: never in this leader epoch).
    pub last_caught_up_ms: i64,
}

impl Follower {
    fn new(caught_up_ms: i64) -> Follower {
        Follower {
            leo: -1,
            last_fetch_ms: 0,
            last_fetch_leader_end: -1,
            last_caught_up_ms: caught_up_ms,
        }
    }
}

/// An ISR change for the controller (Kafka's AlterPartition): valid only against the
/// registration at `partition_epoch` led at `leader_epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsr {
    pub isr: Vec<i32>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    change: AlterIsr,
    sent_ms: i64,
    expand: bool,
}

/// A partition as its leader sees it during one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    me: i32,
    reg: PartitionRegistration,
    /// Live (unfenced) brokers and their registration epochs.
    live: BTreeMap<i32, u64>,
    policy: ReplicaPolicy,
    epoch_start: i64,
    hw: i64,
    followers: BTreeMap<i32, Follower>,
    pending: Option<Pending>,
}

impl LeaderState {
    /// This broker (`me`) leads from now, with its log ending at `local_end`; `hw` is the
    /// high watermark it knew as a follower. ISR members count as caught up now, so that they
    /// are not dropped before they had a chance to fetch.
    pub fn new(
        me: i32,
        reg: PartitionRegistration,
        live: BTreeMap<i32, u64>,
        policy: ReplicaPolicy,
        local_end: i64,
        hw: i64,
        now: i64,
    ) -> LeaderState {
        let followers = reg
            .replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| (r, Follower::new(if reg.isr.contains(&r) { now } else { 0 })))
            .collect();
        let mut s = LeaderState {
            me,
            reg,
            live,
            policy,
            epoch_start: local_end,
            hw: hw.min(local_end),
            followers,
            pending: None,
        };
        s.advance_hw(now, local_end);
        s
    }

    pub fn high_watermark(&self) -> i64 {
        self.hw
    }

    /// The log end when this leader epoch began: offsets from here were written by this leader.
    pub fn epoch_start(&self) -> i64 {
        self.epoch_start
    }

    pub fn leader_epoch(&self) -> i32 {
        self.reg.leader_epoch
    }

    pub fn registration(&self) -> &PartitionRegistration {
        &self.reg
    }

    pub fn follower(&self, id: i32) -> Option<&Follower> {
        self.followers.get(&id)
    }

    /// The ISR the high watermark is computed over: the registered one, plus the member a
    /// pending expansion adds.
    pub fn maximal_isr(&self) -> Vec<i32> {
        match &self.pending {
            Some(p) if p.expand => p.change.isr.clone(),
            _ => self.reg.isr.clone(),
        }
    }

    /// Whether an acks=all write may be acknowledged once the high watermark passes it.
    pub fn enough_replicas(&self) -> bool {
        self.maximal_isr().len() >= self.policy.min_isr
    }

    /// Whether the registered ISR allows acks=all writes at all (checked before appending).
    pub fn isr_allows_writes(&self) -> bool {
        self.reg.isr.len() >= self.policy.min_isr
    }

    /// A fetch from `replica` at `fetch_offset` (its log end), the leader's own position being
    /// `local_end`. Returns an ISR change to send, if one is due.
    pub fn on_fetch(
        &mut self,
        now: i64,
        replica: i32,
        fetch_offset: i64,
        local_end: i64,
    ) -> Option<AlterIsr> {
        let f = self.followers.get_mut(&replica)?;
        if fetch_offset >= local_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now);
        } else if f.last_fetch_leader_end >= 0 && fetch_offset >= f.last_fetch_leader_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.leo = fetch_offset;
        f.last_fetch_ms = now;
        f.last_fetch_leader_end = local_end;
        let change = self.maybe_expand(now, replica);
        self.advance_hw(now, local_end);
        change
    }

    /// The leader's own position moved (a write, or a sync with `--flush always`). Returns
    /// whether the high watermark moved.
    pub fn on_local_end(&mut self, now: i64, local_end: i64) -> bool {
        self.advance_hw(now, local_end)
    }

    /// Time passes: drops followers that lagged too long; retries a change the controller did
    /// not answer.
    pub fn on_tick(&mut self, now: i64, local_end: i64) -> Option<AlterIsr> {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| now - p.sent_ms >= ISR_CHANGE_RETRY_MS)
        {
            self.pending = None;
        }
        let change = self.maybe_shrink(now);
        self.advance_hw(now, local_end);
        change
    }

    /// A new registration of the same leader epoch (an ISR change committed, replicas or
    /// config changed), with the live brokers as the image says now.
    pub fn on_registration(
        &mut self,
        now: i64,
        reg: PartitionRegistration,
        live: BTreeMap<i32, u64>,
        policy: ReplicaPolicy,
        local_end: i64,
    ) -> Option<AlterIsr> {
        if reg.partition_epoch < self.reg.partition_epoch {
            return None;
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| reg.partition_epoch > p.change.partition_epoch)
        {
            self.pending = None;
        }
        self.followers.retain(|id, _| reg.replicas.contains(id));
        for &r in &reg.replicas {
            if r != self.me {
                self.followers.entry(r).or_insert_with(|| Follower::new(0));
            }
        }
        self.reg = reg;
        self.live = live;
        self.policy = policy;
        let change = self.maybe_shrink(now);
        self.advance_hw(now, local_end);
        change
    }

    fn maybe_expand(&mut self, now: i64, replica: i32) -> Option<AlterIsr> {
        if self.pending.is_some() || self.reg.isr.contains(&replica) {
            return None;
        }
        let f = self.followers.get(&replica)?;
        let eligible = self.live.contains_key(&replica)
            && f.leo >= self.hw
            && f.leo >= self.epoch_start
            && self.reg.replicas.contains(&replica);
        if !eligible {
            return None;
        }
        let mut isr = self.reg.isr.clone();
        isr.push(replica);
        Some(self.propose(now, isr, true))
    }

    fn maybe_shrink(&mut self, now: i64) -> Option<AlterIsr> {
        if self.pending.is_some() {
            return None;
        }
        let lag = self.policy.lag_max_ms;
        let out: Vec<i32> = self
            .reg
            .isr
            .iter()
            .copied()
            .filter(|&r| r != self.me)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_none_or(|f| now - f.last_caught_up_ms > lag)
            })
            .collect();
        if out.is_empty() {
            return None;
        }
        let isr = self
            .reg
            .isr
            .iter()
            .copied()
            .filter(|r| !out.contains(r))
            .collect();
        Some(self.propose(now, isr, false))
    }

    fn propose(&mut self, now: i64, isr: Vec<i32>, expand: bool) -> AlterIsr {
        let change = AlterIsr {
            isr,
            leader_epoch: self.reg.leader_epoch,
            partition_epoch: self.reg.partition_epoch,
        };
        self.pending = Some(Pending {
            change: change.clone(),
            sent_ms: now,
            expand,
        });
        change
    }

    fn advance_hw(&mut self, now: i64, local_end: i64) -> bool {
        // KIP-966: the *committed* ISR must reach min.insync.replicas, not the maximal one: a
        // pending expansion the controller has not accepted must not move the high watermark,
        // or the replicas it made eligible leaders (ELR) while the ISR was below the minimum
        // would lack what it then commits (found by the replica simulation, seed 124).
        if self.reg.isr.len() < self.policy.min_isr {
            return false;
        }
        let isr = self.maximal_isr();
        let mut new = local_end;
        for (id, f) in &self.followers {
            let counts = isr.contains(id)
                || (self.live.contains_key(id)
                    && f.leo >= 0
                    && f.last_caught_up_ms > 0
                    && now - f.last_caught_up_ms <= self.policy.lag_max_ms);
            if counts {
                new = new.min(f.leo);
            }
        }
        if new > self.hw {
            self.hw = new;
            true
        } else {
            false
        }
    }
}

/// The leader's check of a follower fetch carrying `last_fetched_epoch` (v12+): the
/// `(epoch, end offset)` to truncate to when the follower's log diverges from the leader's,
/// given the leader's `end_for_epoch` = its (largest epoch ≤ `last_fetched_epoch`, end offset
/// of that epoch). Kafka's `Partition.fetchRecords`.
pub fn divergence(
    last_fetched_epoch: i32,
    fetch_offset: i64,
    end_for_epoch: (i32, i64),
) -> Option<(i32, i64)> {
    if last_fetched_epoch < 0 {
        return None;
    }
    let (epoch, end) = end_for_epoch;
    (epoch < last_fetched_epoch || end < fetch_offset).then_some((epoch, end))
}

/// Where a follower truncates its log when the leader reports `diverging` = (epoch, end
/// offset): `local_for_epoch` is the follower's own (largest epoch ≤ that epoch, its end
/// offset), or (-1, -1) when it has none; `leo` its log end; `log_start` its log start.
/// Kafka's `AbstractFetcherThread.getOffsetTruncationState`: never below what both logs hold
/// for the same epoch, never to the local high watermark. When the follower lacks the
/// leader's epoch it truncates to the end of its own earlier epoch and the next fetch finds
/// the next divergence, if any.
pub fn truncation_offset(
    diverging: (i32, i64),
    local_for_epoch: (i32, i64),
    leo: i64,
    log_start: i64,
) -> i64 {
    let (leader_epoch, leader_end) = diverging;
    let (local_epoch, local_end) = local_for_epoch;
    let to = if local_end < 0 {
        leader_end.min(leo)
    } else if local_epoch != leader_epoch {
        local_end.min(leo)
    } else {
        leader_end.min(local_end)
    };
    to.max(log_start).min(leo)
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
