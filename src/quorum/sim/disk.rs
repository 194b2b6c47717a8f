//! A voter's simulated disk: the [`Durable`] state that survives its crashes, and the journal
//! each incarnation writes through.
//!
//! Two kinds, drawn per seed: `Instant` is `Journal::memory` (every submission durable at
//! once); `Slow` is a journal writer like the real one — submissions queue in call order, a
//! writer task applies them one at a time (a synced one after a drawn latency) and only then
//! answers. The writer runs in the incarnation's task group, so a crash (the group killed)
//! loses whatever was queued and not yet written, never anything answered.
//!
//! Invariant: `durable` holds exactly the ops a journal answered as written, in order.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::quorum::journal::{Durable, Journal, JournalOp};
use crate::runtime::sim;

type Job = (Vec<JournalOp>, bool, flume::Sender<io::Result<()>>);

pub struct Disk {
    durable: Rc<RefCell<Durable>>,
    /// Sync latency range in microseconds; `None`: durable at once.
    slow: Option<(u64, u64)>,
}

impl Disk {
    pub fn new(slow: Option<(u64, u64)>) -> Disk {
        Disk {
            durable: Rc::new(RefCell::new(Durable::default())),
            slow,
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
        drop(sim::spawn_in(group, async move {
            let mut rng = SmallRng::seed_from_u64(seed);
            while let Ok((ops, sync, done)) = rx.recv_async().await {
                if sync {
                    let us = rng.random_range(lo..=hi.max(lo));
                    sim::sleep(Duration::from_micros(us)).await;
                }
                {
                    let mut d = durable.borrow_mut();
                    for op in &ops {
                        d.apply(op);
                    }
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
