//! The append path: validation, offset assignment, the idempotent-producer check, and the waits
//! for appended offsets to be written or durable (with the failure bookkeeping they consult).

use std::collections::VecDeque;
use std::future::Future;
use std::io;

use bytes::Bytes;

use super::writer::{BatchPlan, Pending, PendingAppend};
use super::Log;
use crate::batch::{validate_for_append, BatchHeader};
use crate::config::{FlushPolicy, TimestampType};
use crate::error::{clone_io, StorageError};
use crate::producer::{Check, ProducerStates};

/// Result of a successful [`Log::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped on the batches for LogAppendTime, -1 for CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub max_timestamp: i64,
    /// The log's failure generation when this append was made (see `Log::wait_append_written`).
    pub fail_gen: u64,
}

pub(super) struct Failure {
    pub(super) gen: u64,
    pub(super) from_offset: i64,
    pub(super) error: io::Error,
}

/// Failures that waits may still need to see: generations increasing and, since a failure
/// dominates every earlier one with a higher `from_offset`, `from_offset` increasing too. So
/// the first entry newer than a wait's generation has the lowest `from_offset` of all failures
/// after it. Bounded: a wait older than a forgotten entry is told it failed (a retry is safe,
/// reporting a dropped batch as written is not).
const FAILURES_KEPT: usize = 64;

#[derive(Default)]
pub(super) struct Failures {
    kept: VecDeque<Failure>,
    /// Generation of the newest forgotten entry (0: none forgotten).
    forgotten_gen: u64,
}

impl Failures {
    pub(super) fn push(&mut self, f: Failure) {
        while self
            .kept
            .back()
            .is_some_and(|last| last.from_offset >= f.from_offset)
        {
            self.kept.pop_back();
        }
        self.kept.push_back(f);
        if self.kept.len() > FAILURES_KEPT {
            if let Some(old) = self.kept.pop_front() {
                self.forgotten_gen = old.gen;
            }
        }
    }

    pub(super) fn last(&self) -> Option<&Failure> {
        self.kept.back()
    }

    /// The failure that dropped `offset` if it was appended at generation `gen0`.
    fn dropped(&self, gen0: u64, offset: i64) -> Option<io::Error> {
        if gen0 < self.forgotten_gen {
            let newest = self.kept.back()?;
            return Some(clone_io(&newest.error));
        }
        self.kept
            .iter()
            .find(|f| f.gen > gen0)
            .filter(|f| offset >= f.from_offset)
            .map(|f| clone_io(&f.error))
    }
}

impl Log {
    /// Validates, assigns offsets and queues `records` for the writer. Synchronous.
    pub fn append(
        &self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let headers = validate_for_append(&records)?;
        if let Some(dup) = self.check_producers(&headers)? {
            return Ok(AppendInfo {
                log_start_offset: self.log_start.get(),
                ..dup
            });
        }
        let cfg = self.config.borrow();
        let max = cfg.max_message_bytes as usize;
        if let Some(h) = headers.iter().find(|h| h.total_size() > max) {
            return Err(StorageError::MessageTooLarge {
                size: h.total_size(),
                max,
            });
        }
        let log_append_time_ms =
            (cfg.timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let base = self.leo.get();
        let mut next = base;
        let mut plans = Vec::with_capacity(headers.len());
        let mut max_timestamp = -1i64;
        let mut pos = 0usize;
        for h in &headers {
            plans.push(BatchPlan {
                pos,
                size: h.total_size(),
                base_offset: next,
            });
            pos += h.total_size();
            next = next.checked_add(h.last_offset_delta as i64 + 1).ok_or(
                crate::batch::BatchError::OffsetOverflow {
                    base_offset: next,
                    last_offset_delta: h.last_offset_delta,
                },
            )?;
            max_timestamp = max_timestamp.max(log_append_time_ms.unwrap_or(h.max_timestamp));
        }
        let last = next - 1;
        let epoch_starts: Vec<(i32, i64)> = if leader_epoch >= 0 {
            vec![(leader_epoch, base)]
        } else {
            Vec::new()
        };
        let item = PendingAppend {
            records,
            batches: plans,
            leader_epoch: Some(leader_epoch),
            log_append_time_ms,
        };
        drop(cfg);
        self.enqueue(item, &headers, &epoch_starts, next, now_ms);
        Ok(AppendInfo {
            base_offset: base,
            last_offset: last,
            log_append_time_ms: log_append_time_ms.unwrap_or(-1),
            log_start_offset: self.log_start.get(),
            max_timestamp,
            fail_gen: self.fail_gen.get(),
        })
    }

    /// Appends batches copied from the partition's leader (a follower's append): offsets,
    /// leader epochs and timestamps stay as the leader wrote them, bytes untouched. Each batch
    /// must start at or after the log end offset and after the one before
    /// ([`StorageError::NotContiguous`] otherwise: the follower must truncate or refetch
    /// first); gaps are the leader's cleaner's doing.
    /// The leader epoch cache and producer state follow the batches, so this replica can lead
    /// later. Synchronous, like [`Log::append`].
    pub fn append_replicated(
        &self,
        records: Bytes,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let headers = crate::batch::validate_batches(&records)?;
        let base = self.leo.get();
        let mut next = base;
        let mut plans = Vec::with_capacity(headers.len());
        let mut epoch_starts: Vec<(i32, i64)> = Vec::new();
        let mut max_timestamp = -1i64;
        let mut pos = 0usize;
        for h in &headers {
            if h.base_offset < next {
                return Err(StorageError::NotContiguous {
                    expected: next,
                    got: h.base_offset,
                });
            }
            plans.push(BatchPlan {
                pos,
                size: h.total_size(),
                base_offset: h.base_offset,
            });
            if h.partition_leader_epoch >= 0
                && epoch_starts
                    .last()
                    .is_none_or(|&(e, _)| h.partition_leader_epoch > e)
            {
                epoch_starts.push((h.partition_leader_epoch, h.base_offset));
            }
            pos += h.total_size();
            next = h.last_offset() + 1;
            max_timestamp = max_timestamp.max(h.max_timestamp);
        }
        if headers.is_empty() {
            return Ok(AppendInfo {
                base_offset: base,
                last_offset: base - 1,
                log_append_time_ms: -1,
                log_start_offset: self.log_start.get(),
                max_timestamp,
                fail_gen: self.fail_gen.get(),
            });
        }
        let item = PendingAppend {
            records,
            batches: plans,
            leader_epoch: None,
            log_append_time_ms: None,
        };
        self.enqueue(item, &headers, &epoch_starts, next, now_ms);
        Ok(AppendInfo {
            base_offset: base,
            last_offset: next - 1,
            log_append_time_ms: -1,
            log_start_offset: self.log_start.get(),
            max_timestamp,
            fail_gen: self.fail_gen.get(),
        })
    }

    /// Queues an append for the writer: rolls the active segment first if the append would
    /// overflow it (size, age, or the 32-bit offset span of its index), records leader epoch
    /// starts and producer state, and moves the log end offset to `next`.
    fn enqueue(
        &self,
        item: PendingAppend,
        headers: &[crate::batch::BatchHeader],
        epoch_starts: &[(i32, i64)],
        next: i64,
        now_ms: i64,
    ) {
        let cfg = self.config.borrow();
        let base = self.leo.get();
        let last = next - 1;
        let len = item.records.len() as u64;
        let mut st = self.state.borrow_mut();
        st.failed = false; // retry after an I/O failure
        let needs_roll = st.active_projected_bytes > 0
            && (st.active_projected_bytes + len > cfg.segment_bytes_effective()
                || st
                    .active_created_ms
                    .is_some_and(|c| now_ms.saturating_sub(c) >= cfg.segment_ms)
                || last - st.active_projected_base > u32::MAX as i64);
        if needs_roll {
            let seq = self.roll_seq_next.get() + 1;
            self.roll_seq_next.set(seq);
            st.pending.push_back(Pending::Roll { seq });
            st.active_projected_bytes = 0;
            st.active_projected_base = base;
            st.active_created_ms = None;
        }
        st.active_projected_bytes += len;
        st.active_created_ms.get_or_insert(now_ms);
        for &(epoch, start) in epoch_starts {
            if st.epochs.last().is_none_or(|&(e, _)| epoch > e) {
                st.epochs.push((epoch, start));
                st.epochs_dirty = true;
            }
        }
        for (h, plan) in headers.iter().zip(&item.batches) {
            let control = if h.is_control() {
                item.records
                    .get(plan.pos..plan.pos + plan.size)
                    .and_then(crate::txn::parse_marker)
            } else {
                None
            };
            st.producers.record(h, plan.base_offset, now_ms, control);
        }
        st.pending.push_back(Pending::Append(item));
        drop(st);
        self.leo.set(next);
        self.work.notify_all();
    }

    /// Resolves when the batches of `info`'s append are written, or with the I/O error that
    /// dropped them.
    pub async fn wait_append_written(&self, info: &AppendInfo) -> Result<(), StorageError> {
        self.wait_until(info.last_offset, false, info.fail_gen)
            .await
    }

    /// Resolves when the batches of `info`'s append are durable per the flush policy, or with
    /// the I/O error that dropped them.
    pub async fn wait_append_durable(&self, info: &AppendInfo) -> Result<(), StorageError> {
        let always = self.config.borrow().flush == FlushPolicy::Always;
        self.wait_until(info.last_offset, always, info.fail_gen)
            .await
    }

    /// Resolves when everything up to and including `offset` is written, or with the I/O error
    /// of a failure after this call that dropped it. Prefer `wait_append_written`: offsets of
    /// an append that failed before this call may hold another append's batches by now.
    pub fn wait_written(&self, offset: i64) -> impl Future<Output = Result<(), StorageError>> + '_ {
        self.wait_until(offset, false, self.fail_gen.get())
    }

    /// Resolves when everything up to `offset` is durable per the flush policy (see
    /// `wait_written` for which failures it reports).
    pub fn wait_durable(&self, offset: i64) -> impl Future<Output = Result<(), StorageError>> + '_ {
        let always = self.config.borrow().flush == FlushPolicy::Always;
        self.wait_until(offset, always, self.fail_gen.get())
    }

    /// `gen0`: the failure generation when the awaited offsets were appended. A failure after
    /// it that dropped `offset` is reported even if `offset` was written again since.
    async fn wait_until(&self, offset: i64, durable: bool, gen0: u64) -> Result<(), StorageError> {
        loop {
            let notified = self.progress.notified();
            {
                let st = self.state.borrow();
                if let Some(error) = st.failures.dropped(gen0, offset) {
                    return Err(StorageError::Io(error));
                }
                if st.failed {
                    if let Some(f) = st.failures.last() {
                        if offset >= f.from_offset {
                            // Nothing is queued there until the next append.
                            return Err(StorageError::Io(clone_io(&f.error)));
                        }
                    }
                }
            }
            let reached = if durable {
                self.durable.get()
            } else {
                self.written.get()
            };
            if reached > offset {
                return Ok(());
            }
            {
                let st = self.state.borrow();
                if self.closed.get() && st.pending.is_empty() && !self.locked.get() {
                    return Err(StorageError::Closed);
                }
            }
            notified.await;
        }
    }

    /// Resolves when `written_offset() > offset` (the batch holding `offset` can be read) or
    /// the log is closed. Cancel-safe. Unlike [`Log::wait_written`] it never fails: a write
    /// failure does not end it (it goes on waiting for a later write to reach `offset`), and
    /// closing the log ends it at once, even with writes still queued. For waits that only
    /// want to wake when there may be something new to read (a fetch long-poll).
    pub async fn wait_written_beyond(&self, offset: i64) {
        loop {
            let notified = self.progress.notified();
            if self.written.get() > offset || self.closed.get() {
                return;
            }
            notified.await;
        }
    }

    /// Idempotence: `Some(original offsets)` if the record set repeats an appended batch,
    /// an error for a sequence gap or stale epoch, `None` to append.
    fn check_producers(&self, headers: &[BatchHeader]) -> Result<Option<AppendInfo>, StorageError> {
        let st = self.state.borrow();
        let mut scratch: Option<ProducerStates> = None;
        for h in headers {
            let states = scratch.as_ref().unwrap_or(&st.producers);
            match states.check(h)? {
                Check::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    return Ok(Some(AppendInfo {
                        base_offset,
                        last_offset,
                        log_append_time_ms: -1,
                        log_start_offset: -1,
                        max_timestamp: h.max_timestamp,
                        fail_gen: self.fail_gen.get(),
                    }))
                }
                Check::Append if headers.len() > 1 => {
                    // Later batches of the same set must follow this one.
                    let next = scratch.get_or_insert_with(|| st.producers.clone());
                    next.record(h, 0, h.max_timestamp, None);
                }
                Check::Append => {}
            }
        }
        Ok(None)
    }

    /// Appends a transaction marker (a commit or abort control batch) for
    /// (`producer_id`, `producer_epoch`) from a coordinator at `coordinator_epoch`: it closes
    /// the producer's open transaction (an abort is remembered for read_committed fetches).
    /// An epoch older than the producer's is refused (`ProducerError::InvalidEpoch`), as is a
    /// coordinator epoch older than the last marker's (`ProducerError::CoordinatorFenced`).
    /// A marker for a producer without an open transaction is written all the same (a
    /// coordinator retrying is harmless). Synchronous, like [`Log::append`].
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        self.state.borrow().producers.check_marker(
            producer_id,
            producer_epoch,
            Some(coordinator_epoch),
        )?;
        let batch = crate::txn::encode_marker(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            now_ms,
        );
        let records = Bytes::from(batch);
        let headers = validate_for_append(&records)?;
        let base = self.leo.get();
        let plans = vec![BatchPlan {
            pos: 0,
            size: records.len(),
            base_offset: base,
        }];
        let epoch_starts: Vec<(i32, i64)> = if leader_epoch >= 0 {
            vec![(leader_epoch, base)]
        } else {
            Vec::new()
        };
        let item = PendingAppend {
            records,
            batches: plans,
            leader_epoch: Some(leader_epoch),
            log_append_time_ms: None,
        };
        self.enqueue(item, &headers, &epoch_starts, base + 1, now_ms);
        Ok(AppendInfo {
            base_offset: base,
            last_offset: base,
            log_append_time_ms: -1,
            log_start_offset: self.log_start.get(),
            max_timestamp: now_ms,
            fail_gen: self.fail_gen.get(),
        })
    }

    /// The first offset of the oldest open transaction, if any: the last stable offset is the
    /// smaller of this and the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.state.borrow().producers.first_unstable_offset()
    }

    /// KIP-890: `None` when a transactional batch of `producer_id` at `epoch` may be
    /// appended as it is (its transaction is open here, or its epoch is stale and the append
    /// will refuse it); otherwise the guard to verify it under (see `producer.rs`;
    /// `epoch_bump`: a transaction version 2 producer's).
    pub fn verification_guard(
        &self,
        producer_id: i64,
        epoch: i16,
        epoch_bump: bool,
    ) -> Option<u64> {
        let mut st = self.state.borrow_mut();
        st.producers
            .needs_verification(producer_id, epoch)
            .then(|| {
                st.producers
                    .verification_guard(producer_id, epoch, epoch_bump)
            })
    }

    /// Whether a transactional batch of `producer_id` at `epoch`, verified under `guard`, may
    /// be appended now (see [`Log::verification_guard`]).
    pub fn txn_verified(&self, producer_id: i64, epoch: i16, guard: Option<u64>) -> bool {
        self.state
            .borrow()
            .producers
            .verified(producer_id, epoch, guard)
    }

    /// (open transactions, aborted transactions of the active segment), for metrics.
    pub fn txn_counts(&self) -> (usize, usize) {
        self.state.borrow().producers.txn_counts()
    }

    /// Drops state of producers idle longer than `expiration_ms`; returns how many.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.state
            .borrow_mut()
            .producers
            .expire(now_ms, expiration_ms)
    }

    /// Number of producers with idempotence state in this partition.
    pub fn producer_count(&self) -> usize {
        self.state.borrow().producers.len()
    }
}
