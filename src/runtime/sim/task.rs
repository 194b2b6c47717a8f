//! Join handles: what a spawned task's output (or its cancellation) is awaited through.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A task was dropped before it finished (its group was killed, or its run ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimJoinError;

impl fmt::Display for SimJoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "simulated task cancelled")
    }
}

pub(super) struct Slot<T> {
    pub(super) out: Option<Result<T, SimJoinError>>,
    pub(super) waker: Option<Waker>,
}

/// Fills a task's slot: with its output, or, dropped unfinished, with cancellation.
pub(super) struct Complete<T> {
    pub(super) slot: Rc<RefCell<Slot<T>>>,
    pub(super) done: bool,
}

impl<T> Complete<T> {
    pub(super) fn finish(&mut self, v: T) {
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
    pub(super) slot: Rc<RefCell<Slot<T>>>,
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
