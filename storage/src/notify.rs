//! A single-threaded "notify all" primitive (the shard runtime is single-threaded, so no atomics).
//!
//! Invariant: a [`Notified`] future resolves once `notify_all` has been called after the future
//! was created. Dropping a `Notified` removes its waker, so abandoned long-polls do not pile up.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    epoch: Cell<u64>,
    next_id: Cell<u64>,
    /// By registration order, so waiters wake in the order they started waiting.
    waiters: RefCell<BTreeMap<u64, Waker>>,
}

impl Notify {
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            epoch: self.epoch.get(),
            id: None,
        }
    }

    pub fn notify_all(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, w) in waiters {
            w.wake();
        }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    epoch: u64,
    id: Option<u64>,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.epoch.get() != self.epoch {
            if let Some(id) = self.id.take() {
                self.notify.waiters.borrow_mut().remove(&id);
            }
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = self.notify.next_id.get();
                self.notify.next_id.set(id.wrapping_add(1));
                self.id = Some(id);
                id
            }
        };
        self.notify
            .waiters
            .borrow_mut()
            .insert(id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.notify.waiters.borrow_mut().remove(&id);
        }
    }
}
