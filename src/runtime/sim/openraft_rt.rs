//! openraft's [`AsyncRuntime`] on the simulator: spawning, sleeps and timeouts on virtual
//! time, `thread_rng()` from the run's seed, and the compio adapter's channels and mutex
//! (flume, `see`, futures: runtime-agnostic, they only use wakers).

use std::future::Future;
use std::time::Duration;

use openraft::rt::{AsyncRuntime, OptionalSend};
use openraft_rt_compio::CompioRuntime;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{
    run, sleep, sleep_until, spawn, splitmix64, timeout, timeout_at, with_state, Limits,
    SimElapsed, SimInstant, SimJoinError, SimJoinHandle, SimSleep, SimTimeout, LOOSE_RNG,
};

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
