//! Idempotent-producer state of one partition: per producer id, its epoch and the last
//! [`BATCHES_PER_PRODUCER`] batches' sequence ranges and offsets, so a retried batch is
//! recognised (and answered with its original offsets) and a gap or stale epoch is refused, as
//! Kafka's ProducerStateManager does.
//!
//! Transactions: a producer's first transactional batch opens its transaction (its offset is
//! the transaction's first offset, which holds the last stable offset back); a marker
//! (`txn.rs`) closes it, and an abort marker adds the range to the aborted transactions that
//! read_committed fetches name. A marker with a newer epoch fences the producer's older one.
//!
//! Snapshot file `producer.snapshot` (written with the checkpoint, atomically):
//! ```text
//! magic "SLPS" | version u16 = 3 | crc32c u32 (of everything after it) |
//! covered_offset i64 | producer_count u32 |
//!   producer_id i64 | epoch i16 | last_timestamp_ms i64 | open_txn_first_offset i64 (-1: none) |
//!   coordinator_epoch i32 | batch_count u8 |
//!     first_seq i32 | last_seq i32 | base_offset i64 | last_offset i64   (× batch_count)
//! aborted_count u32 | producer_id i64 | first_offset i64 | last_offset i64   (× aborted_count)
//! completed_count u32 | producer_id i64 | first_offset i64 | marker_offset i64 (× completed_count)
//! ```
//! The aborted list holds the active segment's aborted transactions: a roll moves those of the
//! segment it seals into the segment's `.txnindex` (`txnindex.rs`). A snapshot of an older
//! release may list older ones too; opening the log moves them (`log/recover.rs`).
//! The completed list is the transactions a truncation could reopen (see
//! `ProducerStates::truncate_from`): kept across a restart, a follower that truncates a marker
//! after one still holds the last stable offset back. Versions 1 (no transaction fields, no
//! aborted list) and 2 (no completed list) are still read. `covered_offset` is the
//! log end offset the snapshot describes; recovery drops entries at or above the recovered log
//! end and replays batches from there.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::txn::{AbortedTxn, ControlType};
use sluice_base::Reader;

/// Batches remembered per producer: Kafka's limit on in-flight requests with idempotence.
pub const BATCHES_PER_PRODUCER: usize = 5;
/// Producers remembered per partition; the least recently active are dropped beyond this.
pub const PRODUCERS_MAX: usize = 100_000;

const MAGIC: &[u8; 4] = b"SLPS";
const VERSION: u16 = 3;
/// Transactions completed recently whose marker a truncation could remove (reopening them):
/// truncation only removes what is above the high watermark, so the last few suffice.
const COMPLETED_KEPT: usize = 4_096;
/// Verification guards kept per partition at most (a producer that asked and never wrote
/// leaves one until its next marker); beyond it the oldest goes.
pub const VERIFYING_MAX: usize = 10_000;

/// Why an idempotent batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {got} is older than the current epoch {current}")]
    InvalidEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error("unknown producer {producer_id} (its state expired or was never written); first sequence {got}")]
    UnknownProducerId { producer_id: i64, got: i32 },
    #[error("producer {producer_id}: {why}")]
    InvalidTxnState { producer_id: i64, why: &'static str },
    #[error("a transactional batch must carry a producer id")]
    TransactionalWithoutIdempotence { producer_id: i64 },
    #[error("producer {producer_id}: marker of coordinator epoch {got}, older than {current}")]
    CoordinatorFenced {
        producer_id: i64,
        current: i32,
        got: i32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    epoch: i16,
    last_timestamp_ms: i64,
    batches: VecDeque<BatchMeta>,
    /// First offset of the producer's open transaction.
    open_txn: Option<i64>,
    /// Coordinator epoch of the last marker (older coordinators are fenced).
    coordinator_epoch: i32,
}

impl Entry {
    fn new(epoch: i16, timestamp_ms: i64) -> Entry {
        Entry {
            epoch,
            last_timestamp_ms: timestamp_ms,
            batches: VecDeque::new(),
            open_txn: None,
            coordinator_epoch: -1,
        }
    }
}

/// Outcome of checking a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already in the log: answer with these offsets, append nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// A verification guard handed out for a producer (KIP-890).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Guard {
    epoch: i16,
    id: u64,
    /// Transaction version 2: the producer's transactions each have their own epoch, so a
    /// marker of that epoch or older ends its *previous* transaction, not the one the guard
    /// verified (whose marker will carry a newer epoch): it does not withdraw the guard.
    epoch_bump: bool,
}

/// Per-partition producer state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, Entry>,
    /// Aborted transactions of the active segment (see the module documentation), in marker
    /// (`last_offset`) order.
    aborted: Vec<AbortedTxn>,
    /// Recently completed transactions (producer id, first offset, marker offset: an aborted
    /// one's shape), in marker order: a truncation that removes the marker reopens the
    /// transaction.
    completed: VecDeque<AbortedTxn>,
    /// Verification guards handed out. Not in snapshots.
    verifying: HashMap<i64, Guard>,
    /// The last guard handed out.
    last_guard: u64,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

fn last_seq_of(h: &BatchHeader) -> i32 {
    let n = h.last_offset_delta.max(0) as i64;
    ((h.base_sequence as i64 + n) % (i32::MAX as i64 + 1)) as i32
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks an incoming batch against the state (does not change it).
    pub fn check(&self, h: &BatchHeader) -> Result<Check, ProducerError> {
        if h.is_control() {
            return self.check_marker(h.producer_id, h.producer_epoch, None);
        }
        if h.is_transactional() && h.producer_id < 0 {
            return Err(ProducerError::TransactionalWithoutIdempotence {
                producer_id: h.producer_id,
            });
        }
        if !h.is_transactional()
            && self
                .producers
                .get(&h.producer_id)
                .is_some_and(|e| e.open_txn.is_some())
        {
            return Err(ProducerError::InvalidTxnState {
                producer_id: h.producer_id,
                why: "a non-transactional batch while its transaction is open",
            });
        }
        if h.is_transactional() && h.base_sequence < 0 {
            // A coordinator's write for the producer (no sequence): only its epoch is checked.
            return match self.producers.get(&h.producer_id) {
                Some(e) if h.producer_epoch < e.epoch => Err(ProducerError::InvalidEpoch {
                    producer_id: h.producer_id,
                    current: e.epoch,
                    got: h.producer_epoch,
                }),
                _ => Ok(Check::Append),
            };
        }
        if h.producer_id < 0 || h.base_sequence < 0 {
            return Ok(Check::Append);
        }
        let pid = h.producer_id;
        let Some(e) = self.producers.get(&pid) else {
            if h.base_sequence != 0 {
                return Err(ProducerError::UnknownProducerId {
                    producer_id: pid,
                    got: h.base_sequence,
                });
            }
            return Ok(Check::Append);
        };
        if h.producer_epoch < e.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: pid,
                current: e.epoch,
                got: h.producer_epoch,
            });
        }
        if h.producer_epoch > e.epoch {
            if h.base_sequence != 0 {
                return Err(ProducerError::OutOfOrderSequence {
                    producer_id: pid,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            return Ok(Check::Append);
        }
        let last = last_seq_of(h);
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(Check::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            });
        }
        let expected = e.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if h.base_sequence != expected {
            return Err(ProducerError::OutOfOrderSequence {
                producer_id: pid,
                expected,
                got: h.base_sequence,
            });
        }
        Ok(Check::Append)
    }

    /// Checks a marker for (producer_id, epoch) from a coordinator at `coordinator_epoch`
    /// (`None`: not known, as for a batch copied from a leader).
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: Option<i32>,
    ) -> Result<Check, ProducerError> {
        let Some(e) = self.producers.get(&producer_id) else {
            return Ok(Check::Append);
        };
        if epoch < e.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id,
                current: e.epoch,
                got: epoch,
            });
        }
        if let Some(c) = coordinator_epoch {
            if c < e.coordinator_epoch {
                return Err(ProducerError::CoordinatorFenced {
                    producer_id,
                    current: e.coordinator_epoch,
                    got: c,
                });
            }
        }
        Ok(Check::Append)
    }

    /// Records an appended batch (after a successful [`ProducerStates::check`], or on replay).
    /// `control`: what a control batch says (`txn::parse_marker`).
    pub fn record(
        &mut self,
        h: &BatchHeader,
        base_offset: i64,
        timestamp_ms: i64,
        control: Option<(ControlType, i32)>,
    ) {
        if h.is_control() {
            if let Some((kind, coordinator_epoch)) = control {
                self.record_marker(h, base_offset, timestamp_ms, kind, coordinator_epoch);
            }
            return;
        }
        // Without a sequence there is no idempotence state to keep, but a transactional batch
        // (a coordinator's transactional offset commit carries none) still opens its
        // producer's transaction.
        if h.producer_id < 0 || (h.base_sequence < 0 && !h.is_transactional()) {
            return;
        }
        if !self.producers.contains_key(&h.producer_id) && self.producers.len() >= PRODUCERS_MAX {
            self.evict_oldest();
        }
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| Entry::new(h.producer_epoch, timestamp_ms));
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        if h.is_transactional() && e.open_txn.is_none() {
            e.open_txn = Some(base_offset);
            self.verifying.remove(&h.producer_id);
        }
        if h.base_sequence < 0 {
            e.last_timestamp_ms = e.last_timestamp_ms.max(timestamp_ms);
            return;
        }
        e.last_timestamp_ms = e.last_timestamp_ms.max(timestamp_ms);
        e.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq_of(h),
            base_offset,
            last_offset: base_offset + h.last_offset_delta.max(0) as i64,
        });
        while e.batches.len() > BATCHES_PER_PRODUCER {
            e.batches.pop_front();
        }
    }

    fn record_marker(
        &mut self,
        h: &BatchHeader,
        offset: i64,
        timestamp_ms: i64,
        kind: ControlType,
        coordinator_epoch: i32,
    ) {
        if !self.producers.contains_key(&h.producer_id) && self.producers.len() >= PRODUCERS_MAX {
            self.evict_oldest();
        }
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| Entry::new(h.producer_epoch, timestamp_ms));
        if h.producer_epoch > e.epoch {
            // A fencing marker: the producer's next batches start a new sequence.
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.coordinator_epoch = e.coordinator_epoch.max(coordinator_epoch);
        e.last_timestamp_ms = e.last_timestamp_ms.max(timestamp_ms);
        // The transaction ended (or never started here): a verification made before this
        // marker no longer holds.
        let newer = |g: &Guard| !g.epoch_bump || h.producer_epoch > g.epoch;
        if self.verifying.get(&h.producer_id).is_some_and(newer) {
            self.verifying.remove(&h.producer_id);
        }
        let Some(first) = e.open_txn.take() else {
            return;
        };
        if kind == ControlType::Abort {
            self.aborted.push(AbortedTxn {
                producer_id: h.producer_id,
                first_offset: first,
                last_offset: offset,
            });
        }
        self.completed.push_back(AbortedTxn {
            producer_id: h.producer_id,
            first_offset: first,
            last_offset: offset,
        });
        while self.completed.len() > COMPLETED_KEPT {
            self.completed.pop_front();
        }
    }

    /// Whether a transactional batch of `producer_id` at `epoch` must be verified with the
    /// coordinator before it is appended: no transaction of it is open here, and its epoch is
    /// not older than the one known (an older one is refused by [`ProducerStates::check`]).
    pub fn needs_verification(&self, producer_id: i64, epoch: i16) -> bool {
        match self.producers.get(&producer_id) {
            Some(e) if epoch < e.epoch => false,
            Some(e) => !(e.epoch == epoch && e.open_txn.is_some()),
            None => true,
        }
    }

    /// The guard for verifying `producer_id` at `epoch`: the one handed out already for that
    /// epoch (and protocol), else a new one. `epoch_bump`: the producer uses transaction
    /// version 2 (see [`Guard::epoch_bump`]).
    pub fn verification_guard(&mut self, producer_id: i64, epoch: i16, epoch_bump: bool) -> u64 {
        if let Some(g) = self.verifying.get(&producer_id) {
            if g.epoch == epoch && g.epoch_bump == epoch_bump {
                return g.id;
            }
        }
        if self.verifying.len() >= VERIFYING_MAX && !self.verifying.contains_key(&producer_id) {
            if let Some((&oldest, _)) = self.verifying.iter().min_by_key(|(_, g)| g.id) {
                self.verifying.remove(&oldest);
            }
        }
        self.last_guard += 1;
        let guard = Guard {
            epoch,
            id: self.last_guard,
            epoch_bump,
        };
        self.verifying.insert(producer_id, guard);
        self.last_guard
    }

    /// Whether a transactional batch of `producer_id` at `epoch`, verified under `guard`
    /// (`None`: not verified), may be appended: it needs no verification, or the guard is the
    /// one still standing for that epoch.
    pub fn verified(&self, producer_id: i64, epoch: i16, guard: Option<u64>) -> bool {
        !self.needs_verification(producer_id, epoch)
            || guard.is_some_and(|id| {
                self.verifying
                    .get(&producer_id)
                    .is_some_and(|g| g.epoch == epoch && g.id == id)
            })
    }

    /// The first offset of the oldest open transaction: the last stable offset is at most this.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.values().filter_map(|e| e.open_txn).min()
    }

    /// Aborted transactions whose range meets `from..to` (what a read_committed fetch of those
    /// offsets must be told about), as (producer id, first offset).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        // Sorted by last_offset: skip those that ended before `from`.
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|a| a.first_offset < to)
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    /// The aborted transactions whose marker lies below `offset` (a roll's to seal there).
    pub fn aborted_below(&self, offset: i64) -> &[AbortedTxn] {
        &self.aborted[..self.aborted.partition_point(|a| a.last_offset < offset)]
    }

    /// Adds aborted transactions known from elsewhere (the index file of a segment that is
    /// active again); one already remembered (same marker offset) is not added twice.
    pub fn merge_aborted(&mut self, entries: impl IntoIterator<Item = AbortedTxn>) {
        self.aborted.extend(entries);
        self.aborted.sort_by_key(|a| a.last_offset);
        self.aborted.dedup_by_key(|a| a.last_offset);
    }

    /// Forgets aborted transactions that ended below `log_start` (their data is gone), or
    /// below a segment just sealed (its index file holds them).
    pub fn prune_aborted(&mut self, below: i64) {
        let n = self.aborted.partition_point(|a| a.last_offset < below);
        self.aborted.drain(..n);
    }

    /// The number of open transactions and aborted ranges remembered (for metrics).
    pub fn txn_counts(&self) -> (usize, usize) {
        let open = self
            .producers
            .values()
            .filter(|e| e.open_txn.is_some())
            .count();
        (open, self.aborted.len())
    }

    /// The last offset of each producer's latest batch (the cleaner keeps those batches).
    pub fn last_batch_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .filter_map(|e| e.batches.back().map(|b| b.last_offset))
            .collect()
    }

    fn evict_oldest(&mut self) {
        // A producer with an open transaction is never evicted: its first offset holds the
        // last stable offset.
        if let Some((&pid, _)) = self
            .producers
            .iter()
            .filter(|(_, e)| e.open_txn.is_none())
            .min_by_key(|(_, e)| e.last_timestamp_ms)
        {
            self.producers.remove(&pid);
        }
    }

    /// Forgets batches at or above `offset` (truncation, failed writes); producers left with
    /// no batch are forgotten entirely.
    /// Transactions whose marker goes are open again; those that started at or above
    /// `offset` are gone.
    pub fn truncate_from(&mut self, offset: i64) {
        while let Some(&c) = self.completed.back() {
            if c.last_offset < offset {
                break;
            }
            self.completed.pop_back();
            if c.first_offset < offset {
                if let Some(e) = self.producers.get_mut(&c.producer_id) {
                    e.open_txn = Some(c.first_offset);
                }
            }
        }
        let n = self.aborted.partition_point(|a| a.last_offset < offset);
        self.aborted.truncate(n);
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.base_offset < offset);
            if e.open_txn.is_some_and(|f| f >= offset) {
                e.open_txn = None;
            }
            !e.batches.is_empty() || e.open_txn.is_some()
        });
    }

    /// Drops producers idle for longer than `expiration_ms` (producer.id.expiration.ms).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.open_txn.is_some() || now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    pub fn encode(&self, covered_offset: i64) -> Vec<u8> {
        let mut body = Vec::with_capacity(12 + self.producers.len() * 64);
        body.extend_from_slice(&covered_offset.to_be_bytes());
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        for pid in ids {
            let e = &self.producers[pid];
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp_ms.to_be_bytes());
            body.extend_from_slice(&e.open_txn.unwrap_or(-1).to_be_bytes());
            body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.base_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        crate::txnindex::put_entries(&mut body, self.aborted.iter());
        crate::txnindex::put_entries(&mut body, self.completed.iter());
        let mut out = Vec::with_capacity(10 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a snapshot: `(covered_offset, states)`, or `None` if it is not a valid one.
    pub fn decode(bytes: &[u8]) -> Option<(i64, ProducerStates)> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != MAGIC {
            return None;
        }
        let version = r.u16()?;
        if !(1..=VERSION).contains(&version) {
            return None;
        }
        let crc = r.u32()?;
        if crc32c::crc32c(r.rest()) != crc {
            return None;
        }
        let covered = r.i64()?;
        let count = r.u32()? as usize;
        let mut states = ProducerStates::default();
        for _ in 0..count.min(PRODUCERS_MAX) {
            let pid = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp_ms = r.i64()?;
            let (open_txn, coordinator_epoch) = if version >= 2 {
                let first = r.i64()?;
                (Some(first).filter(|f| *f >= 0), r.i32()?)
            } else {
                (None, -1)
            };
            let n = r.u8()? as usize;
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            states.producers.insert(
                pid,
                Entry {
                    epoch,
                    last_timestamp_ms,
                    batches,
                    open_txn,
                    coordinator_epoch,
                },
            );
        }
        if version >= 2 {
            states.aborted = crate::txnindex::get_entries(&mut r)?;
        }
        if version >= 3 {
            let completed = crate::txnindex::get_entries(&mut r)?;
            let extra = completed.len().saturating_sub(COMPLETED_KEPT);
            states.completed = completed.into_iter().skip(extra).collect();
        }
        r.is_empty().then_some((covered, states))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut s = ProducerStates::default();
        let h0 = header(7, 0, 0, 3);
        assert_eq!(s.check(&h0), Ok(Check::Append));
        s.record(&h0, 100, 1, None);
        assert_eq!(
            s.check(&h0),
            Ok(Check::Duplicate {
                base_offset: 100,
                last_offset: 102
            })
        );
        let h1 = header(7, 0, 3, 2);
        assert_eq!(s.check(&h1), Ok(Check::Append));
        s.record(&h1, 103, 2, None);
        assert!(matches!(
            s.check(&header(7, 0, 9, 1)),
            Err(ProducerError::OutOfOrderSequence {
                expected: 5,
                got: 9,
                ..
            })
        ));
        assert!(matches!(
            s.check(&header(7, -1, 5, 1)),
            Err(ProducerError::InvalidEpoch { .. })
        ));
        assert!(matches!(
            s.check(&header(7, 1, 5, 1)),
            Err(ProducerError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(s.check(&header(7, 1, 0, 1)), Ok(Check::Append));
        assert!(matches!(
            s.check(&header(8, 0, 4, 1)),
            Err(ProducerError::UnknownProducerId { .. })
        ));
        assert_eq!(s.check(&header(-1, -1, -1, 1)), Ok(Check::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&header(1, 0, i, 1), i as i64, 0, None);
        }
        assert_eq!(
            s.check(&header(1, 0, 6, 1)),
            Ok(Check::Duplicate {
                base_offset: 6,
                last_offset: 6
            })
        );
        assert!(
            s.check(&header(1, 0, 1, 1)).is_err(),
            "too old to be recognised"
        );
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 2), 0, 5, None);
        s.record(&header(2, 3, 0, 1), 2, 6, None);
        let bytes = s.encode(3);
        assert_eq!(ProducerStates::decode(&bytes), Some((3, s.clone())));
        for cut in 0..bytes.len() {
            assert!(ProducerStates::decode(&bytes[..cut]).is_none());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(ProducerStates::decode(&b).is_none(), "flip at {i}");
        }
    }

    fn txn_header(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader {
            attributes: 0x10,
            ..header(pid, epoch, seq, count)
        }
    }

    fn marker(pid: i64, epoch: i16) -> BatchHeader {
        BatchHeader {
            attributes: 0x30,
            ..header(pid, epoch, -1, 1)
        }
    }

    #[test]
    fn verification_guards_withdrawn_by_markers_and_the_opening_batch() {
        let mut s = ProducerStates::default();
        // A new producer needs verification; an unverified batch may not go in.
        assert!(s.needs_verification(1, 0));
        assert!(!s.verified(1, 0, None));
        let g = s.verification_guard(1, 0, false);
        assert_eq!(
            s.verification_guard(1, 0, false),
            g,
            "one guard per producer and epoch"
        );
        assert!(s.verified(1, 0, Some(g)));
        assert!(!s.verified(1, 0, Some(g + 1)), "another guard");
        assert!(!s.verified(1, 1, Some(g)), "another epoch");
        // The transaction ended (its abort marker came) between verification and append: the
        // verified batch is refused, so it cannot open a transaction nobody will close.
        s.record(&marker(1, 0), 5, 0, Some((ControlType::Abort, 0)));
        assert!(!s.verified(1, 0, Some(g)));
        // Verified again: the first batch opens the transaction and the guard goes; the
        // producer's next batches need no verification until its marker.
        let g2 = s.verification_guard(1, 0, false);
        assert_ne!(g2, g);
        s.record(&txn_header(1, 0, 0, 2), 10, 0, None);
        assert_eq!(
            s.first_unstable_offset(),
            Some(10),
            "the transaction is open"
        );
        assert!(!s.needs_verification(1, 0));
        assert!(s.verified(1, 0, None));
        s.record(&marker(1, 0), 12, 0, Some((ControlType::Commit, 0)));
        assert!(s.needs_verification(1, 0));
        assert!(
            !s.verified(1, 0, Some(g2)),
            "the guard went with the opening batch"
        );
        // A stale epoch is not this check's to refuse (check() answers InvalidEpoch).
        s.record(&marker(1, 3), 13, 0, Some((ControlType::Abort, 0)));
        assert!(!s.needs_verification(1, 2));
        // Guards are bounded.
        for pid in 100..100 + VERIFYING_MAX as i64 + 5 {
            s.verification_guard(pid, 0, false);
        }
        assert_eq!(s.verifying.len(), VERIFYING_MAX);
    }

    #[test]
    fn version_2_guards_outlive_the_previous_transactions_marker() {
        let mut s = ProducerStates::default();
        // Transaction 1 at epoch 4, committed with the epoch bumped to 5.
        s.record(&txn_header(1, 4, 0, 1), 0, 0, None);
        s.record(&marker(1, 5), 1, 0, Some((ControlType::Commit, 0)));
        // Transaction 2 at epoch 5: the leader adds the partition under a guard; a marker of
        // epoch 5 (transaction 1's, written again by a coordinator that moved) comes first.
        let g = s.verification_guard(1, 5, true);
        s.record(&marker(1, 5), 2, 0, Some((ControlType::Commit, 0)));
        assert!(
            s.verified(1, 5, Some(g)),
            "transaction 1's marker keeps the guard"
        );
        // Transaction 2 ended (aborted with epoch 6) before its first batch came: the guard
        // is withdrawn, and its late batch is an old epoch's.
        s.record(&marker(1, 6), 3, 0, Some((ControlType::Abort, 0)));
        assert!(!s.verifying.contains_key(&1));
        assert!(matches!(
            s.check(&txn_header(1, 5, 0, 1)),
            Err(ProducerError::InvalidEpoch { .. })
        ));
        // The classic protocol's guard goes with any marker.
        let g = s.verification_guard(1, 6, false);
        assert_ne!(
            s.verification_guard(1, 6, true),
            g,
            "one guard per producer, epoch and protocol"
        );
        let g = s.verification_guard(1, 6, false);
        s.record(&marker(1, 6), 4, 0, Some((ControlType::Abort, 0)));
        assert!(!s.verified(1, 6, Some(g)));
    }

    #[test]
    fn transactions_open_close_and_abort() {
        let mut s = ProducerStates::default();
        s.record(&txn_header(1, 0, 0, 2), 10, 0, None);
        s.record(&txn_header(2, 0, 0, 1), 12, 0, None);
        s.record(&txn_header(1, 0, 2, 1), 13, 0, None);
        assert_eq!(s.first_unstable_offset(), Some(10));
        assert_eq!(s.txn_counts(), (2, 0));
        s.record(&marker(1, 0), 14, 0, Some((ControlType::Abort, 0)));
        assert_eq!(s.first_unstable_offset(), Some(12));
        s.record(&marker(2, 0), 15, 0, Some((ControlType::Commit, 0)));
        assert_eq!(s.first_unstable_offset(), None);
        assert_eq!(s.aborted_between(0, 100), vec![(1, 10)]);
        assert_eq!(s.aborted_between(15, 100), vec![]);
        // Snapshots keep it all; damage is refused.
        s.record(&txn_header(3, 0, 0, 1), 16, 0, None);
        let bytes = s.encode(17);
        let (_, back) = ProducerStates::decode(&bytes).unwrap();
        assert_eq!(back.first_unstable_offset(), Some(16));
        assert_eq!(back.aborted_between(0, 100), vec![(1, 10)]);
        // ... and the completed transactions: a truncation after a restart reopens them.
        let mut reopened = back.clone();
        reopened.truncate_from(15);
        assert_eq!(reopened.first_unstable_offset(), Some(12));
        for cut in 0..bytes.len() {
            assert!(ProducerStates::decode(&bytes[..cut]).is_none());
        }
        // Open transactions never expire; aborted ranges below the log start are pruned.
        assert_eq!(s.expire(i64::MAX, 1), 2);
        assert_eq!(s.first_unstable_offset(), Some(16));
        s.prune_aborted(15);
        assert_eq!(s.aborted_between(0, 100), vec![]);
    }

    #[test]
    fn version_1_snapshots_are_still_read() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 2), 0, 5, None);
        let current = s.encode(3);
        // Rebuild the same state in version 1's layout.
        let mut body = Vec::new();
        body.extend_from_slice(&3i64.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&1i64.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&5i64.to_be_bytes());
        body.push(1);
        for v in [0i32, 1] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        for v in [0i64, 1] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        let mut v1 = b"SLPS".to_vec();
        v1.extend_from_slice(&1u16.to_be_bytes());
        v1.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        v1.extend_from_slice(&body);
        assert_eq!(
            ProducerStates::decode(&v1),
            ProducerStates::decode(&current)
        );
    }

    #[test]
    fn version_2_snapshots_are_still_read() {
        let mut s = ProducerStates::default();
        s.record(&txn_header(1, 0, 0, 2), 10, 0, None);
        s.record(&marker(1, 0), 12, 0, Some((ControlType::Abort, 0)));
        let v3 = s.encode(13);
        // Version 2: the same without the completed list (one entry: 4 + 24 bytes).
        let mut body = v3[10..v3.len() - 28].to_vec();
        let mut v2 = b"SLPS".to_vec();
        v2.extend_from_slice(&2u16.to_be_bytes());
        v2.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        v2.append(&mut body);
        let (covered, back) = ProducerStates::decode(&v2).unwrap();
        assert_eq!(covered, 13);
        assert_eq!(back.aborted_between(0, 100), vec![(1, 10)]);
        assert!(back.completed.is_empty());
        assert_eq!(ProducerStates::decode(&v3).unwrap().1, s);
    }

    #[test]
    fn truncation_and_expiry() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 1), 10, 1_000, None);
        s.record(&header(1, 0, 1, 1), 11, 1_000, None);
        s.record(&header(2, 0, 0, 1), 12, 5_000, None);
        s.truncate_from(11);
        assert_eq!(s.check(&header(1, 0, 1, 1)), Ok(Check::Append));
        assert!(
            s.check(&header(2, 0, 1, 1)).is_err(),
            "producer 2 forgotten"
        );
        assert_eq!(s.expire(2_000, 500), 1);
        assert!(s.is_empty());
    }
}
