//! Idempotent-producer state of one partition: per producer id, its epoch and the last
//! [`BATCHES_PER_PRODUCER`] batches' sequence ranges and offsets, so a retried batch is
//! recognised (and answered with its original offsets) and a gap or stale epoch is refused, as
//! Kafka's ProducerStateManager does.
//!
//! Snapshot file `producer.snapshot` (written with the checkpoint, atomically):
//! ```text
//! magic "SLPS" | version u16 = 1 | crc32c u32 (of everything after it) |
//! covered_offset i64 | producer_count u32 |
//!   producer_id i64 | epoch i16 | last_timestamp_ms i64 | batch_count u8 |
//!     first_seq i32 | last_seq i32 | base_offset i64 | last_offset i64   (× batch_count)
//! ```
//! `covered_offset` is the log end offset the snapshot describes; recovery drops entries at or
//! above the recovered log end and replays batch headers from there.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use sluice_base::Reader;

/// Batches remembered per producer: Kafka's limit on in-flight requests with idempotence.
pub const BATCHES_PER_PRODUCER: usize = 5;
/// Producers remembered per partition; the least recently active are dropped beyond this.
pub const PRODUCERS_MAX: usize = 100_000;

const MAGIC: &[u8; 4] = b"SLPS";
const VERSION: u16 = 1;

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
}

/// Outcome of checking a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already in the log: answer with these offsets, append nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Per-partition producer state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, Entry>,
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

    /// Records an appended batch (after a successful [`ProducerStates::check`], or on replay).
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64, timestamp_ms: i64) {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        if !self.producers.contains_key(&h.producer_id) && self.producers.len() >= PRODUCERS_MAX {
            self.evict_oldest();
        }
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| Entry {
                epoch: h.producer_epoch,
                last_timestamp_ms: timestamp_ms,
                batches: VecDeque::new(),
            });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
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

    /// The last offset of each producer's latest batch (the cleaner keeps those batches).
    pub fn last_batch_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .filter_map(|e| e.batches.back().map(|b| b.last_offset))
            .collect()
    }

    fn evict_oldest(&mut self) {
        if let Some((&pid, _)) = self
            .producers
            .iter()
            .min_by_key(|(_, e)| e.last_timestamp_ms)
        {
            self.producers.remove(&pid);
        }
    }

    /// Forgets batches at or above `offset` (truncation, failed writes); producers left with
    /// no batch are forgotten entirely.
    pub fn truncate_from(&mut self, offset: i64) {
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.base_offset < offset);
            !e.batches.is_empty()
        });
    }

    /// Drops producers idle for longer than `expiration_ms` (producer.id.expiration.ms).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms);
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
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.base_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
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
        if r.take(4)? != MAGIC || r.u16()? != VERSION {
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
                },
            );
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
        s.record(&h0, 100, 1);
        assert_eq!(
            s.check(&h0),
            Ok(Check::Duplicate {
                base_offset: 100,
                last_offset: 102
            })
        );
        let h1 = header(7, 0, 3, 2);
        assert_eq!(s.check(&h1), Ok(Check::Append));
        s.record(&h1, 103, 2);
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
            s.record(&header(1, 0, i, 1), i as i64, 0);
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
        s.record(&header(1, 0, 0, 2), 0, 5);
        s.record(&header(2, 3, 0, 1), 2, 6);
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

    #[test]
    fn truncation_and_expiry() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 1), 10, 1_000);
        s.record(&header(1, 0, 1, 1), 11, 1_000);
        s.record(&header(2, 0, 0, 1), 12, 5_000);
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
