//! The mesh: one bounded queue per ordered pair of shards, carrying typed messages
//! ([`MeshMsg`]) that run on the target shard in queue order (a forwarded produce appends there
//! in the order the connection sent it).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use kafka_protocol::ResponseError;

use super::controller::{ControllerOp, ControllerReply};
use super::ops::{self, AppendOutcome, PartitionOp, PartitionOpOutcome, ReadOutcome, ReadRequest};
use super::txns::{Marker, TxnDriver};
use super::Shard;
use crate::cluster::image::MetadataImage;
use crate::coordinator::group::coordinator::{Reply as GroupReply, Request as GroupRequest};
use crate::coordinator::txn::coordinator::{Reply as TxnReply, Request as TxnRequest};
use crate::limits::MESH_QUEUE_DEPTH;

/// A message to another shard. Each carries its data and, where it expects an answer, the
/// sender of a one-shot reply channel. [`deliver`] runs it on the target shard in queue order:
/// an [`MeshMsg::Append`] appends synchronously on arrival, so forwarded produce requests keep
/// their connection's order.
pub enum MeshMsg {
    /// Produce: append these batches (topic, partition, records, verification guard); reply
    /// once `acks` holds.
    Append {
        parts: Vec<(String, i32, Bytes, Option<u64>)>,
        acks: i16,
        reply: flume::Sender<Vec<AppendOutcome>>,
    },
    /// KIP-890: the verification guards of `producer` on these partitions
    /// ([`ops::txn_guards`]); answered on arrival, so in order with the appends that follow.
    TxnGuards {
        parts: Vec<(String, i32)>,
        producer: (i64, i16),
        epoch_bump: bool,
        reply: flume::Sender<Vec<Option<u64>>>,
    },
    /// Fetch: read these partitions, each within its share of the response.
    Read {
        parts: Vec<ReadRequest>,
        reply: flume::Sender<Vec<ReadOutcome>>,
    },
    /// Fetch long poll: reply when any of (topic, partition, offset) has data past the offset,
    /// or after `wait`.
    WaitForData {
        parts: Vec<ops::WaitPart>,
        wait: Duration,
        reply: flume::Sender<()>,
    },
    /// ListOffsets, DeleteRecords, OffsetForLeaderEpoch: one op per (topic, partition).
    PartitionOps {
        ops: Vec<(String, i32, PartitionOp)>,
        reply: flume::Sender<Vec<Result<PartitionOpOutcome, ResponseError>>>,
    },
    /// DescribeLogDirs: sizes of this shard's partitions.
    LogDirSizes {
        reply: flume::Sender<Vec<(String, i32, i64)>>,
    },
    /// A new metadata image; the reply lists topics some of whose partitions failed to open.
    ApplyMetadata {
        image: Arc<MetadataImage>,
        reply: flume::Sender<Vec<String>>,
    },
    /// A transaction coordinator request, on the shard owning the id's state partition.
    Txn {
        request: TxnRequest,
        reply: flume::Sender<Result<TxnReply, ResponseError>>,
    },
    /// Transaction markers for these partitions of this shard; the reply holds an error code
    /// per partition (0: written and committed).
    WriteMarkers {
        parts: Vec<(String, i32)>,
        marker: Marker,
        reply: flume::Sender<Vec<i16>>,
    },
    /// An admin command for the controller (shard 0 only).
    Controller {
        op: ControllerOp,
        reply: flume::Sender<ControllerReply>,
    },
    /// A request for the group coordinator of this shard.
    Group {
        request: GroupRequest,
        reply: flume::Sender<Result<GroupReply, ResponseError>>,
    },
}

/// The peer shard is gone (shutting down).
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not reachable")]
pub struct MeshError(pub usize);

impl Shard {
    /// Sends `msg` to shard `target` (delivered at once when `target` is this shard).
    pub async fn send(self: &Rc<Self>, target: usize, msg: MeshMsg) -> Result<(), MeshError> {
        if target == self.id {
            deliver(self, msg);
            return Ok(());
        }
        let tx = self.peers.get(target).ok_or(MeshError(target))?;
        crate::metrics::ShardMetrics::add(&self.metrics.mesh_sent, 1);
        tx.send_async(msg).await.map_err(|_| MeshError(target))
    }

    /// Messages waiting in this shard's outgoing mesh queues.
    pub fn mesh_queue_depth(&self) -> usize {
        self.peers.iter().map(flume::Sender::len).sum()
    }

    /// Sends the message `make` builds around a reply sender, and waits for the reply.
    pub async fn request<R: Send + 'static>(
        self: &Rc<Self>,
        target: usize,
        make: impl FnOnce(flume::Sender<R>) -> MeshMsg,
    ) -> Result<R, MeshError> {
        let rx = self.start_request(target, make).await?;
        rx.recv_async().await.map_err(|_| MeshError(target))
    }

    /// Like [`Shard::request`] but returns once the message is enqueued (so callers keep their
    /// order), with the receiver of the reply.
    pub async fn start_request<R: Send + 'static>(
        self: &Rc<Self>,
        target: usize,
        make: impl FnOnce(flume::Sender<R>) -> MeshMsg,
    ) -> Result<flume::Receiver<R>, MeshError> {
        let (tx, rx) = flume::bounded(1);
        self.send(target, make(tx)).await?;
        Ok(rx)
    }
}

/// Runs `msg` on `shard`: its synchronous part now (appends), the rest as a spawned task.
pub fn deliver(shard: &Rc<Shard>, msg: MeshMsg) {
    let s = shard.clone();
    match msg {
        MeshMsg::Append { parts, acks, reply } => {
            let futs: Vec<_> = parts
                .into_iter()
                .map(|(topic, index, records, guard)| {
                    ops::append(shard, &topic, index, records, acks, guard)
                })
                .collect();
            spawn(async move {
                let _ = reply.send_async(join_all(futs).await).await;
            });
        }
        MeshMsg::TxnGuards {
            parts,
            producer,
            epoch_bump,
            reply,
        } => {
            let _ = reply.send(ops::txn_guards(shard, &parts, producer, epoch_bump));
        }
        MeshMsg::Read { parts, reply } => spawn(async move {
            let _ = reply.send_async(ops::read(s, parts).await).await;
        }),
        MeshMsg::WaitForData { parts, wait, reply } => spawn(async move {
            ops::wait_for_data(s, parts, wait).await;
            let _ = reply.send_async(()).await;
        }),
        MeshMsg::PartitionOps { ops, reply } => spawn(async move {
            let runs = ops
                .into_iter()
                .map(|(topic, index, op)| ops::run_op(s.partition(&topic, index), op));
            let _ = reply.send_async(join_all(runs).await).await;
        }),
        MeshMsg::LogDirSizes { reply } => {
            let _ = reply.send(ops::log_dir_sizes(shard));
        }
        MeshMsg::ApplyMetadata { image, reply } => spawn(async move {
            let _ = reply.send_async(s.apply_metadata(image).await).await;
        }),
        MeshMsg::Controller { op, reply } => spawn(async move {
            let _ = reply.send_async(super::controller::run(&s, op).await).await;
        }),
        MeshMsg::Txn { request, reply } => spawn(async move {
            let r = TxnDriver::request(&s, request).await;
            let _ = reply.send_async(r).await;
        }),
        MeshMsg::WriteMarkers {
            parts,
            marker,
            reply,
        } => spawn(async move {
            let _ = reply
                .send_async(ops::write_markers(s, parts, marker).await)
                .await;
        }),
        MeshMsg::Group { request, reply } => spawn(async move {
            let r = super::groups::serve(&s, request).await;
            let _ = reply.send_async(r).await;
        }),
    }
}

fn spawn(fut: impl std::future::Future<Output = ()> + 'static) {
    crate::runtime::spawn(fut).detach();
}

/// `senders[from][to]` and `receivers[to][from]` of the mesh.
pub type Mesh = (
    Vec<Vec<flume::Sender<MeshMsg>>>,
    Vec<Vec<flume::Receiver<MeshMsg>>>,
);

/// Builds the mesh: one bounded queue per ordered pair of shards.
pub fn build_mesh(shards: usize) -> Mesh {
    let mut senders: Vec<Vec<flume::Sender<MeshMsg>>> = (0..shards).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<flume::Receiver<MeshMsg>>> =
        (0..shards).map(|_| Vec::new()).collect();
    for from in senders.iter_mut() {
        for to in receivers.iter_mut() {
            let (tx, rx) = flume::bounded(MESH_QUEUE_DEPTH);
            from.push(tx);
            to.push(rx);
        }
    }
    (senders, receivers)
}

/// Delivers messages arriving from one peer, in order.
pub async fn run_mesh_receiver(shard: Rc<Shard>, rx: flume::Receiver<MeshMsg>) {
    while let Ok(msg) = rx.recv_async().await {
        deliver(&shard, msg);
    }
}
