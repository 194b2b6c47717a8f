//! The coordinators' internal topics (`__consumer_offsets`, `__transaction_state`): in-order
//! completion of appends ([`PersistQueue`]) and reading a partition back at load
//! ([`read_whole_log`]).
//!
//! A coordinator decides in event order and its driver appends each decision synchronously,
//! so log order = decision order. The appends become durable in whatever order their waits
//! finish; reporting them in that order could let memory keep an older value while the log
//! replays a newer one (two writes of one key in one coalesced write). So each append gets a
//! sequence number per partition, and outcomes are released only from the front of the
//! partition's queue. Used by both coordinator drivers (`groups.rs`, `txns.rs`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use sluice_storage::validate_batches;
use tracing::warn;

use crate::partition::Partition;

/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// Reads `part` (partition `index` of internal topic `topic`) from its log start to its log
/// end and hands every chunk of whole batches to `each`, in log order. To the log end, past
/// the high watermark, as Kafka does: a new leader's high watermark trails what its predecessor
/// acknowledged until the followers fetch again, and everything in its log is the partition
/// from now on. The end is taken again after each read and once more after waiting for what
/// was appended meanwhile: a transaction marker written to the partition while it loads (its
/// coordinator's live event may come before the replay reaches the records it completes) is
/// replayed in its place, so no transactional offset stays pending for ever. Appends during a
/// load are only such markers (the coordinator serves nothing else until loaded), so this ends.
/// A read error ends the load with what was read (logged).
pub async fn read_whole_log(
    part: &Partition,
    topic: &str,
    index: i32,
    mut each: impl FnMut(Bytes),
) {
    let log = part.log.clone();
    let mut next = log.log_start_offset();
    loop {
        if next >= log.written_offset() {
            let end = log.log_end_offset();
            if next >= end {
                return;
            }
            if let Err(e) = log.wait_written(end - 1).await {
                warn!(topic, partition = index, offset = next, error = %e, "reading an internal topic failed; loading what was read");
                return;
            }
            continue;
        }
        let chunks = match part.read_for_replica(next, LOAD_READ_BYTES, true).await {
            Ok(r) => r.chunks,
            Err(e) => {
                warn!(topic, partition = index, offset = next, error = %e, "reading an internal topic failed; loading what was read");
                return;
            }
        };
        if chunks.is_empty() {
            return;
        }
        let before = next;
        for chunk in chunks {
            if let Some(last) = validate_batches(&chunk)
                .ok()
                .and_then(|hs| hs.last().map(|h| h.last_offset()))
            {
                next = next.max(last + 1);
            }
            each(chunk);
        }
        if next <= before {
            return;
        }
    }
}

struct InFlight {
    seq: u64,
    token: Option<u64>,
    /// The outcome, once known (0: durable).
    error: Option<i16>,
}

#[derive(Default)]
pub struct PersistQueue {
    in_flight: RefCell<HashMap<i32, VecDeque<InFlight>>>,
    next: Cell<u64>,
}

impl PersistQueue {
    /// Registers an append to `partition` (made now, in decision order); returns its sequence.
    pub fn start(&self, partition: i32, token: Option<u64>) -> u64 {
        let seq = self.next.get();
        self.next.set(seq + 1);
        self.in_flight
            .borrow_mut()
            .entry(partition)
            .or_default()
            .push_back(InFlight {
                seq,
                token,
                error: None,
            });
        seq
    }

    /// Records the outcome of append `seq`; returns every finished append at the front of the
    /// partition's queue as (token, error), in append order.
    pub fn finish(&self, partition: i32, seq: u64, error: i16) -> Vec<(Option<u64>, i16)> {
        let mut all = self.in_flight.borrow_mut();
        let Some(queue) = all.get_mut(&partition) else {
            return Vec::new();
        };
        if let Some(entry) = queue.iter_mut().find(|e| e.seq == seq) {
            entry.error = Some(error);
        }
        let mut ready = Vec::new();
        while let Some(error) = queue.front().and_then(|e| e.error) {
            if let Some(entry) = queue.pop_front() {
                ready.push((entry.token, error));
            }
        }
        if queue.is_empty() {
            all.remove(&partition);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_leave_in_append_order() {
        let q = PersistQueue::default();
        let a = q.start(1, Some(10));
        let b = q.start(1, None);
        let c = q.start(2, Some(30));
        assert!(q.finish(1, b, 0).is_empty(), "b waits for a");
        assert_eq!(q.finish(2, c, 5), vec![(Some(30), 5)]);
        assert_eq!(q.finish(1, a, 0), vec![(Some(10), 0), (None, 0)]);
        assert!(q.finish(1, a, 0).is_empty());
    }
}
