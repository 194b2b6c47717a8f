//! The controller quorum: the metadata log replicated by Raft among the controller voters
//! (`--controller-quorum-voters`), with openraft doing Raft. This module is the only one that
//! names openraft; the rest of the broker sees [`Quorum`]: `write` records (on the active
//! controller, the Raft leader), learn who leads, call another voter's endpoint.
//!
//! - Log entries carry one change's [`MetadataRecord`]s; every voter applies committed entries
//!   to the shared [`Controller`]'s image (`state_machine.rs`) and publishes the new image to its
//!   shards. A record's offset is its position among all records applied, so every voter
//!   numbers them alike.
//! - Durable state (vote, entries, snapshots) lives in one journal file (`journal.rs`),
//!   written by its own thread; snapshots every [`SNAPSHOT_EVERY`] entries trim it.
//! - Traffic between voters: `network.rs` (TCP, one request at a time per connection).
//! - A voter that starts with an empty journal initialises the cluster with the static voter
//!   set; doing so on every voter with the same set is safe (Raft elects one leader).
//!
//! Must not touch: shards, Kafka handlers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ReadPolicy};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::cluster::image::MetadataImage;
use crate::cluster::record::MetadataRecord;
use crate::controller::Controller;

pub mod journal;
mod log_store;
pub mod network;
#[cfg(test)]
mod sim;
mod state_machine;

pub use network::{AppHandler, ControllerTls};

/// One change: the records the controller proposed for one command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub records: Vec<MetadataRecord>,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} metadata record(s)", self.records.len())
    }
}

/// What applying a [`Proposal`] did (seen by the leader that wrote it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Offsets of its records (`last_offset` is the image's epoch after it).
    pub first_offset: u64,
    pub last_offset: u64,
    /// The image could not take it (the proposal was validated against an older image).
    pub skipped: bool,
    /// Topics some of whose partitions this node failed to open.
    pub failed_topics: Vec<String>,
}

pub(crate) type Rt = crate::runtime::RaftRuntime;

openraft::declare_raft_types!(
    /// openraft's types for the metadata quorum.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = BasicNode,
        AsyncRuntime = Rt,
);

pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
type LogId = openraft::alias::LogIdOf<TypeConfig>;
type Vote = openraft::alias::VoteOf<TypeConfig>;
type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;

/// Entries between snapshots.
pub const SNAPSHOT_EVERY: u64 = 1024;
/// How long a snapshot may take to send and install on a follower.
const SNAPSHOT_INSTALL_TIMEOUT_MS: u64 = 30_000;

/// Publishes an applied image to the broker; resolves with the topics some of whose
/// partitions failed to open.
pub type Publish = Rc<dyn Fn(Arc<MetadataImage>) -> LocalBoxFuture<'static, Vec<String>>>;

/// How this node takes part in the quorum.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: i32,
    /// Every voter's controller endpoint.
    pub voters: BTreeMap<i32, SocketAddr>,
    /// Where the journal lives.
    pub dir: PathBuf,
    /// Raft heartbeat; elections time out after 3–6 of these.
    pub heartbeat: Duration,
    /// TLS on the controller endpoint (`--controller-security-protocol SSL`).
    pub tls: Option<network::ControllerTls>,
}

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QuorumError {
    #[error("not the active controller (the leader is {0:?})")]
    NotLeader(Option<i32>),
    #[error("the controller quorum is unavailable: {0}")]
    Unavailable(String),
}

/// Where this node stands in the quorum (metrics, `sluice cluster info`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub leader: Option<i32>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    /// Per voter: its last replicated log index, as the leader sees it (leader only).
    pub voters: BTreeMap<i32, Option<u64>>,
}

/// This node's handle on the quorum.
pub struct Quorum {
    raft: Raft,
    config: QuorumConfig,
    /// The journal was empty at start: `bootstrap` initialises the cluster.
    pristine: std::cell::Cell<bool>,
}

/// The journal's content and the two images a restarting voter starts from.
pub struct Recovered {
    durable: journal::Durable,
    /// The latest snapshot's image: where the controller (the state machine) starts; Raft
    /// replays the entries after it.
    pub snapshot_image: MetadataImage,
    /// The image at the durable commit point: where the shards start. Every image published
    /// before the restart is at or before it (the commit point is synced before anything is
    /// applied past it), so the partitions opened from it are the ones on disk — opening the
    /// snapshot's older image could open a deleted topic over its successor's directory.
    pub image: MetadataImage,
}

/// Reads the journal in `dir`.
pub fn recover(dir: &std::path::Path) -> io::Result<Recovered> {
    let durable = journal::load(dir)?;
    let (snapshot_image, snapshot_index) = match &durable.snapshot {
        Some((meta, data)) => (
            state_machine::snapshot_image(data)?,
            meta.last_log_id.map(|l| l.index),
        ),
        None => (MetadataImage::default(), None),
    };
    let mut image = snapshot_image.clone();
    if let Some(committed) = durable.committed {
        let after = snapshot_index.map_or(0, |i| i.saturating_add(1));
        for entry in durable.log.range(after..=committed.index).map(|(_, e)| e) {
            if let openraft::EntryPayload::Normal(p) = &entry.payload {
                if let Some(next) = state_machine::apply_change(&image, &p.records) {
                    image = next;
                }
            }
        }
    }
    Ok(Recovered {
        durable,
        snapshot_image,
        image,
    })
}

fn raft_config(heartbeat: Duration, snapshot_every: u64) -> io::Result<Arc<openraft::Config>> {
    let hb = heartbeat.as_millis().max(10) as u64;
    let config = openraft::Config {
        cluster_name: "sluice".into(),
        heartbeat_interval: hb,
        election_timeout_min: hb * 3,
        election_timeout_max: hb * 6,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every),
        // Sending a snapshot includes the follower's fsync and its shards opening or deleting
        // partitions; openraft's 200 ms default would make a lagging follower retry for ever.
        install_snapshot_timeout: SNAPSHOT_INSTALL_TIMEOUT_MS,
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    Ok(Arc::new(config.validate().map_err(io::Error::other)?))
}

fn leader_of(raft: &Raft) -> Option<i32> {
    raft.metrics()
        .borrow_watched()
        .current_leader
        .map(|id| id as i32)
}

/// Builds and runs a voter's Raft over `network` from the durable state `durable` (which
/// `journal` holds and will extend), snapshotting every `snapshot_every` entries
/// ([`SNAPSHOT_EVERY`] in production). The simulation builds its nodes with this too.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn build_raft<N>(
    node_id: i32,
    heartbeat: Duration,
    snapshot_every: u64,
    network: N,
    durable: &journal::Durable,
    journal: journal::Journal,
    controller: Rc<RefCell<Controller>>,
    publish: Publish,
) -> io::Result<Raft>
where
    N: openraft::RaftNetworkFactory<TypeConfig>,
    N::Network: openraft::network::NetSnapshot<TypeConfig, SnapshotData = Vec<u8>>,
{
    let log = log_store::LogStore::new(durable, journal.clone());
    let sm = state_machine::StateMachine::new(
        controller,
        publish,
        journal,
        durable.snapshot.clone(),
        durable.committed,
    );
    let config = raft_config(heartbeat, snapshot_every)?;
    Raft::new(node_id as u64, config, network, log, sm)
        .await
        .map_err(io::Error::other)
}

impl Quorum {
    /// Starts this voter's Raft from `recovered` (the controller holds `recovered.image`).
    pub async fn start(
        config: QuorumConfig,
        recovered: Recovered,
        controller: Rc<RefCell<Controller>>,
        publish: Publish,
    ) -> io::Result<Rc<Quorum>> {
        let Recovered { durable, .. } = recovered;
        let pristine =
            durable.vote.is_none() && durable.log.is_empty() && durable.snapshot.is_none();
        let journal = journal::Journal::start(&config.dir, durable.clone())?;
        let raft = build_raft(
            config.node_id,
            config.heartbeat,
            SNAPSHOT_EVERY,
            network::Network {
                voters: config.voters.clone(),
                tls: config.tls.clone(),
            },
            &durable,
            journal,
            controller,
            publish,
        )
        .await?;
        Ok(Rc::new(Quorum {
            raft,
            config,
            pristine: std::cell::Cell::new(pristine),
        }))
    }

    /// Initialises a new cluster with the static voter set if this node's journal was empty
    /// (call once the endpoint serves: initialising starts an election).
    pub async fn bootstrap(&self) {
        if !self.pristine.replace(false) {
            return;
        }
        let members: BTreeMap<u64, BasicNode> = self
            .config
            .voters
            .iter()
            .map(|(id, addr)| {
                (
                    *id as u64,
                    BasicNode {
                        addr: addr.to_string(),
                    },
                )
            })
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => info!(
                voters = self.config.voters.len(),
                "initialised the controller quorum"
            ),
            Err(e) => info!(error = %e, "not initialising the controller quorum"),
        }
    }

    /// Serves this voter's controller endpoint on `listener`.
    pub fn serve(&self, listener: crate::runtime::net::TcpListener, app: AppHandler) {
        let me = self.config.node_id as u64;
        let tls = self.config.tls.clone();
        crate::runtime::spawn(network::serve(listener, me, self.raft.clone(), app, tls)).detach();
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The active controller as this node knows it.
    pub fn leader(&self) -> Option<i32> {
        leader_of(&self.raft)
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.config.node_id)
    }

    /// Waits until this node's image holds every change committed before the call (leader
    /// only): commands are validated against an image that is not behind.
    pub async fn linearize(&self) -> Result<(), QuorumError> {
        self.raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                RaftError::APIError(openraft::error::LinearizableReadError::ForwardToLeader(f)) => {
                    QuorumError::NotLeader(f.leader_id.map(|id| id as i32))
                }
                e => QuorumError::Unavailable(e.to_string()),
            })
    }

    /// Replicates `records` as one change and waits until this node has applied it.
    pub async fn write(&self, records: Vec<MetadataRecord>) -> Result<Applied, QuorumError> {
        match self.raft.client_write(Proposal { records }).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(QuorumError::NotLeader(f.leader_id.map(|id| id as i32)))
            }
            Err(e) => Err(QuorumError::Unavailable(e.to_string())),
        }
    }

    /// A snapshot of where this node stands.
    pub fn status(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let mut voters: BTreeMap<i32, Option<u64>> =
            self.config.voters.keys().map(|id| (*id, None)).collect();
        if let Some(repl) = &m.replication {
            for (id, matched) in repl.iter() {
                voters.insert(*id as i32, matched.map(|l| l.index));
            }
        }
        QuorumStatus {
            leader: m.current_leader.map(|id| id as i32),
            term: m.current_term,
            commit_index: m.local_committed.map_or(0, |l| l.index),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            voters,
        }
    }

    /// Stops Raft (at shutdown).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "stopping Raft failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::journal::{Journal, JournalOp};
    use super::*;
    use crate::cluster::record::topic_on_node;
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderId;

    fn log_id(index: u64) -> LogId {
        let leader = openraft::impls::leader_id_adv::LeaderId::<u64, u64>::new(1, 0);
        LogId::new(leader.to_committed(), index)
    }

    /// A restarting voter's shards start at the commit point, not at the older snapshot: a
    /// topic deleted and created again after the snapshot is opened as its new incarnation.
    #[test]
    fn recovery_starts_the_shards_at_the_commit_point() {
        let dir = tempfile::tempdir().unwrap();
        let old =
            MetadataImage::from_records(2, &topic_on_node("t", [1; 16], 1, false, 0)).unwrap();
        let snapshot = JournalOp::Snapshot {
            meta: SnapshotMeta {
                last_log_id: Some(log_id(2)),
                last_membership: StoredMembership::default(),
            },
            data: state_machine::encode_snapshot(&old).unwrap(),
        };
        let change = |index: u64, records: Vec<MetadataRecord>| {
            Entry::new_normal(log_id(index), Proposal { records })
        };
        let entries = vec![
            change(3, vec![MetadataRecord::RemoveTopic { topic_id: [1; 16] }]),
            change(4, topic_on_node("t", [2; 16], 1, false, 0)),
            change(5, topic_on_node("uncommitted", [3; 16], 1, false, 0)),
        ];
        let j = Journal::start(dir.path(), journal::load(dir.path()).unwrap()).unwrap();
        futures_executor::block_on(async {
            j.submit(vec![snapshot, JournalOp::Entries(entries)], true)
                .await
                .unwrap();
            j.submit(vec![JournalOp::Committed(Some(log_id(4)))], true)
                .await
                .unwrap();
        });
        drop(j);
        let r = recover(dir.path()).unwrap();
        assert_eq!(r.snapshot_image.topic("t").map(|t| t.id), Some([1; 16]));
        assert_eq!(
            r.image.topic("t").map(|t| t.id),
            Some([2; 16]),
            "the successor"
        );
        assert!(
            r.image.topic("uncommitted").is_none(),
            "only committed changes"
        );
    }
}
