//! The fault schedule: until the clients stop, every 0.1–1.5 s of virtual time one fault
//! drawn from the seed — a crash (after a graceful shutdown, of the process, or of the machine:
//! unsynced writes lost) with a restart from the disk later, a partition (a random side against the rest), a one-way cut, the leader
//! isolated, a burst of message loss, or slow links. Each heals by itself after 0.2–4 s;
//! faults overlap freely (cuts are counted, see `net.rs`).

use std::rc::Rc;
use std::time::Duration;

use super::{Cluster, Crash};
use crate::runtime::sim;

impl Cluster {
    /// The fault schedule, until the clients stop.
    pub(super) async fn faults(self: Rc<Self>) {
        let end = sim::now() + self.params.run_for;
        while sim::now() < end {
            sim::sleep(Duration::from_millis(self.draw(100..1_500))).await;
            self.check_logs();
            let ids = self.ids();
            let pick = |c: &Cluster| ids[c.draw(0..ids.len() as u64) as usize];
            let heal_after = Duration::from_millis(self.draw(200..4_000));
            match self.draw(0..7) {
                0 | 1 => {
                    let id = pick(&self);
                    let how =
                        [Crash::Graceful, Crash::Hard, Crash::PowerLoss][self.draw(0..3) as usize];
                    self.crash(id, how).await;
                    let me = self.clone();
                    let down_for = Duration::from_millis(self.draw(50..3_000));
                    drop(sim::spawn(async move {
                        sim::sleep(down_for).await;
                        me.start(id).await;
                    }));
                }
                2 => {
                    // A partition: a random side against the rest, both ways.
                    let side: Vec<u64> = ids
                        .iter()
                        .copied()
                        .filter(|_| self.draw(0..2) == 0)
                        .collect();
                    let pairs: Vec<(u64, u64)> = ids
                        .iter()
                        .flat_map(|a| ids.iter().map(move |b| (*a, *b)))
                        .filter(|(a, b)| side.contains(a) != side.contains(b))
                        .collect();
                    self.cut_for(pairs, heal_after);
                }
                3 => {
                    let (a, b) = (pick(&self), pick(&self));
                    if a != b {
                        self.cut_for(vec![(a, b)], heal_after);
                    }
                }
                4 => {
                    // Isolate whoever leads.
                    if let Some((l, _, _)) = self.leader_handles() {
                        let pairs = ids
                            .iter()
                            .filter(|o| **o != l)
                            .flat_map(|o| [(l, *o), (*o, l)])
                            .collect();
                        self.cut_for(pairs, heal_after);
                    }
                }
                5 => {
                    let loss = self.draw(0..400) as u32;
                    self.net.borrow_mut().loss_permille = loss;
                    self.event("loss", &[u64::from(loss)]);
                    sim::sleep(heal_after).await;
                    self.net.borrow_mut().loss_permille = 0;
                }
                _ => {
                    let slow = self.draw(1_000..80_000);
                    self.net.borrow_mut().latency_us = (slow / 2, slow);
                    self.event("slow", &[slow]);
                    sim::sleep(heal_after).await;
                    self.net.borrow_mut().latency_us = (100, 2_000);
                }
            }
        }
    }

    fn cut_for(self: &Rc<Self>, pairs: Vec<(u64, u64)>, heal_after: Duration) {
        for (a, b) in &pairs {
            self.net.borrow_mut().cut(*a, *b);
            self.event("cut", &[*a, *b]);
        }
        let me = self.clone();
        drop(sim::spawn(async move {
            sim::sleep(heal_after).await;
            for (a, b) in pairs {
                me.net.borrow_mut().heal(a, b);
            }
        }));
    }
}
