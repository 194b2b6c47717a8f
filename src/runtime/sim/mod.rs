//! The deterministic simulator behind the runtime seam (tests only): a single-threaded,
//! seeded executor with a virtual clock, and openraft's [`AsyncRuntime`] on it
//! ([`SimRuntime`]), so the controller quorum runs unchanged inside a simulation.
//!
//! It owns, per thread (each test thread runs its own simulations):
//! - the task set and the ready list; the next task to poll is drawn from the ready ones with
//!   the simulation's seeded RNG (so interleavings vary with the seed, and repeat with it);
//! - timers on virtual time: time stands still while any task is runnable and jumps to the
//!   next deadline when none is (a simulated minute costs what its events cost);
//! - task groups: a task joins the group of the task that spawned it ([`spawn_in`] names
//!   one), and [`kill_group`] drops every task of a group at once, as a process crash would;
//! - the seed stream behind `thread_rng()`.
//!
//! Invariants: nothing here reads the wall clock or the OS RNG, and every choice is drawn from
//! the seed in an order fixed by the program, so one seed is one run. A run stops with a
//! [`SimError`] when it passes its [`Limits`] (virtual time, steps, live tasks) or when no task
//! can ever run again (deadlock).
//!
//! Files: this one the executor; `time.rs` the virtual clock, sleeps and timeouts; `task.rs`
//! join handles; `openraft_rt.rs` openraft's runtime on all of it; `tests.rs`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

mod openraft_rt;
mod task;
mod time;

pub use openraft_rt::SimRuntime;
use task::{Complete, Slot};
pub use task::{SimJoinError, SimJoinHandle};
pub use time::{
    now, sleep, sleep_until, timeout, timeout_at, SimElapsed, SimInstant, SimSleep, SimTimeout,
};

/// Virtual time starts here (nanoseconds), far from zero so `instant - duration` never wraps.
const CLOCK_BASE: u64 = 1 << 50;
/// The id of the future a run blocks on (tasks count from 1).
const MAIN: u64 = 0;

/// Where a run must stop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Virtual time a run may last.
    pub max_time: Duration,
    /// Polls a run may make.
    pub max_steps: u64,
    /// Tasks alive at once.
    pub max_tasks: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_time: Duration::from_secs(3600),
            max_steps: 10_000_000,
            max_tasks: 10_000,
        }
    }
}

/// Why a run stopped before its future finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// No task is runnable and no timer is set: nothing can ever happen again.
    Deadlock {
        at: Duration,
    },
    TimeLimit {
        at: Duration,
    },
    StepLimit {
        steps: u64,
    },
    TaskLimit {
        tasks: usize,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Deadlock { at } => write!(f, "deadlock at virtual {at:?}"),
            SimError::TimeLimit { at } => write!(f, "virtual time limit reached at {at:?}"),
            SimError::StepLimit { steps } => write!(f, "step limit reached ({steps} polls)"),
            SimError::TaskLimit { tasks } => write!(f, "task limit reached ({tasks} tasks)"),
        }
    }
}

thread_local! {
    /// Virtual now, in nanoseconds.
    static NOW: Cell<u64> = const { Cell::new(CLOCK_BASE) };
    /// The running simulation of this thread.
    static EXEC: RefCell<Option<Rc<Exec>>> = const { RefCell::new(None) };
    /// `thread_rng()` seeds handed out outside a run.
    static LOOSE_RNG: Cell<u64> = const { Cell::new(0) };
}

struct Task {
    fut: Pin<Box<dyn Future<Output = ()>>>,
    group: u64,
    waker: Waker,
}

/// Wakes a task by putting its id on the ready list (once until it is polled again).
struct TaskWake {
    id: u64,
    queued: AtomicBool,
    ready: Arc<Mutex<Vec<u64>>>,
}

impl Wake for TaskWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            if let Ok(mut r) = self.ready.lock() {
                r.push(self.id);
            }
        }
    }
}

struct State {
    tasks: BTreeMap<u64, Task>,
    wakes: BTreeMap<u64, Arc<TaskWake>>,
    next_id: u64,
    timers: BTreeMap<(u64, u64), Waker>,
    next_timer: u64,
    /// The group of the task being polled.
    current_group: u64,
    next_group: u64,
    killed: BTreeSet<u64>,
    rng: SmallRng,
    steps: u64,
    limits: Limits,
    failure: Option<SimError>,
    /// Called between every two polls.
    hook: Option<Rc<dyn Fn()>>,
}

struct Exec {
    st: RefCell<State>,
    ready: Arc<Mutex<Vec<u64>>>,
}

fn exec() -> Option<Rc<Exec>> {
    EXEC.with(|e| e.borrow().clone())
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    exec().map(|e| f(&mut e.st.borrow_mut()))
}

fn splitmix64(seed: u64) -> u64 {
    let z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A simulation knob from the environment (`SLUICE_SIM_SEED`, …): `None` when unset; a value
/// that is not a number fails the test.
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Virtual time since the run started.
pub fn elapsed() -> Duration {
    Duration::from_nanos(NOW.with(Cell::get) - CLOCK_BASE)
}

/// Polls made by the running simulation so far.
pub fn steps() -> u64 {
    with_state(|s| s.steps).unwrap_or(0)
}

/// Calls `hook` between every two polls of the running simulation (checks of invariants).
pub fn set_step_hook(hook: Option<Rc<dyn Fn()>>) {
    with_state(|s| s.hook = hook);
}

fn run_hook(e: &Exec) {
    let hook = e.st.borrow().hook.clone();
    if let Some(h) = hook {
        h();
    }
}

/// A fresh task group (see [`spawn_in`], [`kill_group`]).
pub fn new_group() -> u64 {
    with_state(|s| {
        s.next_group += 1;
        s.next_group
    })
    .unwrap_or(0)
}

/// Drops every task of `group` now (a crash of what runs in it). Their join handles resolve
/// as cancelled.
pub fn kill_group(group: u64) {
    let Some(e) = exec() else { return };
    let victims: Vec<Task> = {
        let mut st = e.st.borrow_mut();
        st.killed.insert(group);
        let ids: Vec<u64> = st
            .tasks
            .iter()
            .filter(|(_, t)| t.group == group)
            .map(|(id, _)| *id)
            .collect();
        ids.iter()
            .filter_map(|id| {
                st.wakes.remove(id);
                st.tasks.remove(id)
            })
            .collect()
    };
    // Dropped with no borrow held: their destructors may touch the executor.
    drop(victims);
}

/// Spawns `fut` into `group`; what it spawns joins that group too.
pub fn spawn_in<F>(group: u64, fut: F) -> SimJoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let slot = Rc::new(RefCell::new(Slot {
        out: None,
        waker: None,
    }));
    let mut complete = Complete {
        slot: slot.clone(),
        done: false,
    };
    let task = async move {
        let v = fut.await;
        complete.finish(v);
    };
    match exec() {
        Some(e) if !e.st.borrow().killed.contains(&group) => {
            let mut st = e.st.borrow_mut();
            if st.tasks.len() >= st.limits.max_tasks && st.failure.is_none() {
                st.failure = Some(SimError::TaskLimit {
                    tasks: st.tasks.len(),
                });
            }
            st.next_id += 1;
            let id = st.next_id;
            let wake = Arc::new(TaskWake {
                id,
                queued: AtomicBool::new(true),
                ready: e.ready.clone(),
            });
            if let Ok(mut r) = e.ready.lock() {
                r.push(id);
            }
            st.tasks.insert(
                id,
                Task {
                    fut: Box::pin(task),
                    group,
                    waker: Waker::from(wake.clone()),
                },
            );
            st.wakes.insert(id, wake);
        }
        // Outside a run, or in a killed group, the task never runs: its handle reports it
        // cancelled.
        _ => drop(task),
    }
    SimJoinHandle { slot }
}

/// Spawns `fut` into the current task's group.
pub fn spawn<F>(fut: F) -> SimJoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let group = with_state(|s| s.current_group).unwrap_or(0);
    spawn_in(group, fut)
}

/// Runs `fut` to completion on a new simulation seeded with `seed`, within `limits`.
pub fn run<F: Future>(seed: u64, limits: Limits, fut: F) -> Result<F::Output, SimError> {
    let ready = Arc::new(Mutex::new(vec![MAIN]));
    let e = Rc::new(Exec {
        st: RefCell::new(State {
            tasks: BTreeMap::new(),
            wakes: BTreeMap::new(),
            next_id: MAIN,
            timers: BTreeMap::new(),
            next_timer: 0,
            current_group: 0,
            next_group: 0,
            killed: BTreeSet::new(),
            rng: SmallRng::seed_from_u64(splitmix64(seed)),
            steps: 0,
            limits,
            failure: None,
            hook: None,
        }),
        ready: ready.clone(),
    });
    let installed = EXEC.with(|x| {
        let mut x = x.borrow_mut();
        if x.is_some() {
            return false;
        }
        *x = Some(e.clone());
        true
    });
    assert!(installed, "a simulation is already running on this thread");
    NOW.with(|n| n.set(CLOCK_BASE));
    let _teardown = Teardown;
    let main_wake = Arc::new(TaskWake {
        id: MAIN,
        queued: AtomicBool::new(true),
        ready: ready.clone(),
    });
    let main_waker = Waker::from(main_wake.clone());
    let mut fut = std::pin::pin!(fut);
    loop {
        let picked = {
            let mut st = e.st.borrow_mut();
            if let Some(f) = st.failure.clone() {
                return Err(f);
            }
            let mut r = ready
                .lock()
                .map_err(|_| SimError::Deadlock { at: elapsed() })?;
            if r.is_empty() {
                None
            } else {
                let i = st.rng.random_range(0..r.len());
                Some(r.swap_remove(i))
            }
        };
        let Some(id) = picked else {
            advance_clock(&e)?;
            continue;
        };
        {
            let mut st = e.st.borrow_mut();
            st.steps += 1;
            if st.steps > st.limits.max_steps {
                return Err(SimError::StepLimit { steps: st.steps });
            }
        }
        if id == MAIN {
            main_wake.queued.store(false, Ordering::SeqCst);
            e.st.borrow_mut().current_group = 0;
            if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(&main_waker)) {
                return Ok(v);
            }
            run_hook(&e);
            continue;
        }
        let task = {
            let mut st = e.st.borrow_mut();
            match st.tasks.remove(&id) {
                Some(t) => {
                    st.current_group = t.group;
                    if let Some(w) = st.wakes.get(&id) {
                        w.queued.store(false, Ordering::SeqCst);
                    }
                    Some(t)
                }
                None => None,
            }
        };
        let Some(mut task) = task else { continue };
        let done = task
            .fut
            .as_mut()
            .poll(&mut Context::from_waker(&task.waker))
            .is_ready();
        let mut st = e.st.borrow_mut();
        if done || st.killed.contains(&task.group) {
            st.wakes.remove(&id);
            drop(st);
            drop(task);
        } else {
            st.tasks.insert(id, task);
            drop(st);
        }
        run_hook(&e);
    }
}

/// Nothing is runnable: jump to the next deadline and wake what waits for it.
fn advance_clock(e: &Exec) -> Result<(), SimError> {
    let due: Vec<Waker> = {
        let mut st = e.st.borrow_mut();
        let Some((&(at, _), _)) = st.timers.first_key_value() else {
            return Err(SimError::Deadlock { at: elapsed() });
        };
        if Duration::from_nanos(at.saturating_sub(CLOCK_BASE)) > st.limits.max_time {
            return Err(SimError::TimeLimit { at: elapsed() });
        }
        NOW.with(|n| n.set(n.get().max(at)));
        let later = st.timers.split_off(&(at + 1, 0));
        std::mem::replace(&mut st.timers, later)
            .into_values()
            .collect()
    };
    due.into_iter().for_each(Waker::wake);
    Ok(())
}

/// Ends a run: drops what is left of it (unless a panic is unwinding: then it is leaked, so no
/// destructor can panic again) and uninstalls it.
struct Teardown;

impl Drop for Teardown {
    fn drop(&mut self) {
        let Some(e) = exec() else { return };
        for _ in 0..16 {
            let (tasks, timers) = {
                let mut st = e.st.borrow_mut();
                st.hook = None;
                (
                    std::mem::take(&mut st.tasks),
                    std::mem::take(&mut st.timers),
                )
            };
            if tasks.is_empty() && timers.is_empty() {
                break;
            }
            if std::thread::panicking() {
                std::mem::forget(tasks);
                std::mem::forget(timers);
                break;
            }
            drop(tasks);
            drop(timers);
        }
        EXEC.with(|x| x.borrow_mut().take());
    }
}

#[cfg(test)]
mod tests;
