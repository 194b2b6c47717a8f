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
//! can ever run again (deadlock). Channels and the mutex are the compio adapter's (flume,
//! `see`, futures): runtime-agnostic, they only use wakers.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use openraft::rt::{AsyncRuntime, OptionalSend};
use openraft_rt_compio::CompioRuntime;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

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

/// A point on the virtual clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimInstant(u64);

impl SimInstant {
    /// Virtual time since the run started.
    pub fn since_start(self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(CLOCK_BASE))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for SimInstant {
    type Output = SimInstant;
    fn add(self, d: Duration) -> SimInstant {
        SimInstant(self.0.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for SimInstant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for SimInstant {
    type Output = SimInstant;
    fn sub(self, d: Duration) -> SimInstant {
        SimInstant(self.0.saturating_sub(nanos(d)))
    }
}

impl SubAssign<Duration> for SimInstant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<SimInstant> for SimInstant {
    type Output = Duration;
    fn sub(self, earlier: SimInstant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl openraft::Instant for SimInstant {
    fn now() -> SimInstant {
        SimInstant(NOW.with(Cell::get))
    }
}

/// Resolves at a virtual deadline.
pub struct SimSleep {
    deadline: u64,
    /// Its entry in the timer list, while it waits.
    key: Option<(u64, u64)>,
}

impl Future for SimSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if NOW.with(Cell::get) >= self.deadline {
            self.deregister();
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let key = self.key;
        self.key = with_state(|st| {
            let key = key.unwrap_or_else(|| {
                st.next_timer += 1;
                (deadline, st.next_timer)
            });
            st.timers.insert(key, cx.waker().clone());
            key
        });
        Poll::Pending
    }
}

impl SimSleep {
    fn deregister(&mut self) {
        if let Some(key) = self.key.take() {
            // During teardown the executor may be borrowed already: then the list is gone.
            if let Some(e) = exec() {
                if let Ok(mut st) = e.st.try_borrow_mut() {
                    st.timers.remove(&key);
                }
            }
        }
    }
}

impl Drop for SimSleep {
    fn drop(&mut self) {
        self.deregister();
    }
}

/// Virtual now.
pub fn now() -> SimInstant {
    <SimInstant as openraft::Instant>::now()
}

/// `future`, or [`SimElapsed`] once virtual time reaches `deadline`.
pub fn timeout_at<F: Future>(deadline: SimInstant, future: F) -> SimTimeout<F> {
    SimTimeout {
        future: Box::pin(future),
        sleep: sleep_until(deadline),
    }
}

/// `future`, or [`SimElapsed`] after `d` of virtual time.
pub fn timeout<F: Future>(d: Duration, future: F) -> SimTimeout<F> {
    timeout_at(now() + d, future)
}

/// Sleeps until `deadline` on the virtual clock.
pub fn sleep_until(deadline: SimInstant) -> SimSleep {
    SimSleep {
        deadline: deadline.0,
        key: None,
    }
}

/// Sleeps for `d` of virtual time.
pub fn sleep(d: Duration) -> SimSleep {
    sleep_until(<SimInstant as openraft::Instant>::now() + d)
}

/// `future`, or [`SimElapsed`] at the deadline.
pub struct SimTimeout<F> {
    future: Pin<Box<F>>,
    sleep: SimSleep,
}

impl<F: Future> Future for SimTimeout<F> {
    type Output = Result<F::Output, SimElapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(SimElapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A timeout's deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimElapsed;

impl fmt::Display for SimElapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "virtual deadline elapsed")
    }
}

/// A task was dropped before it finished (its group was killed, or its run ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimJoinError;

impl fmt::Display for SimJoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "simulated task cancelled")
    }
}

struct Slot<T> {
    out: Option<Result<T, SimJoinError>>,
    waker: Option<Waker>,
}

/// Fills a task's slot: with its output, or, dropped unfinished, with cancellation.
struct Complete<T> {
    slot: Rc<RefCell<Slot<T>>>,
    done: bool,
}

impl<T> Complete<T> {
    fn finish(&mut self, v: T) {
        self.done = true;
        let waker = {
            let mut s = self.slot.borrow_mut();
            s.out = Some(Ok(v));
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Complete<T> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let waker = match self.slot.try_borrow_mut() {
            Ok(mut s) => {
                s.out = Some(Err(SimJoinError));
                s.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Awaits a task's output; dropping it detaches the task.
pub struct SimJoinHandle<T> {
    slot: Rc<RefCell<Slot<T>>>,
}

impl<T> Future for SimJoinHandle<T> {
    type Output = Result<T, SimJoinError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.borrow_mut();
        match s.out.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// openraft's runtime on the simulator.
#[derive(Debug, Default)]
pub struct SimRuntime {
    seed: u64,
}

impl SimRuntime {
    pub fn with_seed(seed: u64) -> SimRuntime {
        SimRuntime { seed }
    }
}

type Compio = CompioRuntime;

impl AsyncRuntime for SimRuntime {
    type JoinError = SimJoinError;
    type JoinHandle<T: OptionalSend + 'static> = SimJoinHandle<T>;
    type Sleep = SimSleep;
    type Instant = SimInstant;
    type TimeoutError = SimElapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = SimTimeout<T>;
    type ThreadLocalRng = SmallRng;
    type Mpsc = <Compio as AsyncRuntime>::Mpsc;
    type Watch = <Compio as AsyncRuntime>::Watch;
    type Oneshot = <Compio as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <Compio as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> SimJoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        spawn(future)
    }

    fn sleep(duration: Duration) -> SimSleep {
        sleep(duration)
    }

    fn sleep_until(deadline: SimInstant) -> SimSleep {
        sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(d: Duration, future: F) -> SimTimeout<F> {
        timeout(d, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: SimInstant,
        future: F,
    ) -> SimTimeout<F> {
        timeout_at(deadline, future)
    }

    fn is_panic(_: &SimJoinError) -> bool {
        // A panicking task fails the whole run; a join error is always a cancellation.
        false
    }

    fn thread_rng() -> SmallRng {
        let seed = with_state(|st| st.rng.random::<u64>()).unwrap_or_else(|| {
            LOOSE_RNG.with(|c| {
                c.set(splitmix64(c.get()));
                c.get()
            })
        });
        SmallRng::seed_from_u64(seed)
    }

    fn new(_threads: usize) -> SimRuntime {
        SimRuntime::default()
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        match run(self.seed, Limits::default(), future) {
            Ok(v) => v,
            Err(e) => panic!("simulation (seed {}) stopped: {e}", self.seed),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
