//! Read-ahead for reads from the disk. With O_DIRECT the kernel reads nothing ahead, so a
//! consumer reading a backlog waited for the disk on every fetch (one 1 MiB read took about as
//! long as the rest of the fetch). After a fetch read batches up to position `pos` of a
//! segment, the next chunk from `pos` is read in the background; the fetch that asks for the
//! next offset takes it from memory while the disk reads the one after.
//!
//! One chunk per log (a second consumer of the same partition elsewhere in it goes to the disk
//! as before). The chunks of one thread's logs hold at most [`SHARD_BYTES`] between them;
//! beyond that nothing is read ahead.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use bytes::Bytes;

use crate::notify::Notify;
use crate::runtime::File;
use crate::segment::ReadVia;

/// Read-ahead bytes one thread's logs hold at most (chunks read and in flight).
pub const SHARD_BYTES: usize = 64 << 20;

thread_local! {
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// Bytes counted against [`SHARD_BYTES`] until dropped.
struct Reservation(usize);

impl Reservation {
    fn take(bytes: usize) -> Option<Reservation> {
        HELD.with(|h| {
            let held = h.get();
            (held + bytes <= SHARD_BYTES).then(|| {
                h.set(held + bytes);
                Reservation(bytes)
            })
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // try_with: a chunk dropped while the thread exits may outlive the thread-local.
        let _ = HELD.try_with(|h| h.set(h.get().saturating_sub(self.0)));
    }
}

/// A chunk being read, then read; the reservation goes when both the task and the chunk's
/// holder are done with it.
struct Slot {
    data: RefCell<Option<io::Result<Bytes>>>,
    done: Notify,
    _reserved: Reservation,
}

/// A chunk read ahead from segment `segment` (its `Segment::id`) at file position `pos`, where
/// the batches from `next_offset` start.
pub(super) struct ReadAhead {
    pub segment: u64,
    pub next_offset: i64,
    pub pos: u64,
    slot: Rc<Slot>,
}

impl ReadAhead {
    /// Starts reading `len` bytes at `pos` through `file` (an O_DIRECT handle); `None` if the
    /// thread's read-ahead memory is spent.
    pub fn start(
        file: File,
        segment: u64,
        next_offset: i64,
        pos: u64,
        len: usize,
    ) -> Option<ReadAhead> {
        let slot = Rc::new(Slot {
            data: RefCell::new(None),
            done: Notify::default(),
            _reserved: Reservation::take(len)?,
        });
        let task_slot = slot.clone();
        crate::runtime::spawn(async move {
            let r = ReadVia::Direct(file).read(pos, len).await;
            *task_slot.data.borrow_mut() = Some(r);
            task_slot.done.notify_all();
        })
        .detach();
        Some(ReadAhead {
            segment,
            next_offset,
            pos,
            slot,
        })
    }

    /// A chunk already read (taken by a read that then returned nothing).
    pub fn ready(segment: u64, next_offset: i64, pos: u64, data: Bytes) -> Option<ReadAhead> {
        let slot = Rc::new(Slot {
            _reserved: Reservation::take(data.len())?,
            data: RefCell::new(Some(Ok(data))),
            done: Notify::default(),
        });
        Some(ReadAhead {
            segment,
            next_offset,
            pos,
            slot,
        })
    }

    /// The chunk, once read; `None` if the read failed (the caller reads it itself).
    pub async fn take(self) -> Option<Bytes> {
        loop {
            let notified = self.slot.done.notified();
            if let Some(r) = self.slot.data.borrow_mut().take() {
                return r.ok();
            }
            notified.await;
        }
    }
}

/// The bytes held by the calling thread's read-ahead chunks (for metrics and tests).
pub fn readahead_usage() -> usize {
    HELD.with(Cell::get)
}
