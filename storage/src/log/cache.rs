//! Tail caches and the bound on them all: each log keeps its most recently written batches
//! for reads (at most `LogConfig::tail_cache_bytes`), and the logs of one thread — one shard —
//! together keep at most the thread's budget ([`set_cache_budget`]). Over the budget, the
//! batches cached longest ago go first, whichever log holds them (a FIFO over the thread, as
//! Redpanda's batch cache is a shard-wide LRU), so a shard with 1,000 idle partitions holds the
//! budget, not 1,000 × 8 MiB, and busy partitions still get the whole per-log cache.
//!
//! Bookkeeping: the thread's `Budget` counts the bytes and batches in every cache on the
//! thread; every change to a `TailCache` goes through its methods, which keep the counts
//! (`Drop` included). `order` names each cached batch once, oldest first, by its log and base
//! offset; an entry whose batch left its cache another way (the log's own bound, truncation,
//! compaction, deletion) is stale and skipped, and stale entries are swept once they outnumber
//! the live ones, so `order` stays within a constant factor of the cached batch count.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Weak;

use super::read::CachedBatch;
use super::Log;

/// Stale entries tolerated in `order` beyond the live ones before a sweep.
const STALE_SLACK: usize = 1024;

struct Entry {
    log: Weak<Log>,
    base_offset: i64,
}

struct Budget {
    cap: usize,
    bytes: usize,
    batches: usize,
    order: VecDeque<Entry>,
}

thread_local! {
    static BUDGET: RefCell<Budget> = const {
        RefCell::new(Budget { cap: usize::MAX, bytes: 0, batches: 0, order: VecDeque::new() })
    };
}

/// Sets the bytes all tail caches of the calling thread may hold together (default: no bound).
/// Call it on each shard thread before its logs are opened.
pub fn set_cache_budget(bytes: usize) {
    BUDGET.with(|b| b.borrow_mut().cap = bytes);
}

/// (bytes, batches) in the tail caches of the calling thread.
pub fn cache_usage() -> (usize, usize) {
    BUDGET.with(|b| {
        let b = b.borrow();
        (b.bytes, b.batches)
    })
}

fn released(batches: usize, bytes: usize) {
    // try_with: a log dropped while the thread exits may outlive the thread-local.
    let _ = BUDGET.try_with(|b| {
        let mut b = b.borrow_mut();
        b.bytes = b.bytes.saturating_sub(bytes);
        b.batches = b.batches.saturating_sub(batches);
    });
}

/// One log's cached batches, oldest first.
#[derive(Default)]
pub(super) struct TailCache {
    batches: VecDeque<CachedBatch>,
    bytes: usize,
}

impl TailCache {
    pub(super) fn batches(&self) -> &VecDeque<CachedBatch> {
        &self.batches
    }

    /// Adds a batch written by `log` (the thread's budget is enforced by [`enforce_budget`],
    /// once the caller no longer borrows the log's state).
    pub(super) fn push(&mut self, log: &Weak<Log>, batch: CachedBatch) {
        let base_offset = batch.base_offset;
        let len = batch.bytes.len();
        self.bytes += len;
        self.batches.push_back(batch);
        BUDGET.with(|b| {
            let mut b = b.borrow_mut();
            b.bytes += len;
            b.batches += 1;
            b.order.push_back(Entry {
                log: log.clone(),
                base_offset,
            });
        });
    }

    /// Drops the oldest batches until at most `max_bytes` remain (one batch always stays).
    pub(super) fn trim_to(&mut self, max_bytes: usize) {
        while self.bytes > max_bytes && self.batches.len() > 1 {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) -> Option<CachedBatch> {
        let c = self.batches.pop_front()?;
        self.bytes -= c.bytes.len();
        released(1, c.bytes.len());
        Some(c)
    }

    pub(super) fn retain(&mut self, keep: impl FnMut(&CachedBatch) -> bool) {
        let (n, bytes) = (self.batches.len(), self.bytes);
        self.batches.retain(keep);
        self.bytes = self.batches.iter().map(|c| c.bytes.len()).sum();
        released(n - self.batches.len(), bytes - self.bytes);
    }

    pub(super) fn clear(&mut self) {
        self.retain(|_| false);
    }

    /// Whether the batch starting at `base_offset` is still here.
    fn holds(&self, base_offset: i64) -> bool {
        let i = self
            .batches
            .partition_point(|c| c.base_offset < base_offset);
        self.batches
            .get(i)
            .is_some_and(|c| c.base_offset == base_offset)
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        released(self.batches.len(), self.bytes);
    }
}

impl Log {
    /// Bytes of this log's batches in its tail cache.
    pub fn cached_bytes(&self) -> usize {
        self.state.borrow().cache.bytes
    }
}

/// Evicts the thread's oldest cached batches while its caches hold more than the budget.
/// Call without any log's state borrowed; stops early at a log whose state is borrowed.
pub(super) fn enforce_budget() {
    BUDGET.with(|cell| {
        let mut b = cell.borrow_mut();
        while b.bytes > b.cap {
            let Some(e) = b.order.pop_front() else { break };
            let Some(log) = e.log.upgrade() else { continue };
            let Ok(mut st) = log.state.try_borrow_mut() else {
                // In use right now: try again at the next write (dropping the entry would
                // leave its batch, and so every later one of that log, out of the order).
                b.order.push_front(e);
                break;
            };
            let cache = &mut st.cache;
            if cache.batches.front().map(|c| c.base_offset) != Some(e.base_offset) {
                // Evicted in order, so a live entry's batch is at its cache's front; any
                // other entry is stale.
                continue;
            }
            if let Some(c) = cache.batches.pop_front() {
                cache.bytes -= c.bytes.len();
                b.bytes = b.bytes.saturating_sub(c.bytes.len());
                b.batches = b.batches.saturating_sub(1);
            }
        }
        if b.order.len() > 2 * b.batches + STALE_SLACK {
            b.order.retain(|e| {
                e.log.upgrade().is_some_and(|log| {
                    log.state
                        .try_borrow()
                        .map_or(true, |st| st.cache.holds(e.base_offset))
                })
            });
        }
    });
}
