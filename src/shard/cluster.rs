//! Cluster mode, on shard 0 (`--controller-quorum-voters`): starting the controller quorum,
//! this broker's registration and heartbeats, the active controller's duties (fencing brokers
//! whose session expired), forwarding admin operations to the active controller, and the
//! application calls served on the controller endpoint (`AppRequest`).
//!
//! Every node of the first landing is a voter (combined mode): its shard 0 runs Raft
//! (`crate::quorum`) and applies committed metadata to its shards; the active controller is the
//! Raft leader.

use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::controller::{self, driver, not_controller, Backend, ControllerOp, ControllerReply};
use super::{ClusterStatus, Shard};
use crate::cluster::image::{new_cluster_id, MetadataImage};
use crate::cluster::record::{BrokerRecord, MetadataRecord};
use crate::controller::liveness::Beat;
use crate::controller::{Command, OpError, OpResult};
use crate::quorum::{Publish, Quorum, QuorumConfig, Recovered};

/// A forwarded operation gives up after this.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker waits for its own image to include a change it forwarded.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// A call to the active controller's endpoint.
#[derive(Debug, Serialize, Deserialize)]
pub enum AppRequest {
    Register(BrokerRecord),
    Heartbeat {
        id: i32,
        epoch: u64,
        applied: u64,
    },
    /// Controlled shutdown: fence me (my leaderships move away) and keep me fenced.
    Shutdown {
        id: i32,
        epoch: u64,
    },
    Op(ControllerOp),
    /// A broker-only node's metadata: the image once it is past `known_epoch` (long poll).
    FetchMetadata {
        known_epoch: u64,
    },
}

/// The active controller's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum AppReply {
    Registered {
        epoch: u64,
    },
    Heartbeat {
        known: bool,
        fenced: bool,
    },
    Done,
    /// The operation's reply, and the metadata epoch that includes it.
    Op {
        reply: ControllerReply,
        epoch: u64,
    },
    /// The image as records at `epoch`.
    Metadata {
        epoch: u64,
        records: Vec<MetadataRecord>,
    },
    /// Nothing past the known epoch within the long poll.
    Unchanged,
    /// This node is not the active controller; the one it knows of.
    NotLeader(Option<i32>),
    Failed(OpError),
}

/// How long a metadata fetch waits for a change before answering `Unchanged`.
const FETCH_LONG_POLL: Duration = Duration::from_millis(500);

/// Starts the quorum on shard 0 from `recovered`, serving the controller endpoint the server
/// bound, then this node's duties. The controller already holds `recovered.image`.
pub async fn start(
    shard: Rc<Shard>,
    recovered: Recovered,
    endpoint: Option<std::net::TcpListener>,
) {
    let d = driver(&shard);
    let Backend::Quorum(cell) = &d.backend else {
        return;
    };
    let weak: Weak<Shard> = Rc::downgrade(&shard);
    let publish: Publish = Rc::new(move |image: Arc<MetadataImage>| {
        let weak = weak.clone();
        async move {
            match weak.upgrade() {
                Some(shard) => publish_image(&shard, image).await,
                None => Vec::new(),
            }
        }
        .boxed_local()
    });
    let args = &shard.config.args;
    let config = QuorumConfig {
        node_id: args.node_id,
        voters: shard.config.voters.clone(),
        dir: args.data_dir.join("__raft"),
        heartbeat: Duration::from_millis(raft_heartbeat_ms(args.broker_heartbeat_interval_ms)),
        tls: crate::quorum::ControllerTls::of(&shard.config),
    };
    let quorum = match Quorum::start(config, recovered, d.state.clone(), publish).await {
        Ok(q) => q,
        Err(e) => {
            error!(error = %e, "cannot start the controller quorum; this node serves no metadata changes");
            return;
        }
    };
    if let Some(endpoint) = endpoint {
        let addr = endpoint.local_addr().ok();
        match crate::runtime::net::TcpListener::from_std(endpoint) {
            Ok(listener) => {
                let (s, c) = (shard.clone(), shard.clone());
                let app = crate::quorum::AppHandler {
                    call: Rc::new(move |body| {
                        let s = s.clone();
                        async move { serve_app(&s, &body).await }.boxed_local()
                    }),
                    closed: Rc::new(move |sessions| {
                        let d = driver(&c);
                        let mut l = d.liveness.borrow_mut();
                        for epoch in sessions {
                            l.on_connection_closed(clock_ms(), epoch);
                        }
                    }),
                };
                quorum.serve(listener, app);
                info!(?addr, "controller endpoint listening");
            }
            Err(e) => error!(?addr, error = %e, "cannot serve the controller endpoint"),
        }
    }
    let _ = cell.set(quorum.clone());
    quorum.bootstrap().await;
    crate::runtime::spawn(active_controller_duties(shard.clone())).detach();
    crate::runtime::spawn(lifecycle(shard)).detach();
}

/// Sends `image` to every shard and waits until each has applied it; then a forwarded
/// operation waiting for this epoch may answer. The topics some of whose partitions failed to
/// open.
async fn publish_image(shard: &Rc<Shard>, image: Arc<MetadataImage>) -> Vec<String> {
    let epoch = image.epoch;
    let failed = controller::broadcast(shard, image).await;
    let d = driver(shard);
    d.published_epoch.set(d.published_epoch.get().max(epoch));
    failed.into_iter().collect()
}

/// Starts a broker-only node's duties (`--controller-quorum-voters` without
/// `--controller-listen`): registration and heartbeats, and following the active controller's
/// metadata.
pub async fn start_broker_only(shard: Rc<Shard>) {
    crate::runtime::spawn(follow_metadata(shard.clone())).detach();
    crate::runtime::spawn(lifecycle(shard)).detach();
}

/// Fetches the metadata image from the active controller whenever it changes (long poll) and
/// applies it to every shard. The image never goes back: a reply older than the one applied is
/// ignored.
async fn follow_metadata(shard: Rc<Shard>) {
    let retry = Duration::from_millis(shard.config.args.broker_heartbeat_interval_ms.min(1000));
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let known_epoch = driver(&shard).state.borrow().image().epoch;
        let req = AppRequest::FetchMetadata { known_epoch };
        match call_active(&shard, req, FETCH_LONG_POLL * 4).await {
            Ok(AppReply::Metadata { epoch, records }) if epoch > known_epoch => {
                match MetadataImage::from_records(epoch, &records) {
                    Ok(image) => {
                        driver(&shard).state.borrow_mut().reset_image(image.clone());
                        publish_image(&shard, Arc::new(image)).await;
                    }
                    Err(e) => {
                        warn!(error = %e, "the active controller sent metadata that does not apply");
                        crate::runtime::sleep(retry).await;
                    }
                }
            }
            Ok(AppReply::Metadata { .. } | AppReply::Unchanged) => {}
            Ok(other) => {
                info!(reply = ?other, "metadata fetch refused; retrying");
                crate::runtime::sleep(retry).await;
            }
            Err(e) => {
                info!(error = %e.message, "metadata fetch failed; retrying");
                crate::runtime::sleep(retry).await;
            }
        }
        shard.shared.active_controller.store(
            driver(&shard).leader_hint.get().unwrap_or(-1),
            Ordering::Relaxed,
        );
    }
}

/// Milliseconds on a monotonic clock (broker sessions must not jump with the wall clock).
fn clock_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(crate::runtime::now);
    crate::runtime::now().duration_since(origin).as_millis() as u64
}

/// Raft's heartbeat: a tenth of the broker heartbeat interval, between 40 and 100 ms (50 ms
/// by default), so an election (after 3–6 missed Raft heartbeats) ends within one broker
/// heartbeat interval: a crashed active controller's partitions then fail over in about as
/// long as any other broker's (Kafka's `controller.quorum.election.timeout.ms` is 1 s).
fn raft_heartbeat_ms(broker_heartbeat_ms: u64) -> u64 {
    (broker_heartbeat_ms / 10).clamp(40, 100)
}

fn quorum(shard: &Shard) -> Option<Rc<Quorum>> {
    driver(shard).quorum().cloned()
}

/// Decodes an application call as the endpoint does (fuzzing and malformed-input tests): an
/// error for anything that is not one, never a panic.
pub fn decode_app_request(body: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<AppRequest>(body)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Serves one application call (this node should be the active controller): the reply, and
/// the broker session a heartbeat belongs to.
async fn serve_app(shard: &Rc<Shard>, body: &[u8]) -> (Vec<u8>, Option<u64>) {
    let (reply, session) = match serde_json::from_slice::<AppRequest>(body) {
        Ok(req) => {
            let session = match &req {
                AppRequest::Heartbeat { epoch, .. } => Some(*epoch),
                _ => None,
            };
            (handle(shard, req).await, session)
        }
        Err(e) => (
            AppReply::Failed(OpError::new(ResponseError::InvalidRequest, e.to_string())),
            None,
        ),
    };
    (serde_json::to_vec(&reply).unwrap_or_default(), session)
}

/// Handles `req` as the active controller.
async fn handle(shard: &Rc<Shard>, req: AppRequest) -> AppReply {
    let Some(q) = quorum(shard) else {
        return AppReply::NotLeader(None);
    };
    if !q.is_leader() {
        return AppReply::NotLeader(q.leader());
    }
    let d = driver(shard);
    match req {
        AppRequest::Register(record) => {
            let id = record.id;
            let allowed = {
                let image = d.state.borrow().image().clone();
                d.liveness
                    .borrow()
                    .may_register(clock_ms(), &image, &record)
            };
            if !allowed {
                return AppReply::Failed(OpError::new(
                    ResponseError::DuplicateBrokerRegistration,
                    format!("broker {id} is registered by another process that still heartbeats"),
                ));
            }
            match controller::run_command(shard, "register-broker", Command::RegisterBroker(record))
                .await
            {
                Ok(image) => match image.brokers.get(&id) {
                    Some(b) => {
                        d.liveness.borrow_mut().on_registered(clock_ms(), id);
                        info!(broker = id, epoch = b.epoch, "broker registered");
                        AppReply::Registered { epoch: b.epoch }
                    }
                    None => AppReply::Failed(OpError::new(
                        ResponseError::UnknownServerError,
                        "registration vanished",
                    )),
                },
                Err(e) => AppReply::Failed(e),
            }
        }
        AppRequest::Heartbeat { id, epoch, applied } => {
            let (cmd, beat) = {
                let image = d.state.borrow().image().clone();
                d.liveness
                    .borrow_mut()
                    .on_heartbeat(clock_ms(), &image, id, epoch, applied)
            };
            if let Some(cmd) = cmd {
                match controller::run_command(shard, "unfence-broker", cmd).await {
                    Ok(_) => info!(broker = id, "broker unfenced"),
                    Err(e) => warn!(broker = id, error = %e.message, "unfencing failed"),
                }
            }
            match beat {
                Beat::Unknown => AppReply::Heartbeat {
                    known: false,
                    fenced: true,
                },
                Beat::Known { .. } => {
                    let fenced = d
                        .state
                        .borrow()
                        .image()
                        .brokers
                        .get(&id)
                        .is_none_or(|b| b.fenced);
                    AppReply::Heartbeat {
                        known: true,
                        fenced,
                    }
                }
            }
        }
        AppRequest::Shutdown { id, epoch } => {
            let cmd = {
                let image = d.state.borrow().image().clone();
                d.liveness.borrow_mut().on_shutdown(&image, id, epoch)
            };
            match cmd {
                Some(cmd) => match controller::run_command(shard, "fence-broker", cmd).await {
                    Ok(_) => {
                        info!(broker = id, "broker shutting down: fenced");
                        AppReply::Done
                    }
                    Err(e) => AppReply::Failed(e),
                },
                None => AppReply::Done,
            }
        }
        AppRequest::FetchMetadata { known_epoch } => {
            let deadline = crate::runtime::now() + FETCH_LONG_POLL;
            loop {
                let image = d.state.borrow().image().clone();
                if image.epoch > known_epoch {
                    return AppReply::Metadata {
                        epoch: image.epoch,
                        records: image.records(),
                    };
                }
                if crate::runtime::now() >= deadline || !q.is_leader() {
                    return AppReply::Unchanged;
                }
                crate::runtime::sleep(Duration::from_millis(10)).await;
            }
        }
        AppRequest::Op(op) => {
            // A forwarded ISR change is logged as it arrives and when it is done, so one that
            // never completes shows where it waited (a chaos round once saw a leader's ISR
            // shrink go unanswered for 60 s).
            let isr_change = matches!(op, ControllerOp::AlterPartition(_)).then(|| {
                let text = format!("{op:?}");
                info!(op = %text, "ISR change received");
                (text, crate::runtime::now())
            });
            let reply = controller::run_here(shard, op).await;
            if let Some((op, received)) = isr_change {
                let ms = received.elapsed().as_millis() as u64;
                info!(%op, ms, ?reply, "ISR change handled");
            }
            let epoch = d.state.borrow().image().epoch;
            AppReply::Op { reply, epoch }
        }
    }
}

/// Sends `req` to the active controller (handled here when this node is it). A voter asks its
/// own Raft who leads; a broker-only node tries the last leader it learned of, then each voter,
/// following their hints.
async fn call_active(shard: &Rc<Shard>, req: AppRequest, ttl: Duration) -> OpResult<AppReply> {
    let d = driver(shard);
    let voters = &shard.config.voters;
    let mut candidates: Vec<i32> = Vec::with_capacity(voters.len() + 1);
    let q = quorum(shard);
    match &q {
        Some(q) => {
            let leader = q.leader().ok_or_else(|| not_controller(None))?;
            if leader == q.node_id() {
                return Ok(handle(shard, req).await);
            }
            candidates.push(leader);
        }
        None => {
            candidates.extend(d.leader_hint.get());
            candidates.extend(voters.keys().copied());
        }
    }
    let body = serde_json::to_vec(&req)
        .map_err(|e| OpError::new(ResponseError::UnknownServerError, e.to_string()))?;
    let mut last = not_controller(None);
    let mut tried = Vec::new();
    // Each voter at most once: bounded by the voter count.
    while let Some(node) = candidates.first().copied() {
        candidates.remove(0);
        if tried.contains(&node) {
            continue;
        }
        tried.push(node);
        let Some(addr) = voters.get(&node).copied() else {
            continue;
        };
        match d.voters.call(addr, body.clone(), ttl).await {
            Ok(reply) => match serde_json::from_slice::<AppReply>(&reply) {
                Ok(AppReply::NotLeader(hint)) => {
                    last = not_controller(hint);
                    if let Some(h) = hint {
                        candidates.insert(0, h);
                    }
                }
                Ok(r) => {
                    d.leader_hint.set(Some(node));
                    return Ok(r);
                }
                Err(e) => last = OpError::new(ResponseError::UnknownServerError, e.to_string()),
            },
            Err(e) => {
                last = OpError::new(
                    ResponseError::NotController,
                    format!("controller {node}: {e}"),
                )
            }
        }
        if q.is_some() {
            break; // a voter asks only the leader its own Raft names
        }
    }
    d.leader_hint.set(None);
    Err(last)
}

/// Runs `op` on the active controller, then waits (bounded) until this broker's image includes
/// its effect, so a client that created a topic here can use it here at once.
pub async fn forward(shard: &Rc<Shard>, op: ControllerOp) -> ControllerReply {
    let failed = ControllerReply::failed_for(&op);
    match call_active(shard, AppRequest::Op(op), OP_TIMEOUT).await {
        Ok(AppReply::Op { reply, epoch }) => {
            let deadline = crate::runtime::now() + CATCH_UP_TIMEOUT;
            while driver(shard).published_epoch.get() < epoch && crate::runtime::now() < deadline {
                crate::runtime::sleep(Duration::from_millis(5)).await;
            }
            reply
        }
        Ok(AppReply::Failed(e)) => failed(e),
        Ok(AppReply::NotLeader(l)) => failed(not_controller(l)),
        Ok(other) => failed(OpError::new(
            ResponseError::UnknownServerError,
            format!("unexpected reply {other:?}"),
        )),
        Err(e) => failed(e),
    }
}

/// Registration, then a heartbeat every `--broker-heartbeat-interval-ms`; registers again
/// when the active controller no longer knows this incarnation.
async fn lifecycle(shard: Rc<Shard>) {
    let args = &shard.config.args;
    let record = BrokerRecord {
        id: args.node_id,
        incarnation: shard.shared.incarnation,
        host: shard.config.advertised_host.clone(),
        port: shard.config.advertised_port,
        rack: args.broker_rack.clone(),
        listeners: shard
            .config
            .listeners
            .iter()
            .map(|l| crate::cluster::record::ListenerEndpoint {
                name: l.name().to_owned(),
                host: l.advertised_host.clone(),
                port: l.advertised_port,
            })
            .collect(),
    };
    let interval = Duration::from_millis(args.broker_heartbeat_interval_ms);
    let mut epoch: Option<u64> = None;
    let mut fenced = true;
    let mut swept = false;
    loop {
        if shard.shutting_down.get() {
            return;
        }
        match epoch {
            None => match call_active(&shard, AppRequest::Register(record.clone()), interval * 2)
                .await
            {
                Ok(AppReply::Registered { epoch: e }) => {
                    info!(epoch = e, "registered with the active controller");
                    epoch = Some(e);
                    driver(&shard).broker_epoch.set(Some(e));
                    continue;
                }
                Ok(AppReply::Failed(e)) => {
                    info!(error = %e.message, "registration refused; retrying")
                }
                Ok(other) => warn!(reply = ?other, "unexpected registration reply"),
                Err(e) => info!(error = %e.message, "cannot register yet; retrying"),
            },
            Some(e) => {
                let beat = AppRequest::Heartbeat {
                    id: args.node_id,
                    epoch: e,
                    applied: shard.metadata().epoch,
                };
                match call_active(&shard, beat, interval * 2).await {
                    Ok(AppReply::Heartbeat { known: false, .. }) => {
                        warn!(epoch = e, "the active controller does not know this registration; registering again");
                        epoch = None;
                        continue;
                    }
                    Ok(AppReply::Heartbeat { fenced: f, .. }) => {
                        if f != fenced {
                            info!(fenced = f, "broker fencing changed");
                            fenced = f;
                            driver(&shard).broker_fenced.set(f);
                            if !f && !swept {
                                swept = true;
                                crate::runtime::spawn(sweep_deleted_topics(shard.clone())).detach();
                            }
                        }
                    }
                    Ok(other) => info!(reply = ?other, "heartbeat not accepted"),
                    Err(e) => info!(error = %e.message, "heartbeat failed"),
                }
            }
        }
        crate::runtime::sleep(interval).await;
    }
}

/// Removes the partition directories of topics deleted while this node was away, once it has
/// caught up (it was unfenced, so its metadata holds every change up to its registration, which
/// came after it started). The directories are listed first and compared with the controller's
/// image after: a directory exists only once a shard applied an image with its topic, and the
/// controller's image is never behind a shard's, so a live topic's directory is never taken; a
/// topic id, once gone, never comes back.
async fn sweep_deleted_topics(shard: Rc<Shard>) {
    let data_dir = shard.config.args.data_dir.clone();
    let listed =
        crate::runtime::spawn_blocking(move || crate::partition::dir::stamped_dirs(&data_dir))
            .await
            .unwrap_or_else(|| Err(std::io::Error::other("listing task panicked")));
    let dirs = match listed {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "listing partition directories failed; deleted topics' directories stay");
            return;
        }
    };
    let doomed: Vec<std::path::PathBuf> = {
        let state = driver(&shard).state.borrow();
        let image = state.image();
        dirs.into_iter()
            .filter(|(_, id)| image.topic_by_id(id).is_none())
            .map(|(path, _)| path)
            .collect()
    };
    if doomed.is_empty() {
        return;
    }
    let removed = crate::runtime::spawn_blocking(move || {
        let mut n = 0;
        for dir in doomed {
            info!(dir = %dir.display(), "removing the directory of a topic deleted while this node was away");
            match crate::partition::dir::remove_aside(&dir, "stray") {
                Ok(()) => n += 1,
                Err(e) => warn!(dir = %dir.display(), error = %e, "removing a stray partition directory failed"),
            }
        }
        n
    })
    .await
    .unwrap_or(0);
    info!(removed, "swept partition directories of deleted topics");
}

/// On the active controller: on gaining leadership, take over (fresh sessions for every
/// broker, producer ids past the persisted block, the cluster id of a new cluster); then fence
/// brokers whose session expired; every quarter heartbeat interval (at most 100 ms).
async fn active_controller_duties(shard: Rc<Shard>) {
    // Also how fresh the active controller id in Metadata is.
    let tick =
        Duration::from_millis((shard.config.args.broker_heartbeat_interval_ms / 4).clamp(10, 100));
    let mut was_leader = false;
    let mut last_rebalance = std::time::Instant::now();
    loop {
        crate::runtime::sleep(tick).await;
        if shard.shutting_down.get() {
            return;
        }
        let Some(q) = quorum(&shard) else { continue };
        let leader = q.leader();
        shard
            .shared
            .active_controller
            .store(leader.unwrap_or(-1), Ordering::Relaxed);
        let d = driver(&shard);
        let status = ClusterStatus {
            quorum: q.status(),
            broker_epoch: d.broker_epoch.get(),
            fenced: d.broker_fenced.get(),
        };
        if let Ok(mut s) = shard.shared.status.lock() {
            *s = Some(status);
        }
        let is_leader = leader == Some(q.node_id());
        if !is_leader {
            was_leader = false;
            continue;
        }
        if !was_leader {
            if q.linearize().await.is_err() {
                continue;
            }
            was_leader = true;
            info!(node = q.node_id(), "this node is the active controller");
            let image = d.state.borrow().image().clone();
            d.liveness.borrow_mut().reset(clock_ms(), &image);
            if image.cluster_id.is_empty() {
                let cmd = Command::InitCluster {
                    cluster_id: new_cluster_id(),
                };
                if let Err(e) = controller::run_command(&shard, "init-cluster", cmd).await {
                    warn!(error = %e.message, "giving the cluster its id failed");
                }
            }
        }
        if shard.config.args.auto_leader_rebalance_enable {
            let every =
                Duration::from_secs(shard.config.args.leader_imbalance_check_interval_seconds);
            if last_rebalance.elapsed() >= every {
                last_rebalance = std::time::Instant::now();
                match controller::elect_leaders(&shard, None, false).await {
                    Ok(outcomes) => {
                        let moved = outcomes.iter().filter(|(_, _, c)| *c == 0).count();
                        if moved > 0 {
                            info!(
                                partitions = moved,
                                "leadership moved back to preferred replicas"
                            );
                        }
                    }
                    Err(e) => warn!(error = %e.message, "preferred leader election failed"),
                }
            }
        }
        let expired = {
            let image = d.state.borrow().image().clone();
            d.liveness.borrow_mut().on_tick(clock_ms(), &image)
        };
        for cmd in expired {
            if let Command::FenceBroker { id, .. } = cmd {
                warn!(broker = id, "broker session expired: fencing it");
            }
            if let Err(e) = controller::run_command(&shard, "fence-broker", cmd).await {
                warn!(error = %e.message, "fencing failed");
            }
        }
    }
}

/// Controlled shutdown (SIGTERM): asks the active controller to fence this broker, so its
/// leaderships move away before it stops serving. Bounded by `limit`.
pub async fn controlled_shutdown(shard: &Rc<Shard>, limit: Duration) {
    let Some(epoch) = driver(shard).broker_epoch.get() else {
        return;
    };
    let req = AppRequest::Shutdown {
        id: shard.config.args.node_id,
        epoch,
    };
    match crate::runtime::timeout(limit, call_active(shard, req, limit)).await {
        Ok(Ok(AppReply::Done)) => info!("controlled shutdown: fenced by the active controller"),
        Ok(Ok(other)) => warn!(reply = ?other, "controlled shutdown refused; stopping anyway"),
        Ok(Err(e)) => warn!(error = %e.message, "controlled shutdown failed; stopping anyway"),
        Err(_) => warn!("controlled shutdown timed out; stopping anyway"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::NewTopic;

    /// Fixed-seed mutations of real application calls: each decodes or is refused.
    #[test]
    fn mutated_application_calls_never_panic() {
        let op = ControllerOp::CreateTopics {
            topics: vec![NewTopic {
                name: "t".into(),
                partitions: 3,
                replication_factor: -1,
                configs: [("retention.ms".to_owned(), "5".to_owned())].into(),
                assignment: Some(vec![vec![0, 1]]),
            }],
            validate_only: false,
        };
        let seeds = [
            serde_json::to_vec(&AppRequest::Op(op)).unwrap(),
            serde_json::to_vec(&AppRequest::Heartbeat {
                id: 1,
                epoch: 9,
                applied: 12,
            })
            .unwrap(),
        ];
        for s in &seeds {
            assert!(decode_app_request(s).is_ok());
        }
        let mut rng = sluice_base::Rng::new(3);
        for _ in 0..3000 {
            let seed = &seeds[rng.below(2) as usize];
            let m = rng.mutate(seed, 6);
            let _ = decode_app_request(&m);
        }
    }
}
