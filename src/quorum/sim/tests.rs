//! The simulation as a test: many seeds, one seed replayed, and a seed run twice.

use crate::runtime::sim::env_u64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{run_seed, Outcome};

/// Seeds `seeds` runs (0, 1, …) unless `SLUICE_SIM_SEEDS` (how many) and
/// `SLUICE_SIM_FIRST_SEED` (from which) say otherwise.
const SEEDS: u64 = 250;

/// Says how to replay a seed whose run panics.
struct Replay(u64);

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation seed {} failed; replay it with: SLUICE_SIM_SEED={} cargo test --lib quorum::sim",
                self.0, self.0
            );
        }
    }
}

fn one(seed: u64) -> Outcome {
    let _replay = Replay(seed);
    run_seed(seed)
}

#[test]
fn seeds() {
    if let Some(seed) = env_u64("SLUICE_SIM_SEED") {
        let started = Instant::now();
        let o = one(seed);
        eprintln!("seed {seed}: {o:?} in {:?}", started.elapsed());
        return;
    }
    let count = env_u64("SLUICE_SIM_SEEDS").unwrap_or(SEEDS);
    let first = env_u64("SLUICE_SIM_FIRST_SEED").unwrap_or(0);
    let started = Instant::now();
    // Seeds are independent (each thread runs its own simulations): spread them over the cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let next = AtomicU64::new(0);
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return done;
                        }
                        done.push(one(first + i));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let sum = |f: fn(&Outcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    eprintln!(
        "{count} seeds on {threads} threads in {:?}: {} acknowledged writes, {} crashes, {} polls, \
         {:?} virtual, {} terms with two leaders; slow disks wrote {} votes, {} appends, {} \
         truncations, {} purges, {} commit points, {} snapshots; {} snapshots installed from \
         the leader, {} messages lost",
        started.elapsed(),
        sum(|o| o.acks as u64),
        sum(|o| u64::from(o.crashes)),
        sum(|o| o.steps),
        outcomes.iter().map(|o| o.virtual_time).sum::<std::time::Duration>(),
        sum(|o| o.terms_with_two_leaders as u64),
        sum(|o| o.ops[0]),
        sum(|o| o.ops[1]),
        sum(|o| o.ops[2]),
        sum(|o| o.ops[3]),
        sum(|o| o.ops[4]),
        sum(|o| o.ops[5]),
        sum(|o| o.snapshots_installed),
        sum(|o| o.messages_lost),
    );
}

#[test]
fn a_seed_replays_exactly() {
    let seed = env_u64("SLUICE_SIM_SEED").unwrap_or(7);
    let first = one(seed);
    let again = one(seed);
    assert_eq!(first, again, "seed {seed} ran differently twice");
}
