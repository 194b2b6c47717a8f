//! openraft's log storage over the [`Journal`]: entries, vote and commit point in memory for
//! reads, every change queued to the journal in call order, each acknowledged to openraft only
//! once durable.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::rc::Rc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::RaftLogReader;

use super::journal::{Durable, Journal, JournalOp};
use super::{Entry, LogId, Rt, TypeConfig, Vote};
use openraft::AsyncRuntime;

#[derive(Default)]
struct Mem {
    vote: Option<Vote>,
    log: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
}

/// The Raft log (cheap to clone: the reader openraft asks for is a clone).
#[derive(Clone)]
pub struct LogStore {
    mem: Rc<RefCell<Mem>>,
    journal: Journal,
}

impl LogStore {
    pub fn new(durable: &Durable, journal: Journal) -> LogStore {
        let mem = Mem {
            vote: durable.vote,
            log: durable.log.clone(),
            last_purged: durable.last_purged,
            committed: durable.committed,
        };
        LogStore {
            mem: Rc::new(RefCell::new(mem)),
            journal,
        }
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
        self.mem.borrow_mut().vote = Some(*vote);
        self.journal
            .submit(vec![JournalOp::Vote(*vote)], true)
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.mem.borrow_mut().committed = committed;
        // Synced before openraft applies past it: a restart replays everything it ever
        // published quietly (see `state_machine`), which needs this bound to be on disk.
        self.journal
            .submit(vec![JournalOp::Committed(committed)], true)
            .await
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut mem = self.mem.borrow_mut();
            for e in &entries {
                mem.log.insert(e.log_id.index, e.clone());
            }
        }
        let durable = self.journal.submit(vec![JournalOp::Entries(entries)], true);
        drop(Rt::spawn(
            async move { callback.io_completed(durable.await) },
        ));
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let after = last.map(|l| l.index);
        self.mem
            .borrow_mut()
            .log
            .split_off(&after.map_or(0, |i| i.saturating_add(1)));
        self.journal
            .submit(vec![JournalOp::TruncateAfter(after)], true)
            .await
    }

    async fn purge(&mut self, id: LogId) -> Result<(), io::Error> {
        {
            let mut mem = self.mem.borrow_mut();
            mem.log = mem.log.split_off(&id.index.saturating_add(1));
            mem.last_purged = Some(id);
        }
        self.journal.submit(vec![JournalOp::Purge(id)], true).await
    }
}
