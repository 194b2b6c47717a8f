//! The runtime seam: what the broker needs from its async runtime and its clocks — spawning
//! tasks, blocking work, timers, monotonic time, wall time. Today compio (io_uring) is
//! underneath; code above this module names none of compio's task or timer functions, so a
//! deterministic simulation can later put its own scheduler and clock here. Sockets and files
//! are not behind it yet (connections and the listener use compio's directly; storage owns
//! its files).

use std::future::Future;
use std::time::{Duration, Instant};

pub use compio::runtime::JoinHandle;
pub use compio::time::Elapsed;
pub use sluice_base::now_ms;

/// Spawns a task on this shard's runtime.
pub fn spawn<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    compio::runtime::spawn(future)
}

/// Runs `f` on the runtime's blocking-work threads (file system calls that io_uring does not
/// cover); `None` if it panicked.
pub async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    compio::runtime::spawn_blocking(f).await.ok()
}

pub async fn sleep(d: Duration) {
    compio::time::sleep(d).await
}

/// `f`, or `Err(Elapsed)` once `d` has passed.
pub async fn timeout<F: Future>(d: Duration, f: F) -> Result<F::Output, Elapsed> {
    compio::time::timeout(d, f).await
}

/// Monotonic now (deadlines, durations, latency metrics).
pub fn now() -> Instant {
    Instant::now()
}
