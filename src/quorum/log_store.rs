//! openraft's log storage over the [`Journal`]: entries, vote and commit point in memory for
//! reads, every change queued to the journal in call order, each acknowledged to openraft only
//! once durable.

use std::cell::RefCell;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::rc::Rc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::RaftLogReader;

use super::journal::{Durable, Journal, JournalOp};
use super::{Entry, LogId, Rt, TypeConfig, Vote};
use openraft::AsyncRuntime;

/// The Raft log (cheap to clone: the reader openraft asks for is a clone). Its memory is the
/// journal's state kept by the same `Durable::apply` that replays the journal, so memory and a
/// restart see the same log.
#[derive(Clone)]
pub struct LogStore {
    mem: Rc<RefCell<Durable>>,
    journal: Journal,
}

impl LogStore {
    pub fn new(durable: &Durable, journal: Journal) -> LogStore {
        let mem = Durable {
            // The state machine keeps the snapshot; the log needs none of it.
            snapshot: None,
            ..durable.clone()
        };
        LogStore {
            mem: Rc::new(RefCell::new(mem)),
            journal,
        }
    }

    /// Applies `op` to memory, then queues it: resolves once durable (`sync`) or written.
    fn record(
        &self,
        op: JournalOp,
        sync: bool,
    ) -> impl std::future::Future<Output = io::Result<()>> + 'static {
        self.mem.borrow_mut().apply(&op);
        self.journal.submit(vec![op], sync)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self
            .mem
            .borrow()
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.mem.borrow().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let mem = self.mem.borrow();
        let last = mem
            .log
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(mem.last_purged);
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.record(JournalOp::Vote(*vote), true).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Synced before openraft applies past it: a restart replays everything it ever
        // published quietly (see `state_machine`), which needs this bound to be on disk.
        self.record(JournalOp::Committed(committed), true).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.mem.borrow().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry>,
    {
        let op = JournalOp::Entries(entries.into_iter().collect());
        let durable = self.record(op, true);
        drop(Rt::spawn(
            async move { callback.io_completed(durable.await) },
        ));
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let after = last.map(|l| l.index);
        self.record(JournalOp::TruncateAfter(after), true).await
    }

    async fn purge(&mut self, id: LogId) -> Result<(), io::Error> {
        self.record(JournalOp::Purge(id), true).await
    }
}
