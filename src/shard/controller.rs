//! The controller's driver, on shard 0: runs one [`Command`] at a time through the pure
//! [`Controller`] — propose records, append them to the metadata log (written by its own
//! thread, so the reactor never blocks on the disk), replay them — then sends the new image to
//! every shard. An operation completes once every shard has applied it (logs for new
//! partitions open, logs of deleted topics gone), so a client that creates a topic can produce
//! to it at once. Calls come from any shard through the mesh ([`on_controller`]).

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::join_all;
use futures_util::lock::Mutex;
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use super::{MeshMsg, Shard};
use crate::cluster::image::{new_topic_id, MetadataImage, TopicMeta};
use crate::cluster::store::MetadataStore;
use crate::controller::liveness::Liveness;
use crate::controller::{Command, ConfigOp, Controller, NewTopic, OpError, OpResult};
use crate::quorum::{Quorum, QuorumError};

/// The controller's state on shard 0 (a field of [`Shard`]).
pub struct ControllerDriver {
    /// Shared with the quorum's state machine in cluster mode (it replays committed changes).
    pub(crate) state: Rc<RefCell<Controller>>,
    pub(crate) backend: Backend,
    /// Broker heartbeats, as the active controller (cluster mode).
    pub(crate) liveness: RefCell<Liveness>,
    /// This broker's registration epoch (cluster mode, once registered).
    pub(crate) broker_epoch: Cell<Option<u64>>,
    /// Whether the active controller last said this broker is fenced.
    pub(crate) broker_fenced: Cell<bool>,
    /// Connections to the voters' controller endpoints (cluster mode).
    pub(crate) voters: crate::quorum::network::Pool,
    /// The active controller as last learned (broker-only nodes).
    pub(crate) leader_hint: Cell<Option<i32>>,
    /// The newest image every shard has applied (cluster mode).
    pub(crate) published_epoch: Cell<u64>,
    /// Held from proposing a command until its records are replayed: commands are validated
    /// against an image that includes every earlier command.
    turn: Mutex<()>,
    /// Topics deleted from the image whose partition directories are still being removed on
    /// some shard; the receiver disconnects when every shard is done. A topic of the same name
    /// is created only after that, so no shard opens a directory another is still deleting.
    deleting: RefCell<HashMap<String, flume::Receiver<()>>>,
}

/// Where committed changes go.
pub enum Backend {
    /// A single node: the metadata log on this disk.
    Local(MetadataStore),
    /// A cluster: the controller quorum (set once Raft has started).
    Quorum(OnceCell<Rc<Quorum>>),
    /// A broker-only node of a cluster: metadata comes from the active controller.
    Remote,
}

impl ControllerDriver {
    pub fn new(
        controller: Controller,
        backend: Backend,
        session_timeout_ms: u64,
        heartbeat_interval_ms: u64,
        controller_tls: Option<crate::quorum::ControllerTls>,
    ) -> ControllerDriver {
        ControllerDriver {
            state: Rc::new(RefCell::new(controller)),
            backend,
            liveness: RefCell::new(Liveness::new(session_timeout_ms, heartbeat_interval_ms)),
            broker_epoch: Cell::new(None),
            broker_fenced: Cell::new(true),
            voters: crate::quorum::network::Pool::new(controller_tls),
            leader_hint: Cell::new(None),
            published_epoch: Cell::new(0),
            turn: Mutex::new(()),
            deleting: RefCell::new(HashMap::new()),
        }
    }

    /// The quorum, in cluster mode once started.
    pub fn quorum(&self) -> Option<&Rc<Quorum>> {
        match &self.backend {
            Backend::Quorum(q) => q.get(),
            Backend::Local(_) | Backend::Remote => None,
        }
    }
}

pub(crate) fn driver(shard: &Shard) -> &ControllerDriver {
    // Only shard 0 has a controller and every caller routes here through `on_controller`.
    shard
        .controller
        .as_ref()
        .unwrap_or_else(|| unreachable!("controller operation on shard {}", shard.id))
}

/// Runs `cmd`: proposes, persists, replays, broadcasts. Returns the image before and after,
/// and the topics whose partitions some shard failed to open.
async fn commit(
    shard: &Rc<Shard>,
    what: &'static str,
    cmd: Command,
) -> OpResult<(MetadataImage, Arc<MetadataImage>, BTreeSet<String>)> {
    let d = driver(shard);
    let store = match &d.backend {
        Backend::Local(store) => store,
        Backend::Quorum(q) => {
            let q = q.get().ok_or_else(|| not_controller(None))?;
            return commit_replicated(shard, q, what, cmd).await;
        }
        Backend::Remote => return Err(not_controller(None)),
    };
    let turn = d.turn.lock().await;
    let (before, records) = {
        let c = d.state.borrow();
        (c.image().clone(), c.propose(&cmd)?)
    };
    let frees_space = matches!(cmd, Command::DeleteTopic(_));
    let first = store
        .append(records.clone(), frees_space)
        .await
        .map_err(|e| {
            error!(error = %e, "persisting cluster metadata failed");
            OpError::new(ResponseError::KafkaStorageError, e.to_string())
        })?;
    let after = {
        let mut c = d.state.borrow_mut();
        if let Err(e) = c.replay(first, &records) {
            // The log's writer applied the same records to the same image: unreachable
            // unless memory and disk diverged, which only a restart can repair.
            error!(error = %e, "replaying committed metadata failed");
            return Err(OpError::new(
                ResponseError::UnknownServerError,
                e.to_string(),
            ));
        }
        Arc::new(c.image().clone())
    };
    drop(turn);
    // Crash tests: the change is durable, no shard has applied it yet.
    crate::util::failpoint(&format!("{what}-committed"));
    let failed = broadcast(shard, after.clone()).await;
    Ok((before, after, failed))
}

/// The error for a controller operation on a node that is not the active controller.
pub(crate) fn not_controller(leader: Option<i32>) -> OpError {
    OpError::new(
        ResponseError::NotController,
        match leader {
            Some(l) => format!("the active controller is node {l}"),
            None => "no active controller yet".to_owned(),
        },
    )
}

/// How long the active controller waits for the quorum to commit a change (a controller cut
/// off from the majority must not hold its command queue for ever).
const REPLICATED_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// [`commit`] in cluster mode, on the active controller: the records are proposed against an
/// image that holds every committed change, replicated, and applied (the quorum's state
/// machine replays them and sends the image to every shard) before this returns.
async fn commit_replicated(
    shard: &Rc<Shard>,
    q: &Rc<Quorum>,
    what: &'static str,
    cmd: Command,
) -> OpResult<(MetadataImage, Arc<MetadataImage>, BTreeSet<String>)> {
    let d = driver(shard);
    let quorum_error = |e: QuorumError| match e {
        QuorumError::NotLeader(l) => not_controller(l),
        QuorumError::Unavailable(why) => OpError::new(ResponseError::NotController, why),
    };
    let timed_out = || {
        OpError::new(
            ResponseError::RequestTimedOut,
            "the controller quorum did not commit the change in time (it may still commit)",
        )
    };
    // Bounded from the call, not from reaching the front: a controller cut off from the
    // quorum still believes it leads, and every command behind it would otherwise wait its
    // full turn: a queue that grows by one ISR change per partition every few seconds would
    // never drain.
    let deadline = crate::runtime::now() + REPLICATED_COMMIT_TIMEOUT;
    let turn = crate::runtime::timeout(REPLICATED_COMMIT_TIMEOUT, d.turn.lock())
        .await
        .map_err(|_| timed_out())?;
    if !q.is_leader() {
        return Err(not_controller(q.leader()));
    }
    let left = deadline.saturating_duration_since(crate::runtime::now());
    crate::runtime::timeout(left, q.linearize())
        .await
        .map_err(|_| timed_out())?
        .map_err(quorum_error)?;
    let (before, records) = {
        let c = d.state.borrow();
        (c.image().clone(), c.propose(&cmd)?)
    };
    let applied = if records.is_empty() {
        crate::quorum::Applied::default()
    } else {
        crate::runtime::timeout(REPLICATED_COMMIT_TIMEOUT, q.write(records))
            .await
            .map_err(|_| timed_out())?
            .map_err(quorum_error)?
    };
    drop(turn);
    if applied.skipped {
        return Err(OpError::new(
            ResponseError::UnknownServerError,
            "the change conflicted with a concurrent one; retry",
        ));
    }
    crate::util::failpoint(&format!("{what}-committed"));
    let after = Arc::new(d.state.borrow().image().clone());
    Ok((before, after, applied.failed_topics.into_iter().collect()))
}

/// Sends `image` to every shard and waits until each has applied it; returns the topics some
/// of whose partitions failed to open.
pub(crate) async fn broadcast(shard: &Rc<Shard>, image: Arc<MetadataImage>) -> BTreeSet<String> {
    let calls = (0..shard.shards).map(|target| {
        let image = image.clone();
        shard.request(target, |reply| MeshMsg::ApplyMetadata { image, reply })
    });
    let mut failed = BTreeSet::new();
    for (target, r) in join_all(calls).await.into_iter().enumerate() {
        match r {
            Ok(topics) => failed.extend(topics),
            Err(_) => error!(shard = target, "shard did not apply metadata"),
        }
    }
    failed
}

/// CreateTopics: each topic succeeds or fails on its own.
pub async fn create_topics(
    shard: &Rc<Shard>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<OpResult<Arc<TopicMeta>>> {
    let mut results = Vec::with_capacity(topics.len());
    for t in topics {
        let r = if validate_only {
            let checked = driver(shard).state.borrow().check_new_topic(&t);
            checked.map(|(partitions, _)| {
                let registration = crate::cluster::image::PartitionRegistration {
                    leader: -1,
                    ..Default::default()
                };
                Arc::new(TopicMeta {
                    name: t.name.clone(),
                    id: [0; 16],
                    partitions: vec![registration; partitions as usize],
                    configs: t.configs.clone(),
                    internal: false,
                })
            })
        } else {
            create_topic(shard, t).await
        };
        results.push(r);
    }
    results
}

async fn create_topic(shard: &Rc<Shard>, t: NewTopic) -> OpResult<Arc<TopicMeta>> {
    wait_deleted(shard, &t.name).await;
    let name = t.name.clone();
    let cmd = Command::CreateTopic {
        topic: t,
        id: new_topic_id(),
    };
    let (_, after, failed) = commit(shard, "create-topic", cmd).await?;
    if failed.contains(&name) {
        // Leave no half-made topic behind (e.g. a full disk).
        error!(topic = %name, "partitions could not be created; removing the topic");
        if let Err(e) = delete_topic(shard, name.clone()).await {
            error!(topic = %name, error = %e.message, "removing the half-made topic failed");
        }
        return Err(OpError::new(
            ResponseError::KafkaStorageError,
            format!("the partitions of topic '{name}' could not be created (see the broker log)"),
        ));
    }
    let meta = after.topic(&name).cloned().ok_or_else(|| {
        OpError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' was deleted while it was being created"),
        )
    })?;
    info!(topic = %name, partitions = meta.partition_count(), "topic created");
    Ok(meta)
}

/// Waits until no deletion of a topic named `name` is in progress.
async fn wait_deleted(shard: &Rc<Shard>, name: &str) {
    loop {
        let rx = driver(shard).deleting.borrow().get(name).cloned();
        match rx {
            Some(rx) => {
                let _ = rx.recv_async().await;
            }
            None => return,
        }
    }
}

/// DeleteTopics by name. Completes once every shard has removed the topic's partitions.
pub async fn delete_topic(shard: &Rc<Shard>, name: String) -> OpResult<Arc<TopicMeta>> {
    let d = driver(shard);
    let (_done, rx) = flume::bounded::<()>(1);
    let mine = {
        let exists = d.state.borrow().image().topic(&name).is_some();
        let mut deleting = d.deleting.borrow_mut();
        let mine = exists && !deleting.contains_key(&name);
        if mine {
            deleting.insert(name.clone(), rx);
        }
        mine
    };
    let result = commit(shard, "delete-topic", Command::DeleteTopic(name.clone())).await;
    if mine {
        d.deleting.borrow_mut().remove(&name);
    }
    let (before, _, _) = result?;
    info!(topic = %name, "topic deleted");
    before.topic(&name).cloned().ok_or_else(|| {
        OpError::new(
            ResponseError::UnknownServerError,
            "deleted topic not in image",
        )
    })
}

/// CreatePartitions: grow a topic to `count` partitions.
pub async fn create_partitions(
    shard: &Rc<Shard>,
    name: String,
    count: i32,
    assignment: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> OpResult<()> {
    let cmd = Command::CreatePartitions {
        name: name.clone(),
        count,
        assignment,
    };
    if validate_only {
        return driver(shard).state.borrow().propose(&cmd).map(|_| ());
    }
    commit(shard, "create-partitions", cmd).await?;
    info!(topic = %name, partitions = count, "partitions added");
    Ok(())
}

/// Alters a topic's config overrides (`replace`: the whole set, as legacy AlterConfigs does).
pub async fn alter_topic_configs(
    shard: &Rc<Shard>,
    name: String,
    ops: Vec<ConfigOp>,
    replace: bool,
    validate_only: bool,
) -> OpResult<()> {
    let cmd = Command::AlterConfigs {
        name: name.clone(),
        ops,
        replace,
    };
    if validate_only {
        return driver(shard).state.borrow().propose(&cmd).map(|_| ());
    }
    let (_, after, _) = commit(shard, "alter-configs", cmd).await?;
    let configs = after.topic(&name).map(|t| t.configs.clone());
    info!(topic = %name, configs = ?configs, "topic config altered");
    Ok(())
}

/// An admin command for the controller, sent to shard 0 through the mesh (and to the active
/// controller over the controller endpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerOp {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopic(String),
    CreatePartitions {
        name: String,
        count: i32,
        #[serde(default)]
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    },
    AlterConfigs {
        name: String,
        ops: Vec<ConfigOp>,
        replace: bool,
        validate_only: bool,
    },
    AllocateProducerId,
    /// A partition leader's ISR change.
    AlterPartition(crate::controller::AlterPartition),
    /// ElectLeaders (see [`Command::ElectLeaders`]).
    ElectLeaders {
        partitions: Option<Vec<(String, i32)>>,
        unclean: bool,
    },
    /// AlterPartitionReassignments (see [`Command::AlterReassignments`]).
    AlterReassignments(Vec<(String, i32, Option<Vec<i32>>)>),
    /// AlterUserScramCredentials (see [`Command::AlterScram`]).
    AlterScram(Vec<(String, Vec<crate::controller::ScramChange>)>),
    /// CreateAcls (see [`Command::CreateAcls`]).
    CreateAcls(Vec<crate::security::acl::AclBinding>),
    /// DeleteAcls: per filter, the bindings it removed.
    DeleteAcls(Vec<crate::security::acl::AclFilter>),
    /// AlterClientQuotas (see [`Command::AlterClientQuotas`]).
    AlterClientQuotas(Vec<crate::controller::QuotaChange>),
    /// UpdateFeatures (see [`Command::UpdateFeatures`]).
    UpdateFeatures {
        updates: Vec<crate::cluster::features::FeatureUpdate>,
        bootstrap: bool,
    },
}

/// The controller's answer to a [`ControllerOp`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerReply {
    Topics(Vec<OpResult<Arc<TopicMeta>>>),
    Topic(OpResult<Arc<TopicMeta>>),
    Done(OpResult<()>),
    ProducerId(OpResult<i64>),
    /// Per partition: (topic, partition, error code: 0 elected).
    Elected(OpResult<Vec<(String, i32, i16)>>),
    /// Per partition: (topic, partition, error code, message).
    Reassigned(OpResult<Vec<PartitionOutcome>>),
    /// Per user: (user, error code, message).
    Scram(OpResult<Vec<UserOutcome>>),
    /// Per DeleteAcls filter: the bindings it removed.
    AclsDeleted(OpResult<Vec<Vec<crate::security::acl::AclBinding>>>),
}

/// One user's outcome: (user, error code, message).
pub type UserOutcome = (String, i16, Option<String>);

/// One partition's outcome: (topic, partition, error code, message).
pub type PartitionOutcome = (String, i32, i16, Option<String>);

fn mismatch() -> OpError {
    OpError::new(
        ResponseError::UnknownServerError,
        "unexpected controller reply",
    )
}

impl ControllerReply {
    /// What answers `op` with the failure `e`.
    pub fn failed_for(op: &ControllerOp) -> impl Fn(OpError) -> ControllerReply {
        /// Which reply answers the op (matched exhaustively: a new op must say).
        enum Shape {
            Topics(usize),
            Topic,
            Done,
            ProducerId,
            Elected,
            Reassigned,
            Scram,
            AclsDeleted,
        }
        let shape = match op {
            ControllerOp::CreateTopics { topics, .. } => Shape::Topics(topics.len()),
            ControllerOp::DeleteTopic(_) => Shape::Topic,
            ControllerOp::CreatePartitions { .. }
            | ControllerOp::AlterConfigs { .. }
            | ControllerOp::AlterPartition(_) => Shape::Done,
            ControllerOp::AllocateProducerId => Shape::ProducerId,
            ControllerOp::ElectLeaders { .. } => Shape::Elected,
            ControllerOp::AlterReassignments(_) => Shape::Reassigned,
            ControllerOp::AlterScram(_) => Shape::Scram,
            ControllerOp::CreateAcls(_)
            | ControllerOp::AlterClientQuotas(_)
            | ControllerOp::UpdateFeatures { .. } => Shape::Done,
            ControllerOp::DeleteAcls(_) => Shape::AclsDeleted,
        };
        move |e: OpError| match shape {
            Shape::Topics(n) => ControllerReply::Topics(vec![Err(e); n]),
            Shape::Topic => ControllerReply::Topic(Err(e)),
            Shape::Done => ControllerReply::Done(Err(e)),
            Shape::ProducerId => ControllerReply::ProducerId(Err(e)),
            Shape::Elected => ControllerReply::Elected(Err(e)),
            Shape::Reassigned => ControllerReply::Reassigned(Err(e)),
            Shape::Scram => ControllerReply::Scram(Err(e)),
            Shape::AclsDeleted => ControllerReply::AclsDeleted(Err(e)),
        }
    }

    pub fn topics(self) -> OpResult<Vec<OpResult<Arc<TopicMeta>>>> {
        match self {
            ControllerReply::Topics(t) => Ok(t),
            _ => Err(mismatch()),
        }
    }

    pub fn topic(self) -> OpResult<Arc<TopicMeta>> {
        match self {
            ControllerReply::Topic(t) => t,
            _ => Err(mismatch()),
        }
    }

    pub fn done(self) -> OpResult<()> {
        match self {
            ControllerReply::Done(r) => r,
            _ => Err(mismatch()),
        }
    }

    pub fn elected(self) -> OpResult<Vec<(String, i32, i16)>> {
        match self {
            ControllerReply::Elected(r) => r,
            _ => Err(mismatch()),
        }
    }

    pub fn reassigned(self) -> OpResult<Vec<PartitionOutcome>> {
        match self {
            ControllerReply::Reassigned(r) => r,
            _ => Err(mismatch()),
        }
    }

    pub fn acls_deleted(self) -> OpResult<Vec<Vec<crate::security::acl::AclBinding>>> {
        match self {
            ControllerReply::AclsDeleted(r) => r,
            _ => Err(mismatch()),
        }
    }

    pub fn scram(self) -> OpResult<Vec<UserOutcome>> {
        match self {
            ControllerReply::Scram(r) => r,
            _ => Err(mismatch()),
        }
    }

    pub fn producer_id(self) -> OpResult<i64> {
        match self {
            ControllerReply::ProducerId(r) => r,
            _ => Err(mismatch()),
        }
    }
}

/// Runs `op` (on shard 0): here, or in cluster mode on the active controller.
pub async fn run(shard: &Rc<Shard>, op: ControllerOp) -> ControllerReply {
    let d = driver(shard);
    let here = match &d.backend {
        Backend::Local(_) => true,
        Backend::Quorum(_) => d.quorum().is_some_and(|q| q.is_leader()),
        Backend::Remote => false,
    };
    if !here {
        return super::cluster::forward(shard, op).await;
    }
    run_here(shard, op).await
}

/// Runs a membership or cluster command (cluster mode); the image after it.
pub async fn run_command(
    shard: &Rc<Shard>,
    what: &'static str,
    cmd: Command,
) -> OpResult<Arc<MetadataImage>> {
    commit(shard, what, cmd).await.map(|(_, after, _)| after)
}

/// Runs `op` on this node's controller (shard 0).
pub async fn run_here(shard: &Rc<Shard>, op: ControllerOp) -> ControllerReply {
    match op {
        ControllerOp::CreateTopics {
            topics,
            validate_only,
        } => ControllerReply::Topics(create_topics(shard, topics, validate_only).await),
        ControllerOp::DeleteTopic(name) => ControllerReply::Topic(delete_topic(shard, name).await),
        ControllerOp::CreatePartitions {
            name,
            count,
            assignment,
            validate_only,
        } => ControllerReply::Done(
            create_partitions(shard, name, count, assignment, validate_only).await,
        ),
        ControllerOp::AlterConfigs {
            name,
            ops,
            replace,
            validate_only,
        } => ControllerReply::Done(
            alter_topic_configs(shard, name, ops, replace, validate_only).await,
        ),
        ControllerOp::AllocateProducerId => {
            ControllerReply::ProducerId(allocate_producer_id(shard).await)
        }
        ControllerOp::AlterPartition(a) => ControllerReply::Done(
            commit(shard, "alter-partition", Command::AlterPartition(a))
                .await
                .map(|_| ()),
        ),
        ControllerOp::ElectLeaders {
            partitions,
            unclean,
        } => ControllerReply::Elected(elect_leaders(shard, partitions, unclean).await),
        ControllerOp::AlterReassignments(items) => {
            ControllerReply::Reassigned(alter_reassignments(shard, items).await)
        }
        ControllerOp::AlterScram(users) => ControllerReply::Scram(alter_scram(shard, users).await),
        ControllerOp::CreateAcls(bindings) => ControllerReply::Done(
            commit(shard, "create-acls", Command::CreateAcls(bindings))
                .await
                .map(|_| ()),
        ),
        ControllerOp::AlterClientQuotas(changes) => ControllerReply::Done(
            commit(
                shard,
                "alter-client-quotas",
                Command::AlterClientQuotas(changes),
            )
            .await
            .map(|_| ()),
        ),
        ControllerOp::UpdateFeatures { updates, bootstrap } => ControllerReply::Done(
            commit(
                shard,
                "update-features",
                Command::UpdateFeatures { updates, bootstrap },
            )
            .await
            .map(|_| ()),
        ),
        ControllerOp::DeleteAcls(filters) => {
            // Each filter's matches, taken from the image the deletion is proposed against.
            let matched: Vec<Vec<crate::security::acl::AclBinding>> = {
                let d = driver(shard);
                let state = d.state.borrow();
                filters
                    .iter()
                    .map(|f| {
                        state
                            .image()
                            .acls
                            .iter()
                            .filter(|b| f.matches(b))
                            .cloned()
                            .collect()
                    })
                    .collect()
            };
            ControllerReply::AclsDeleted(
                commit(shard, "delete-acls", Command::DeleteAcls(filters))
                    .await
                    .map(|_| matched),
            )
        }
    }
}

/// AlterUserScramCredentials: each user's outcome as Kafka reports it (0: applied).
pub async fn alter_scram(
    shard: &Rc<Shard>,
    users: Vec<(String, Vec<crate::controller::ScramChange>)>,
) -> OpResult<Vec<UserOutcome>> {
    let outcomes: Vec<UserOutcome> = driver(shard)
        .state
        .borrow()
        .scram_alterations(&users)
        .into_iter()
        .map(|(u, r)| match r {
            Ok(_) => (u, 0, None),
            Err(e) => (u, e.error.code(), Some(e.message)),
        })
        .collect();
    if outcomes.iter().any(|o| o.1 == 0) {
        commit(shard, "alter-scram", Command::AlterScram(users)).await?;
        info!(users = ?outcomes.iter().filter(|o| o.1 == 0).map(|o| &o.0).collect::<Vec<_>>(), "SCRAM credentials altered");
    }
    Ok(outcomes)
}

/// AlterPartitionReassignments: each item's outcome as Kafka reports it (0: started, or done
/// when nothing had to be copied).
pub async fn alter_reassignments(
    shard: &Rc<Shard>,
    items: Vec<(String, i32, Option<Vec<i32>>)>,
) -> OpResult<Vec<PartitionOutcome>> {
    let outcomes: Vec<PartitionOutcome> = driver(shard)
        .state
        .borrow()
        .reassignments(&items)
        .into_iter()
        .map(|(t, p, r)| match r {
            Ok(_) => (t, p, 0, None),
            Err(e) => (t, p, e.error.code(), Some(e.message)),
        })
        .collect();
    if outcomes.iter().any(|o| o.2 == 0) {
        commit(
            shard,
            "alter-reassignments",
            Command::AlterReassignments(items),
        )
        .await?;
    }
    Ok(outcomes)
}

/// ElectLeaders: each partition's outcome as Kafka reports it (0: elected).
pub async fn elect_leaders(
    shard: &Rc<Shard>,
    partitions: Option<Vec<(String, i32)>>,
    unclean: bool,
) -> OpResult<Vec<(String, i32, i16)>> {
    let outcomes: Vec<(String, i32, i16)> = driver(shard)
        .state
        .borrow()
        .elections(partitions.as_deref(), unclean)
        .into_iter()
        .map(|(t, p, r)| (t, p, r.err().map_or(0, |e| e.code())))
        .collect();
    if outcomes.iter().any(|(_, _, code)| *code == 0) {
        let cmd = Command::ElectLeaders {
            partitions,
            unclean,
        };
        commit(shard, "elect-leaders", cmd).await?;
    }
    Ok(outcomes)
}

/// Sends a partition leader's ISR change to the controller, in the background; the leader
/// learns the outcome from the next metadata image (or retries after
/// [`crate::partition::replica::ISR_CHANGE_RETRY_MS`]).
pub fn alter_isr(
    shard: &Rc<Shard>,
    p: &crate::partition::Partition,
    change: crate::partition::replica::AlterIsr,
) {
    let grows = shard
        .metadata()
        .topic(&p.topic)
        .and_then(|t| {
            t.partitions
                .get(p.index as usize)
                .map(|r| change.isr.len() > r.isr.len())
        })
        .unwrap_or(false);
    let m = &shard.metrics;
    let counter = if grows {
        &m.isr_expands
    } else {
        &m.isr_shrinks
    };
    counter.set(counter.get() + 1);
    let op = ControllerOp::AlterPartition(crate::controller::AlterPartition {
        topic_id: p.topic_id,
        partition: p.index,
        leader: shard.config.args.node_id,
        leader_epoch: change.leader_epoch,
        partition_epoch: change.partition_epoch,
        isr: change.isr,
    });
    let (s, topic, index) = (shard.clone(), p.topic.clone(), p.index);
    info!(%topic, partition = index, ?op, "asking the controller to change the ISR");
    crate::runtime::spawn(async move {
        let asked = crate::runtime::now();
        let done = on_controller(&s, op).await.and_then(ControllerReply::done);
        let ms = asked.elapsed().as_millis() as u64;
        match done {
            Ok(_) => info!(%topic, partition = index, ms, "ISR change accepted"),
            Err(e) => {
                info!(%topic, partition = index, ms, error = %e.message, "ISR change refused")
            }
        }
    })
    .detach();
}

/// Sends `op` to the controller (shard 0) from any shard and waits for its reply.
pub async fn on_controller(shard: &Rc<Shard>, op: ControllerOp) -> OpResult<ControllerReply> {
    shard
        .request(0, |reply| MeshMsg::Controller { op, reply })
        .await
        .map_err(|e| OpError::new(ResponseError::NotController, e.to_string()))
}

/// Creates topics with broker defaults (auto-creation on Metadata/Produce).
pub async fn auto_create(shard: &Rc<Shard>, names: Vec<String>) {
    let partitions = shard.config.args.num_partitions;
    let topics: Vec<NewTopic> = names
        .into_iter()
        .map(|name| NewTopic {
            assignment: None,
            name,
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
        })
        .collect();
    let op = ControllerOp::CreateTopics {
        topics,
        validate_only: false,
    };
    if let Ok(results) = on_controller(shard, op)
        .await
        .and_then(ControllerReply::topics)
    {
        for r in results {
            if let Err(e) = r {
                if !matches!(e.error, ResponseError::TopicAlreadyExists) {
                    info!(error = %e.message, "auto-creating topic failed");
                }
            }
        }
    }
}

/// Hands out a producer id that was never handed out before, even across restarts: ids come
/// from a persisted block; a new block is persisted before its first id is used.
pub async fn allocate_producer_id(shard: &Rc<Shard>) -> OpResult<i64> {
    if let Some(id) = driver(shard).state.borrow_mut().next_producer_id() {
        return Ok(id);
    }
    let (_, after, _) = commit(shard, "producer-ids", Command::ReserveProducerIds).await?;
    // Commands run one at a time: the block end after ours is the one we reserved.
    let mut state = driver(shard).state.borrow_mut();
    state.claim_producer_ids(after.producer_id_block_end);
    state.next_producer_id().ok_or_else(|| {
        OpError::new(
            ResponseError::CoordinatorNotAvailable,
            "producer id block exhausted; retry",
        )
    })
}
