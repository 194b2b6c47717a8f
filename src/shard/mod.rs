//! Shards: one pinned thread per core, each with its own compio (io_uring) runtime.
//!
//! A shard owns the partitions that hash to it (`owner`), serves the connections its
//! SO_REUSEPORT listener accepts, and talks to other shards only through the mesh: one bounded
//! queue per ordered pair of shards carrying typed `MeshMsg`s (`mesh.rs`), delivered on the
//! target shard *in queue order* (that is where a forwarded produce appends, so one
//! connection's order is kept). `ops.rs` holds the partition work those messages carry.
//!
//! Invariants: only the owner shard touches a partition's log; no `RefCell` borrow is held
//! across an `.await`; shard 0 is the controller (single writer of cluster metadata).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::StreamExt;
use sluice_storage::Log;
use tracing::{error, info, warn};

pub mod bootstrap;
pub mod cleaner;
pub mod cluster;
pub mod controller;
pub mod groups;
pub mod internal_log;
pub mod mesh;
pub mod ops;
pub mod peer;
pub mod replication;
pub mod router;
pub mod stats;
pub mod txns;

pub use mesh::{build_mesh, run_mesh_receiver, Mesh, MeshError, MeshMsg};
pub use router::{owner, partition_dir};

use crate::cluster::image::{MetadataImage, PartitionRegistration, TopicMeta};
use crate::cluster::topic_config;
use crate::config::Config;
use crate::partition::{Partition, PartitionKey};

/// State every shard of the process shares.
#[derive(Debug)]
pub struct Shared {
    /// The active controller as shard 0 last saw it (-1: none known; cluster mode).
    pub active_controller: std::sync::atomic::AtomicI32,
    /// The quorum and this broker's registration, refreshed by shard 0 (cluster mode).
    pub status: std::sync::Mutex<Option<ClusterStatus>>,
    /// This process's identity in broker registrations (random per start): an image that
    /// registers it unfenced is current, not one recovered from before this start.
    pub incarnation: [u8; 16],
    /// Every client's usage of its quotas, shared by all shards (`crate::security::quota`).
    pub quotas: crate::security::quota::QuotaTracker,
    /// When a shard last moved bytes (ms since the epoch; `stats::stall_probe` keeps it and
    /// returns freed memory to the kernel once every shard has been idle a while).
    pub last_active_ms: std::sync::atomic::AtomicI64,
}

/// Where this node stands in its cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterStatus {
    pub quorum: crate::quorum::QuorumStatus,
    /// This broker's registration epoch, once registered.
    pub broker_epoch: Option<u64>,
    pub fenced: bool,
}

impl Shared {
    /// The latest cluster status (cluster mode).
    pub fn status(&self) -> Option<ClusterStatus> {
        self.status.lock().ok().and_then(|s| s.clone())
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            active_controller: std::sync::atomic::AtomicI32::new(-1),
            status: std::sync::Mutex::new(None),
            incarnation: *uuid::Uuid::new_v4().as_bytes(),
            quotas: Default::default(),
            last_active_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

/// How clients reach a broker (Metadata, DescribeCluster, FindCoordinator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// How clients of `listener` reach the broker `b` registered.
    pub fn of(b: &crate::cluster::record::BrokerRecord, listener: &str) -> BrokerInfo {
        let (host, port) = b
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .map_or((&b.host, b.port), |l| (&l.host, l.port));
        BrokerInfo {
            id: b.id,
            host: host.clone(),
            port,
            rack: b.rack.clone(),
        }
    }
}

/// Per-shard state. Lives on its thread only (`Rc`).
pub struct Shard {
    pub id: usize,
    pub shards: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    peers: Vec<flume::Sender<MeshMsg>>,
    metadata: RefCell<Arc<MetadataImage>>,
    partitions: RefCell<HashMap<PartitionKey, Rc<Partition>>>,
    apply_tx: flume::Sender<(Arc<MetadataImage>, flume::Sender<Vec<String>>)>,
    pub controller: Option<controller::ControllerDriver>,
    pub shutting_down: Cell<bool>,
    /// Open client connections on this shard.
    pub connections: Cell<usize>,
    /// Requests dispatched and not yet answered on this shard (graceful shutdown waits for 0).
    pub inflight: Cell<usize>,
    /// Bytes reserved for partially received large requests (see `--shard-memory-budget-bytes`).
    pub read_budget_used: Cell<usize>,
    /// Owned partitions whose log failed to open in the last reconcile (retried periodically).
    pub open_failures: Cell<usize>,
    /// This shard's counters (see `crate::metrics`).
    pub metrics: crate::metrics::ShardMetrics,
    /// Group coordinator state for the `__consumer_offsets` partitions this shard owns
    /// (consumer groups; see `crate::coordinator::group`).
    pub groups: groups::GroupDriver,
    /// Transaction coordinator state for the `__transaction_state` partitions this shard owns
    /// (see `crate::coordinator::txn`).
    pub txns: txns::TxnDriver,
    /// The fetchers copying this shard's follower replicas from their leaders (cluster mode).
    pub fetchers: replication::Fetchers,
}

/// Partition logs a shard opens concurrently (start-up, topic creation).
const PARTITION_OPENS_IN_FLIGHT: usize = 64;

/// Stamps the partition's directory with its topic id (see `crate::partition::dir`), then
/// opens its log.
async fn open_partition(
    config: &Config,
    topic: &TopicMeta,
    index: i32,
    log_config: sluice_storage::LogConfig,
) -> Result<Rc<Log>, String> {
    let dir = partition_dir(config, &topic.name, index);
    let (d, id) = (dir.clone(), topic.id);
    crate::runtime::spawn_blocking(move || crate::partition::dir::prepare(&d, &id))
        .await
        .unwrap_or_else(|| Err(std::io::Error::other("prepare task panicked")))
        .map_err(|e| format!("preparing the directory: {e}"))?;
    Log::open(dir, log_config).await.map_err(|e| e.to_string())
}

impl Shard {
    pub fn new(
        id: usize,
        config: Arc<Config>,
        shared: Arc<Shared>,
        peers: Vec<flume::Sender<MeshMsg>>,
        image: Arc<MetadataImage>,
        apply_tx: flume::Sender<(Arc<MetadataImage>, flume::Sender<Vec<String>>)>,
        controller: Option<controller::ControllerDriver>,
    ) -> Shard {
        let txns = txns::TxnDriver::new(&config);
        Shard {
            id,
            shards: config.shards,
            config,
            shared,
            peers,
            metadata: RefCell::new(image),
            partitions: RefCell::new(HashMap::new()),
            apply_tx,
            controller,
            shutting_down: Cell::new(false),
            connections: Cell::new(0),
            inflight: Cell::new(0),
            read_budget_used: Cell::new(0),
            metrics: crate::metrics::ShardMetrics::default(),
            open_failures: Cell::new(0),
            groups: groups::GroupDriver::default(),
            txns,
            fetchers: replication::Fetchers::default(),
        }
    }

    /// The current metadata image (cheap clone of an `Arc`).
    pub fn metadata(&self) -> Arc<MetadataImage> {
        self.metadata.borrow().clone()
    }

    /// The finalized `transaction.version` (`crate::cluster::features`): the cluster's level,
    /// or `--transaction-version` until the cluster has one.
    pub fn transaction_version(&self) -> i16 {
        crate::cluster::features::transaction_version(
            &self.metadata().features,
            self.config.args.transaction_version,
        )
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(&(topic.to_owned(), index))
            .cloned()
    }

    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// The brokers clients of `listener` may use, with that listener's addresses: the
    /// unfenced registered ones (cluster mode), or this one.
    pub fn brokers(&self, listener: &str) -> Vec<BrokerInfo> {
        if !self.config.clustered() {
            return vec![self.this_broker(listener)];
        }
        self.metadata()
            .live_brokers()
            .map(|b| BrokerInfo::of(b, listener))
            .collect()
    }

    fn this_broker(&self, listener: &str) -> BrokerInfo {
        let (host, port) = self.config.listener(listener).map_or(
            (&self.config.advertised_host, self.config.advertised_port),
            |l| (&l.advertised_host, l.advertised_port),
        );
        BrokerInfo {
            id: self.config.args.node_id,
            host: host.clone(),
            port,
            rack: self.config.args.broker_rack.clone(),
        }
    }

    /// Broker `id` as clients of `listener` reach it, if they may use it.
    pub fn broker(&self, id: i32, listener: &str) -> Option<BrokerInfo> {
        self.brokers(listener).into_iter().find(|b| b.id == id)
    }

    /// The active controller (-1 while none is known).
    pub fn controller_id(&self) -> i32 {
        if self.config.clustered() {
            self.shared
                .active_controller
                .load(std::sync::atomic::Ordering::Relaxed)
        } else {
            self.config.args.node_id
        }
    }

    /// Whether this broker leads `partition` of `topic` (always, for a single node).
    pub fn leads(&self, topic: &TopicMeta, partition: i32) -> bool {
        !self.config.clustered()
            || topic
                .partitions
                .get(partition as usize)
                .is_some_and(|p| p.leader == self.config.args.node_id)
    }

    /// Whether this broker keeps a replica of `partition` of `topic` (always, for a single
    /// node: its partitions are all its own whatever the node id).
    pub fn hosts(&self, topic: &TopicMeta, partition: i32) -> bool {
        !self.config.clustered()
            || topic
                .partitions
                .get(partition as usize)
                .is_some_and(|p| p.replicas.contains(&self.config.args.node_id))
    }

    pub fn owner_of(&self, topic: &TopicMeta, partition: i32) -> usize {
        owner(&topic.id, partition, self.shards)
    }

    /// Queues a new metadata image for this shard; resolves once applied (logs opened/closed)
    /// with the topics some of whose partitions failed to open here.
    pub async fn apply_metadata(&self, image: Arc<MetadataImage>) -> Vec<String> {
        let (tx, rx) = flume::bounded(1);
        if self.apply_tx.send_async((image, tx)).await.is_ok() {
            return rx.recv_async().await.unwrap_or_default();
        }
        Vec::new()
    }

    /// Applies images one at a time, in arrival order, skipping stale ones.
    pub async fn run_metadata_applier(
        self: Rc<Self>,
        rx: flume::Receiver<(Arc<MetadataImage>, flume::Sender<Vec<String>>)>,
    ) {
        while let Ok((image, done)) = rx.recv_async().await {
            let old = self.metadata();
            let mut failed = Vec::new();
            if image.epoch >= old.epoch {
                *self.metadata.borrow_mut() = image.clone();
                failed = self.reconcile(&image).await;
                // Topics gone (or re-created under a new id): their committed offsets go too,
                // and so do directories of their partitions that never opened here (the logs
                // that did open were deleted by `reconcile`).
                let deleted: Vec<Arc<TopicMeta>> = old
                    .topics
                    .values()
                    .filter(|t| image.topic(&t.name).is_none_or(|n| n.id != t.id))
                    .cloned()
                    .collect();
                groups::leadership_changed(&self, &old, &image);
                if !deleted.is_empty() {
                    self.remove_unopened_dirs(&deleted).await;
                    let names = deleted.iter().map(|t| t.name.clone()).collect();
                    groups::topics_deleted(&self, names);
                }
            }
            let _ = done.send(failed);
        }
    }

    /// Removes the directories of owned partitions of deleted topics that have no open log
    /// (their open failed), if they still carry the deleted topic's id.
    async fn remove_unopened_dirs(&self, deleted: &[Arc<TopicMeta>]) {
        let mut dirs = Vec::new();
        for t in deleted {
            for index in 0..t.partition_count() {
                if self.owner_of(t, index) == self.id && self.partition(&t.name, index).is_none() {
                    dirs.push((partition_dir(&self.config, &t.name, index), t.id));
                }
            }
        }
        let _ = crate::runtime::spawn_blocking(move || {
            use crate::partition::dir::{read_dir_id, remove_aside, DirId};
            for (dir, id) in dirs {
                let ours = match read_dir_id(&dir) {
                    Ok(DirId::Id(found)) => found == id,
                    Ok(DirId::Unstamped) => true,
                    _ => false,
                };
                if ours {
                    if let Err(e) = remove_aside(&dir, &crate::partition::dir::id_tag(&id)) {
                        warn!(dir = %dir.display(), error = %e, "removing the directory of a deleted partition failed");
                    }
                }
            }
        })
        .await;
    }

    /// Opens logs for owned partitions that appeared, updates configs, deletes removed ones.
    /// Returns the topics some of whose partitions failed to open.
    async fn reconcile(self: &Rc<Self>, image: &MetadataImage) -> Vec<String> {
        // Roles first: handlers already see `image`, and a broker it names as a partition's
        // leader should serve it as soon as possible.
        self.update_roles(image, None).await;
        self.open_failures.set(0);
        let mut failed: Vec<String> = Vec::new();
        let current: Vec<PartitionKey> = self.partitions.borrow().keys().cloned().collect();
        for key in current {
            let keep = image.topic(&key.0).is_some_and(|t| {
                t.has_partition(key.1) && self.owner_of(t, key.1) == self.id && self.hosts(t, key.1)
            });
            let same_id = image
                .topic(&key.0)
                .zip(self.partition(&key.0, key.1))
                .is_some_and(|(t, p)| t.id == p.topic_id);
            if keep && same_id {
                continue;
            }
            let removed = self.partitions.borrow_mut().remove(&key);
            if let Some(p) = removed {
                info!(topic = %p.topic, partition = p.index, "deleting partition log");
                let dir = partition_dir(&self.config, &p.topic, p.index);
                let tag = crate::partition::dir::id_tag(&p.topic_id);
                let aside = crate::partition::dir::delete_path(&dir, &tag);
                if let Err(e) = p.log.delete_as(aside).await {
                    error!(topic = %p.topic, partition = p.index, error = %e, "deleting partition log failed");
                }
            }
        }
        let mut to_open = Vec::new();
        let mut opened: std::collections::HashSet<PartitionKey> = std::collections::HashSet::new();
        for topic in image.topics.values() {
            let log_config = topic_config::log_config(&self.config, &topic.configs);
            for index in 0..topic.partition_count() {
                if self.owner_of(topic, index) != self.id || !self.hosts(topic, index) {
                    continue;
                }
                if let Some(p) = self.partition(&topic.name, index) {
                    p.log.set_config(log_config.clone());
                    if let Some(reg) = topic.partitions.get(index as usize) {
                        p.leader_epoch.set(reg.leader_epoch);
                    }
                    continue;
                }
                to_open.push((topic.clone(), index, log_config.clone()));
            }
        }
        // Opened PARTITION_OPENS_IN_FLIGHT at a time: each open is a few dozen small file
        // operations, and one after another 10,000 partitions took many seconds to start.
        let opens = futures_util::stream::iter(to_open.into_iter().map(
            |(topic, index, log_config)| async move {
                let result = open_partition(&self.config, &topic, index, log_config).await;
                (topic, index, result)
            },
        ))
        .buffer_unordered(PARTITION_OPENS_IN_FLIGHT);
        futures_util::pin_mut!(opens);
        while let Some((topic, index, result)) = opens.next().await {
            match result {
                Ok(log) => {
                    let p = Rc::new(Partition::new(
                        topic.name.clone(),
                        topic.id,
                        index,
                        log,
                        topic
                            .partitions
                            .get(index as usize)
                            .map_or(0, |r| r.leader_epoch),
                        self.config.clustered(),
                    ));
                    let key = (topic.name.clone(), index);
                    opened.insert(key.clone());
                    self.partitions.borrow_mut().insert(key, p);
                }
                Err(e) => {
                    self.open_failures.set(self.open_failures.get() + 1);
                    failed.push(topic.name.clone());
                    error!(topic = %topic.name, partition = index, error = %e, "opening partition log failed; will retry");
                }
            }
        }
        if !opened.is_empty() {
            self.update_roles(image, Some(&opened)).await;
        }
        failed.sort();
        failed.dedup();
        failed
    }

    /// Cluster mode: gives the replicas here their role from `image` (lead, follow) — all of
    /// them, or only those in `only` (just opened) — sends the ISR changes that are due, and
    /// points the fetchers at the leaders of every followed one.
    async fn update_roles(
        self: &Rc<Self>,
        image: &MetadataImage,
        only: Option<&std::collections::HashSet<PartitionKey>>,
    ) {
        if !self.config.clustered() {
            return;
        }
        let me = self.config.args.node_id;
        // Until the image has this very process registered and unfenced (it may be one
        // recovered from disk, from before a restart), it leads and follows nothing: a stale
        // image would make it a second leader of partitions that moved on.
        let current = image
            .brokers
            .get(&me)
            .is_some_and(|b| !b.fenced && b.record.incarnation == self.shared.incarnation);
        let live: std::collections::BTreeMap<i32, u64> = image
            .brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(id, b)| (*id, b.epoch))
            .collect();
        let lag_max_ms = self.config.args.replica_lag_time_max_ms as i64;
        let mut followed = Vec::new();
        for p in self.partitions() {
            let Some(t) = image.topic(&p.topic).filter(|t| t.id == p.topic_id) else {
                continue;
            };
            let Some(reg) = t.partitions.get(p.index as usize) else {
                continue;
            };
            if current && reg.leader != me && live.contains_key(&reg.leader) {
                followed.push(replication::Follow {
                    partition: p.clone(),
                    topic_id: t.id,
                    leader: reg.leader,
                    leader_epoch: reg.leader_epoch,
                });
            }
            if only.is_some_and(|o| !o.contains(&(p.topic.clone(), p.index))) {
                continue;
            }
            let min_isr = topic_config::effective(&self.config, &t.configs, "min.insync.replicas")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .clamp(1, reg.replicas.len().max(1));
            let policy = crate::partition::replica::ReplicaPolicy {
                lag_max_ms,
                min_isr,
            };
            if !current {
                p.set_registration(me, &PartitionRegistration::unknown(), &live, policy)
                    .await;
                continue;
            }
            let led = p.is_leader(None);
            if let Some(change) = p.set_registration(me, reg, &live, policy).await {
                controller::alter_isr(self, &p, change);
            }
            if !led && p.is_leader(None) {
                let e = &self.metrics.leader_elections;
                e.set(e.get() + 1);
            }
        }
        self.fetchers.update(self, followed);
    }

    /// Closes every log: flush, checkpoint. Called once at shutdown.
    pub async fn close_logs(&self) {
        let parts: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in parts {
            if let Err(e) = p.log.close().await {
                warn!(topic = %p.topic, partition = p.index, error = %e, "closing log failed");
            }
        }
    }
}
