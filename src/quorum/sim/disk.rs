//! A voter's simulated disk: the [`Durable`] state that survives its crashes, and the journal
//! each incarnation writes through.
//!
//! Two kinds, drawn per seed: instant is `Journal::memory` (every submission durable at
//! once); slow is a journal writer like the real one — submissions queue in call order, a
//! writer task takes them one at a time and answers once each is written: a synced one after
//! a drawn latency, when it and every write before it are durable; an unsynced one (the
//! commit point) at once, written but not yet durable. The writer runs in the incarnation's
//! task group, so a crash (the group killed) loses whatever was queued and not yet written;
//! a process crash keeps what was written, a power loss only what was synced.
//!
//! Invariant: after a crash, `durable` holds exactly the ops the journal answered (less the
//! unsynced tail after a power loss), in order.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::quorum::journal::{Durable, Journal, JournalOp};
use crate::runtime::sim;

type Job = (Vec<JournalOp>, bool, flume::Sender<io::Result<()>>);

/// Ops written by slow disks, by kind: vote, entries, truncate, purge, committed, snapshot.
pub type OpCounts = Rc<RefCell<[u64; 6]>>;

fn kind(op: &JournalOp) -> usize {
    match op {
        JournalOp::Vote(_) => 0,
        JournalOp::Entries(_) => 1,
        JournalOp::TruncateAfter(_) => 2,
        JournalOp::Purge(_) => 3,
        JournalOp::Committed(_) => 4,
        JournalOp::Snapshot { .. } => 5,
    }
}

pub struct Disk {
    durable: Rc<RefCell<Durable>>,
    /// Written, not yet synced (in the page cache).
    unsynced: Rc<RefCell<Vec<JournalOp>>>,
    counts: OpCounts,
    /// Sync latency range in microseconds; `None`: durable at once.
    slow: Option<(u64, u64)>,
}

impl Disk {
    pub fn new(slow: Option<(u64, u64)>, counts: OpCounts) -> Disk {
        Disk {
            durable: Rc::new(RefCell::new(Durable::default())),
            unsynced: Rc::default(),
            counts,
            slow,
        }
    }

    /// The node crashed (its tasks are gone): what was written survives a process crash, not
    /// a power loss.
    pub fn crashed(&self, power_loss: bool) {
        let tail = std::mem::take(&mut *self.unsynced.borrow_mut());
        if !power_loss {
            let mut d = self.durable.borrow_mut();
            tail.iter().for_each(|op| d.apply(op));
        }
    }

    /// What a restart finds.
    pub fn durable(&self) -> Durable {
        self.durable.borrow().clone()
    }

    pub fn durable_vote(&self) -> Option<crate::quorum::Vote> {
        self.durable.borrow().vote
    }

    /// Nothing was ever made durable (a restart bootstraps again, as `Quorum` does).
    pub fn is_pristine(&self) -> bool {
        let d = self.durable.borrow();
        d.vote.is_none() && d.log.is_empty() && d.snapshot.is_none()
    }

    /// The journal of a new incarnation whose writer (if any) runs in task group `group`.
    pub fn journal(&self, group: u64, seed: u64) -> Journal {
        let Some((lo, hi)) = self.slow else {
            return Journal::memory(self.durable.clone());
        };
        let (tx, rx) = flume::unbounded::<Job>();
        let durable = self.durable.clone();
        let unsynced = self.unsynced.clone();
        let counts = self.counts.clone();
        drop(sim::spawn_in(group, async move {
            let mut rng = SmallRng::seed_from_u64(seed);
            while let Ok((ops, sync, done)) = rx.recv_async().await {
                for op in &ops {
                    counts.borrow_mut()[kind(op)] += 1;
                }
                if sync {
                    let us = rng.random_range(lo..=hi.max(lo));
                    sim::sleep(Duration::from_micros(us)).await;
                    let mut d = durable.borrow_mut();
                    let tail = std::mem::take(&mut *unsynced.borrow_mut());
                    tail.iter().chain(&ops).for_each(|op| d.apply(op));
                } else {
                    unsynced.borrow_mut().extend(ops);
                }
                let _ = done.send(Ok(()));
            }
        }));
        Journal::simulated(Rc::new(move |ops, sync, done| {
            // A dead writer drops the job: its submitter learns it failed.
            let _ = tx.send((ops, sync, done));
        }))
    }
}
