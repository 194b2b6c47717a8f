//! Virtual time: the clock's instants ([`SimInstant`], openraft's `Instant`), sleeps on the
//! executor's timer list, and timeouts.
//!
//! Invariant: a sleep is in the timer list exactly while it is pending (dropping it removes
//! it), so the executor never advances the clock for a sleep nobody awaits.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{exec, with_state, CLOCK_BASE, NOW};

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
