//! openraft's state machine: the controller's image. Applying an entry replays its metadata
//! records into the shared [`Controller`] (all or none of an entry's records), then publishes
//! the new image to the broker (every shard applies it) before the next entry is applied.
//! Snapshots are the image as records (`MetadataImage::records`), kept in the journal.
//!
//! Replay after a restart is quiet: entries up to the commit point the journal held at start
//! were applied (and their images published, partitions opened and deleted) before, so
//! publishing them one by one again would walk the shards through old states — a topic
//! deleted and created again would have its first incarnation opened over the second one's
//! directory. They are replayed into the image only, and the image they end at is published
//! once. The commit point is saved durably before anything is applied past it (the log
//! store's `save_committed`), so nothing published before a crash lies beyond it.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tracing::error;

use super::journal::{Journal, JournalOp};
use super::{Applied, LogId, Publish, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::cluster::image::MetadataImage;
use crate::cluster::record::MetadataRecord;
use crate::controller::Controller;

/// A snapshot's content.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    epoch: u64,
    records: Vec<MetadataRecord>,
}

struct Inner {
    controller: Rc<RefCell<Controller>>,
    publish: Publish,
    journal: Journal,
    last_applied: RefCell<Option<LogId>>,
    membership: RefCell<StoredMembership>,
    snapshot: RefCell<Option<(SnapshotMeta, Vec<u8>)>>,
    /// Entries up to this index are replayed without publishing (see the module doc).
    quiet_until: std::cell::Cell<Option<u64>>,
}

/// The state machine (cheap to clone; the snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachine(Rc<Inner>);

/// `image` with one change's `records` applied, all or none (`None`, logged: the image cannot
/// take them, and every node skips them alike).
pub fn apply_change(image: &MetadataImage, records: &[MetadataRecord]) -> Option<MetadataImage> {
    let first = image.epoch + 1;
    let mut next = image.clone();
    for (i, r) in records.iter().enumerate() {
        if let Err(e) = next.apply(first + i as u64, r) {
            error!(error = %e, "a committed metadata change does not apply; skipped");
            return None;
        }
    }
    Some(next)
}

/// A snapshot's data: the image as records, JSON.
pub fn encode_snapshot(image: &MetadataImage) -> io::Result<Vec<u8>> {
    let body = SnapshotBody {
        epoch: image.epoch,
        records: image.records(),
    };
    serde_json::to_vec(&body).map_err(io::Error::other)
}

/// The image a snapshot holds.
pub fn snapshot_image(data: &[u8]) -> io::Result<MetadataImage> {
    let body: SnapshotBody = serde_json::from_slice(data).map_err(io::Error::other)?;
    MetadataImage::from_records(body.epoch, &body.records).map_err(io::Error::other)
}

impl StateMachine {
    /// A state machine at `snapshot` (the journal's latest), whose image the controller
    /// already holds.
    pub fn new(
        controller: Rc<RefCell<Controller>>,
        publish: Publish,
        journal: Journal,
        snapshot: Option<(SnapshotMeta, Vec<u8>)>,
        committed: Option<LogId>,
    ) -> StateMachine {
        let (last_applied, membership) = match &snapshot {
            Some((meta, _)) => (meta.last_log_id, meta.last_membership.clone()),
            None => (None, StoredMembership::default()),
        };
        let quiet_until = committed
            .map(|c| c.index)
            .filter(|c| last_applied.is_none_or(|a| *c > a.index));
        StateMachine(Rc::new(Inner {
            controller,
            publish,
            journal,
            last_applied: RefCell::new(last_applied),
            membership: RefCell::new(membership),
            snapshot: RefCell::new(snapshot),
            quiet_until: std::cell::Cell::new(quiet_until),
        }))
    }

    /// Ends a quiet replay once `index` reaches its end: publishes the image it ended at.
    async fn end_quiet_replay(&self, index: u64) {
        if self.0.quiet_until.get().is_some_and(|q| index >= q) {
            self.0.quiet_until.set(None);
            let image = Arc::new(self.0.controller.borrow().image().clone());
            tracing::info!(
                epoch = image.epoch,
                "replayed the metadata log; publishing its image"
            );
            (self.0.publish)(image).await;
        }
    }

    /// Replays `records` as one change: all apply, or none (an entry the image cannot take is
    /// skipped the same way on every node, and logged).
    fn replay(&self, records: &[MetadataRecord]) -> Option<(u64, Arc<MetadataImage>)> {
        let mut c = self.0.controller.borrow_mut();
        let first = c.image().epoch + 1;
        let image = apply_change(c.image(), records)?;
        c.reset_image(image.clone());
        Some((first, Arc::new(image)))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (image, meta) = {
            let image = self.0.controller.borrow().image().clone();
            let meta = SnapshotMeta {
                last_log_id: *self.0.last_applied.borrow(),
                last_membership: self.0.membership.borrow().clone(),
            };
            (image, meta)
        };
        let data = encode_snapshot(&image)?;
        let op = JournalOp::Snapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.0.journal.submit(vec![op], true).await?;
        *self.0.snapshot.borrow_mut() = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((
            *self.0.last_applied.borrow(),
            self.0.membership.borrow().clone(),
        ))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            *self.0.last_applied.borrow_mut() = Some(entry.log_id);
            let quiet = self
                .0
                .quiet_until
                .get()
                .is_some_and(|q| entry.log_id.index <= q);
            let mut applied = Applied::default();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(ref proposal) => match self.replay(&proposal.records) {
                    Some((first, image)) => {
                        applied.first_offset = first;
                        applied.last_offset = image.epoch;
                        if !quiet {
                            applied.failed_topics = (self.0.publish)(image).await;
                        }
                    }
                    None => applied.skipped = true,
                },
                EntryPayload::Membership(ref m) => {
                    *self.0.membership.borrow_mut() =
                        StoredMembership::new(Some(entry.log_id), m.clone());
                }
            }
            self.end_quiet_replay(entry.log_id.index).await;
            if let Some(r) = responder {
                r.send(applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), io::Error> {
        let image = snapshot_image(&data)?;
        let op = JournalOp::Snapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.0.journal.submit(vec![op], true).await?;
        self.0.controller.borrow_mut().reset_image(image.clone());
        *self.0.last_applied.borrow_mut() = meta.last_log_id;
        *self.0.membership.borrow_mut() = meta.last_membership.clone();
        *self.0.snapshot.borrow_mut() = Some((meta.clone(), data));
        let covers = meta.last_log_id.map_or(0, |l| l.index);
        if self.0.quiet_until.get().is_some_and(|q| covers >= q) {
            self.0.quiet_until.set(None);
        }
        (self.0.publish)(Arc::new(image)).await;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .0
            .snapshot
            .borrow()
            .as_ref()
            .map(|(meta, data)| Snapshot {
                meta: meta.clone(),
                snapshot: data.clone(),
            }))
    }
}
