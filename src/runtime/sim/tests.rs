//! The simulator's own tests (openraft's runtime conformance suite among them).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use super::*;

#[test]
fn openraft_runtime_conformance_suite() {
    openraft::rt::testing::Suite::<SimRuntime>::test_all();
}

/// Virtual time passes only through timers, in deadline order.
#[test]
fn time_jumps_to_the_next_deadline() {
    let order = run(7, Limits::default(), async {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut handles = Vec::new();
        for ms in [30u64, 10, 20] {
            let log = log.clone();
            handles.push(spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                log.borrow_mut().push((ms, elapsed()));
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let v = log.borrow().clone();
        v
    })
    .unwrap();
    let want: Vec<(u64, Duration)> = [10, 20, 30]
        .iter()
        .map(|ms| (*ms, Duration::from_millis(*ms)))
        .collect();
    assert_eq!(order, want);
}

#[test]
fn deadlock_and_limits_stop_a_run() {
    let r = run(1, Limits::default(), std::future::pending::<()>());
    assert!(matches!(r, Err(SimError::Deadlock { .. })), "{r:?}");
    let limits = Limits {
        max_time: Duration::from_secs(1),
        ..Limits::default()
    };
    let r = run(1, limits, sleep(Duration::from_secs(2)));
    assert!(matches!(r, Err(SimError::TimeLimit { .. })), "{r:?}");
}

#[test]
fn a_killed_group_stops_and_its_handles_cancel() {
    run(3, Limits::default(), async {
        let g = new_group();
        let ticks = Rc::new(Cell::new(0u32));
        let t = ticks.clone();
        let h = spawn_in(g, async move {
            loop {
                sleep(Duration::from_millis(1)).await;
                t.set(t.get() + 1);
                // Children join the group.
                drop(spawn(std::future::pending::<()>()));
            }
        });
        sleep(Duration::from_millis(5) + Duration::from_micros(1)).await;
        kill_group(g);
        assert_eq!(h.await, Err(SimJoinError));
        let seen = ticks.get();
        sleep(Duration::from_millis(5)).await;
        assert_eq!(
            ticks.get(),
            seen,
            "nothing of the group runs after the kill"
        );
        assert_eq!(seen, 5);
    })
    .unwrap();
}

/// The same seed interleaves ready tasks the same way; another seed (usually) not.
#[test]
fn the_seed_decides_the_interleaving() {
    let trace = |seed: u64| {
        run(seed, Limits::default(), async {
            let log = Rc::new(RefCell::new(Vec::new()));
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let log = log.clone();
                    spawn(async move { log.borrow_mut().push(i) })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
            let v = log.borrow().clone();
            v
        })
        .unwrap()
    };
    assert_eq!(trace(11), trace(11));
    assert!((12..20).any(|s| trace(s) != trace(11)));
}
