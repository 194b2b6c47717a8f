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
use crate::cluster::record::BrokerRecord;
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
    Failed(OpError),
}

/// Starts the quorum on shard 0 from `recovered`, then this node's duties. The controller
/// already holds `recovered.image`.
pub async fn start(shard: Rc<Shard>, recovered: Recovered) {
    let d = driver(&shard);
    let Backend::Quorum(cell) = &d.backend else {
        return;
    };
    let weak: Weak<Shard> = Rc::downgrade(&shard);
    let publish: Publish = Rc::new(move |image: Arc<MetadataImage>| {
        let weak = weak.clone();
        async move {
            match weak.upgrade() {
                Some(shard) => controller::broadcast(&shard, image)
                    .await
                    .into_iter()
                    .collect(),
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
    };
    let quorum = match Quorum::start(config, recovered, d.state.clone(), publish).await {
        Ok(q) => q,
        Err(e) => {
            error!(error = %e, "cannot start the controller quorum; this node serves no metadata changes");
            return;
        }
    };
    if let Some(addr) = args.controller_listen {
        match std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(crate::runtime::net::TcpListener::from_std)
        {
            Ok(listener) => {
                let s = shard.clone();
                let app: crate::quorum::AppHandler = Rc::new(move |body| {
                    let s = s.clone();
                    async move { serve_app(&s, &body).await }.boxed_local()
                });
                quorum.serve(listener, app);
                info!(%addr, "controller endpoint listening");
            }
            Err(e) => error!(%addr, error = %e, "cannot listen on the controller endpoint"),
        }
    }
    let _ = cell.set(quorum.clone());
    quorum.bootstrap().await;
    crate::runtime::spawn(active_controller_duties(shard.clone())).detach();
    crate::runtime::spawn(lifecycle(shard)).detach();
}

/// Milliseconds on a monotonic clock (broker sessions must not jump with the wall clock).
fn clock_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(crate::runtime::now);
    crate::runtime::now().duration_since(origin).as_millis() as u64
}

/// Raft's heartbeat: a fifth of the broker heartbeat interval (at least 20 ms), so an
/// election (3–6 Raft heartbeats) finishes well within one broker heartbeat interval.
fn raft_heartbeat_ms(broker_heartbeat_ms: u64) -> u64 {
    (broker_heartbeat_ms / 5).clamp(20, 500)
}

fn quorum(shard: &Shard) -> Option<Rc<Quorum>> {
    driver(shard).quorum().cloned()
}

/// Serves one application call (this node should be the active controller).
async fn serve_app(shard: &Rc<Shard>, body: &[u8]) -> Vec<u8> {
    let reply = match serde_json::from_slice::<AppRequest>(body) {
        Ok(req) => handle(shard, req).await,
        Err(e) => AppReply::Failed(OpError::new(ResponseError::InvalidRequest, e.to_string())),
    };
    serde_json::to_vec(&reply).unwrap_or_default()
}

/// Handles `req` as the active controller.
async fn handle(shard: &Rc<Shard>, req: AppRequest) -> AppReply {
    let Some(q) = quorum(shard) else {
        return AppReply::Failed(not_controller(None));
    };
    if !q.is_leader() {
        return AppReply::Failed(not_controller(q.leader()));
    }
    let d = driver(shard);
    match req {
        AppRequest::Register(record) => {
            let id = record.id;
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
        AppRequest::Op(op) => {
            let reply = controller::run_here(shard, op).await;
            let epoch = d.state.borrow().image().epoch;
            AppReply::Op { reply, epoch }
        }
    }
}

/// Sends `req` to the active controller (handled here when this node is it).
async fn call_active(shard: &Rc<Shard>, req: AppRequest, ttl: Duration) -> OpResult<AppReply> {
    let q = quorum(shard).ok_or_else(|| not_controller(None))?;
    let leader = q.leader().ok_or_else(|| not_controller(None))?;
    if leader == q.node_id() {
        return Ok(handle(shard, req).await);
    }
    let body = serde_json::to_vec(&req)
        .map_err(|e| OpError::new(ResponseError::UnknownServerError, e.to_string()))?;
    let reply = q.call(leader, body, ttl).await.map_err(|e| {
        OpError::new(
            ResponseError::NotController,
            format!("controller {leader}: {e}"),
        )
    })?;
    serde_json::from_slice(&reply)
        .map_err(|e| OpError::new(ResponseError::UnknownServerError, e.to_string()))
}

/// Runs `op` on the active controller, then waits (bounded) until this broker's image includes
/// its effect, so a client that created a topic here can use it here at once.
pub async fn forward(shard: &Rc<Shard>, op: ControllerOp) -> ControllerReply {
    let failed = ControllerReply::failed_for(&op);
    match call_active(shard, AppRequest::Op(op), OP_TIMEOUT).await {
        Ok(AppReply::Op { reply, epoch }) => {
            let deadline = crate::runtime::now() + CATCH_UP_TIMEOUT;
            while shard.metadata().epoch < epoch && crate::runtime::now() < deadline {
                crate::runtime::sleep(Duration::from_millis(5)).await;
            }
            reply
        }
        Ok(AppReply::Failed(e)) => failed(e),
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
        incarnation: *uuid::Uuid::new_v4().as_bytes(),
        host: shard.config.advertised_host.clone(),
        port: shard.config.advertised_port,
        rack: args.broker_rack.clone(),
    };
    let interval = Duration::from_millis(args.broker_heartbeat_interval_ms);
    let mut epoch: Option<u64> = None;
    let mut fenced = true;
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

/// On the active controller: on gaining leadership, take over (fresh sessions for every
/// broker, producer ids past the persisted block, the cluster id of a new cluster); then fence
/// brokers whose session expired, every heartbeat interval.
async fn active_controller_duties(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.args.broker_heartbeat_interval_ms.min(1000));
    let mut was_leader = false;
    loop {
        crate::runtime::sleep(interval / 4).await;
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
            let image = {
                let mut c = d.state.borrow_mut();
                c.become_active();
                c.image().clone()
            };
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
        let expired = {
            let image = d.state.borrow().image().clone();
            d.liveness.borrow_mut().on_tick(clock_ms(), &image)
        };
        for cmd in expired {
            if let Command::FenceBroker { id } = cmd {
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
