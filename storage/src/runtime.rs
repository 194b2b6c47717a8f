//! The storage crate's seam to its runtime: files and positional I/O, the buffer types they
//! take, tasks, blocking work and timers. compio (io_uring) is underneath; no other module of
//! this crate names compio, so a simulation can put its own files and scheduler here.

pub use compio::buf::{IntoInner, IoBuf, IoBufMut, SetLen};
pub use compio::fs::{create_dir_all, read, remove_file, rename, File, OpenOptions};
pub use compio::io::{AsyncReadAt, AsyncReadAtExt, AsyncWriteAtExt};
pub use compio::runtime::JoinHandle;
pub use compio::BufResult;

use std::future::Future;
use std::time::Duration;

/// Spawns a task on the current thread's runtime (a shard's).
pub fn spawn<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    compio::runtime::spawn(future)
}

/// Runs `f` on the runtime's blocking-work threads; `None` if it panicked.
pub async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    compio::runtime::spawn_blocking(f).await.ok()
}

pub async fn sleep(d: Duration) {
    compio::time::sleep(d).await
}

/// Lets the runtime's other ready tasks run before this one goes on.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Submits the operations queued so far to the kernel now, instead of at the runtime's next
/// turn (the writer uses it to start one write while it prepares the next).
pub fn submit_now() {
    compio::runtime::Runtime::with_current(|rt| rt.flush());
}
