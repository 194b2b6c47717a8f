//! The Raft journal: everything the quorum must keep across a crash — the vote, log entries,
//! truncations and purges, the commit point and the latest snapshot — as one append-only file
//! of [`JournalOp`]s in the frames of `crate::cluster::frames`.
//!
//! ```text
//! <data-dir>/__raft/journal      magic "SLRJ" | version u16 = 1 | frames of JSON JournalOps
//! <data-dir>/__raft/journal.tmp  a compaction being written (removed on open)
//! ```
//!
//! One thread (`sluice-raft-journal`) writes and fdatasyncs, so no reactor blocks on the disk;
//! callers await its answer (the log store's `append` hands the answer to openraft's flush
//! callback). When the file has grown past [`COMPACT_BYTES`] and twice what it holds, the thread
//! rewrites it from what it holds (tmp → fsync → rename → fsync dir). Replay cuts a torn last
//! frame; corruption anywhere else refuses to start.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{error, info};

use super::{Entry, LogId, SnapshotMeta, Vote};
use crate::cluster::frames;

/// Journal size past which it is rewritten (when also twice its live content).
const COMPACT_BYTES: u64 = 4 << 20;
/// Writes queued for the journal thread.
const QUEUE_DEPTH: usize = 1024;
const MAGIC: &[u8; 4] = b"SLRJ";
const VERSION: u16 = 1;

/// The file header: magic and version.
fn header() -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&VERSION.to_be_bytes());
    h
}

/// Creates an empty journal (just its header), durably.
fn create(dir: &Path, path: &Path) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(&header())?;
    f.sync_all()?;
    fs::File::open(dir)?.sync_all()
}

/// One change to the durable Raft state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JournalOp {
    Vote(Vote),
    Entries(Vec<Entry>),
    /// Entries after this index are gone (`None`: all).
    TruncateAfter(Option<u64>),
    /// Entries up to and including this id are gone.
    Purge(LogId),
    Committed(Option<LogId>),
    Snapshot {
        meta: SnapshotMeta,
        data: Vec<u8>,
    },
}

/// What the journal holds: the result of replaying its ops.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    pub vote: Option<Vote>,
    pub log: BTreeMap<u64, Entry>,
    pub last_purged: Option<LogId>,
    pub committed: Option<LogId>,
    pub snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

impl Durable {
    pub fn apply(&mut self, op: &JournalOp) {
        match op {
            JournalOp::Vote(v) => self.vote = Some(*v),
            JournalOp::Entries(es) => {
                for e in es {
                    self.log.insert(e.log_id.index, e.clone());
                }
            }
            JournalOp::TruncateAfter(after) => {
                let from = after.map_or(0, |i| i.saturating_add(1));
                self.log.split_off(&from);
            }
            JournalOp::Purge(id) => {
                self.log = self.log.split_off(&id.index.saturating_add(1));
                self.last_purged = Some(*id);
            }
            JournalOp::Committed(c) => self.committed = *c,
            JournalOp::Snapshot { meta, data } => {
                self.snapshot = Some((meta.clone(), data.clone()))
            }
        }
    }

    /// The ops that rebuild this state.
    fn ops(&self) -> Vec<JournalOp> {
        let mut out = Vec::new();
        if let Some(v) = self.vote {
            out.push(JournalOp::Vote(v));
        }
        if let Some((meta, data)) = &self.snapshot {
            out.push(JournalOp::Snapshot {
                meta: meta.clone(),
                data: data.clone(),
            });
        }
        if let Some(p) = self.last_purged {
            out.push(JournalOp::Purge(p));
        }
        if !self.log.is_empty() {
            out.push(JournalOp::Entries(self.log.values().cloned().collect()));
        }
        out.push(JournalOp::Committed(self.committed));
        out
    }
}

fn encode(ops: &[JournalOp], out: &mut Vec<u8>) {
    for op in ops {
        // Serialising these plain types cannot fail.
        frames::encode(out, &serde_json::to_vec(op).unwrap_or_default());
    }
}

/// Where journal writes go.
#[derive(Clone)]
pub struct Journal {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    File(flume::Sender<Job>),
    /// The simulation's disk: durable at once, shared across a node's restarts.
    #[cfg(test)]
    Memory(std::rc::Rc<std::cell::RefCell<Durable>>),
    /// A simulated disk (`crate::quorum::sim`).
    #[cfg(test)]
    Simulated(SimulatedDisk),
}

/// A simulated disk: takes a submission's ops at once (in call order) and answers on the
/// sender once they are durable (`Journal::submit`'s contract), or never if it crashes first.
#[cfg(test)]
pub type SimulatedDisk = std::rc::Rc<dyn Fn(Vec<JournalOp>, bool, flume::Sender<io::Result<()>>)>;

struct Job {
    ops: Vec<JournalOp>,
    sync: bool,
    done: flume::Sender<io::Result<()>>,
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join("journal")
}

/// Reads the journal in `dir` (creating `dir`), cutting a torn tail.
pub fn load(dir: &Path) -> io::Result<Durable> {
    fs::create_dir_all(dir)?;
    let _ = fs::remove_file(dir.join("journal.tmp"));
    let path = journal_path(dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create(dir, &path)?;
            return Ok(Durable::default());
        }
        Err(e) => return Err(e),
    };
    let corrupt = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    if bytes.len() < header().len() && header().starts_with(&bytes) {
        // A crash while it was being created.
        create(dir, &path)?;
        return Ok(Durable::default());
    }
    let (state, valid) = decode(&bytes).map_err(|why| corrupt(&why))?;
    if valid < bytes.len() {
        info!(path = %path.display(), cut = bytes.len() - valid, "cutting a torn write off the Raft journal");
        let f = fs::OpenOptions::new().write(true).open(&path)?;
        f.set_len(valid as u64)?;
        f.sync_all()?;
    }
    Ok(state)
}

/// Replays a journal file's bytes: the state, and the length of the valid prefix (shorter
/// than `bytes` when the last frame is torn). Malformed content is an error, never a panic.
pub fn decode(bytes: &[u8]) -> Result<(Durable, usize), String> {
    let header = header();
    if bytes.get(..4) != Some(&MAGIC[..]) {
        return Err("not a Raft journal (bad magic)".into());
    }
    if bytes.get(4..6) != Some(&VERSION.to_be_bytes()[..]) {
        return Err("unknown journal version".into());
    }
    let (bodies, valid) = frames::scan(&bytes[header.len()..], true)?;
    let mut state = Durable::default();
    for body in bodies {
        let op: JournalOp = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        state.apply(&op);
    }
    Ok((state, valid + header.len()))
}

impl Journal {
    /// Starts the journal thread writing to `dir`, which holds `state` (from [`load`]).
    pub fn start(dir: &Path, state: Durable) -> io::Result<Journal> {
        let path = journal_path(dir);
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let size = file.metadata()?.len();
        let (tx, rx) = flume::bounded::<Job>(QUEUE_DEPTH);
        let mut writer = Writer {
            dir: dir.to_owned(),
            file,
            size,
            compacted: size,
            state,
            poisoned: None,
        };
        std::thread::Builder::new()
            .name("sluice-raft-journal".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let r = writer.write(&job.ops, job.sync);
                    if let Err(e) = &r {
                        error!(error = %e, "writing the Raft journal failed");
                    }
                    let _ = job.done.send(r);
                }
            })?;
        Ok(Journal {
            backend: Backend::File(tx),
        })
    }

    #[cfg(test)]
    pub fn memory(disk: std::rc::Rc<std::cell::RefCell<Durable>>) -> Journal {
        Journal {
            backend: Backend::Memory(disk),
        }
    }

    /// A journal on a simulated disk (`crate::quorum::sim`).
    #[cfg(test)]
    pub fn simulated(disk: SimulatedDisk) -> Journal {
        Journal {
            backend: Backend::Simulated(disk),
        }
    }

    /// Queues `ops` (in call order) and returns what resolves once they are durable (`sync`)
    /// or written.
    pub fn submit(
        &self,
        ops: Vec<JournalOp>,
        sync: bool,
    ) -> impl std::future::Future<Output = io::Result<()>> + 'static {
        let (done, rx) = flume::bounded(1);
        match &self.backend {
            Backend::File(tx) => {
                if let Err(e) = tx.send(Job { ops, sync, done }) {
                    let _ = e
                        .into_inner()
                        .done
                        .send(Err(io::Error::other("the Raft journal thread stopped")));
                }
            }
            #[cfg(test)]
            Backend::Memory(disk) => {
                let _ = sync;
                let mut d = disk.borrow_mut();
                for op in &ops {
                    d.apply(op);
                }
                let _ = done.send(Ok(()));
            }
            #[cfg(test)]
            Backend::Simulated(disk) => disk(ops, sync, done),
        }
        async move {
            rx.recv_async()
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the Raft journal thread stopped")))
        }
    }
}

struct Writer {
    dir: PathBuf,
    file: fs::File,
    size: u64,
    /// Size right after the last compaction.
    compacted: u64,
    state: Durable,
    /// Set by the first failed write: a torn frame may sit at the end of the file, so nothing
    /// more is written after it (a later frame would make it corruption mid-file); every later
    /// job fails with this, and a restart cuts the torn tail.
    poisoned: Option<String>,
}

impl Writer {
    fn write(&mut self, ops: &[JournalOp], sync: bool) -> io::Result<()> {
        if let Some(why) = &self.poisoned {
            return Err(io::Error::other(format!(
                "the Raft journal stopped after a failed write: {why}"
            )));
        }
        let r = self.write_unpoisoned(ops, sync);
        if let Err(e) = &r {
            self.poisoned = Some(e.to_string());
        }
        r
    }

    fn write_unpoisoned(&mut self, ops: &[JournalOp], sync: bool) -> io::Result<()> {
        let mut bytes = Vec::new();
        encode(ops, &mut bytes);
        self.file.write_all(&bytes)?;
        if sync {
            self.file.sync_data()?;
        }
        self.size += bytes.len() as u64;
        for op in ops {
            self.state.apply(op);
        }
        if self.size > COMPACT_BYTES && self.size > 2 * self.compacted {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> io::Result<()> {
        let mut bytes = header();
        encode(&self.state.ops(), &mut bytes);
        let tmp = self.dir.join("journal.tmp");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        // Opened before the rename (the same inode), so appends never go to an unlinked file.
        let appending = fs::OpenOptions::new().append(true).open(&tmp)?;
        fs::rename(&tmp, journal_path(&self.dir))?;
        fs::File::open(&self.dir)?.sync_all()?;
        self.file = appending;
        info!(
            from = self.size,
            to = bytes.len(),
            "compacted the Raft journal"
        );
        self.size = bytes.len() as u64;
        self.compacted = self.size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> Entry {
        use openraft::entry::RaftEntry;
        use openraft::vote::RaftLeaderId;
        let leader = openraft::impls::leader_id_adv::LeaderId::<u64, u64>::new(1, 0);
        Entry::new_blank(LogId::new(leader.to_committed(), index))
    }

    #[test]
    fn replays_what_was_written_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let state = load(dir.path()).unwrap();
        assert!(state.log.is_empty() && state.vote.is_none());
        let j = Journal::start(dir.path(), state).unwrap();
        // The journal's answers come over a channel: any executor waits for them.
        futures_executor::block_on(async {
            j.submit(vec![JournalOp::Entries((1..=5).map(entry).collect())], true)
                .await
                .unwrap();
            j.submit(vec![JournalOp::TruncateAfter(Some(3))], true)
                .await
                .unwrap();
            j.submit(vec![JournalOp::Purge(entry(1).log_id)], true)
                .await
                .unwrap();
            j.submit(vec![JournalOp::Entries(vec![entry(4)])], true)
                .await
                .unwrap();
        });
        drop(j);
        let state = load(dir.path()).unwrap();
        assert_eq!(state.log.keys().copied().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(state.last_purged.map(|l| l.index), Some(1));

        let path = dir.path().join("journal");
        let good = fs::read(&path).unwrap();
        fs::write(&path, &good[..good.len() - 3]).unwrap();
        let state = load(dir.path()).unwrap();
        assert_eq!(
            state.log.keys().copied().collect::<Vec<_>>(),
            [2, 3],
            "the torn last append is gone"
        );
        assert!(
            fs::read(&path).unwrap().len() < good.len(),
            "and cut off the file"
        );

        let mut bad = good.clone();
        bad[0] = b'X';
        fs::write(&path, &bad).unwrap();
        assert!(load(dir.path()).is_err(), "bad magic");
        let mut flipped = good;
        flipped[12] ^= 0xff; // inside the first frame
        fs::write(&path, &flipped).unwrap();
        assert!(load(dir.path()).is_err(), "corruption before the end");
    }

    /// Fixed-seed mutations of a real journal: every one decodes or is refused, none panics.
    #[test]
    fn mutated_journals_never_panic() {
        let mut bytes = header();
        let ops = vec![
            JournalOp::Vote(Vote::new(3, 1)),
            JournalOp::Entries((1..=3).map(entry).collect()),
            JournalOp::TruncateAfter(Some(u64::MAX)),
            JournalOp::Purge(entry(u64::MAX).log_id),
            JournalOp::Committed(Some(entry(2).log_id)),
        ];
        encode(&ops, &mut bytes);
        assert!(
            decode(&bytes).is_ok(),
            "the extremes apply without overflow"
        );
        let mut rng = sluice_base::Rng::new(14);
        for _ in 0..3000 {
            let m = rng.mutate(&bytes, 8);
            let _ = decode(&m);
        }
    }
}
