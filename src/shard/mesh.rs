//! The mesh: one bounded queue per ordered pair of shards, carrying tasks that run on the target
//! shard in queue order (a forwarded produce appends there in the order the connection sent it).

use std::rc::Rc;

use futures_util::future::LocalBoxFuture;

use super::Shard;
use crate::limits::MESH_QUEUE_DEPTH;

/// Work sent to another shard: runs there, in order, and may leave a future to spawn.
pub type MeshTask = Box<dyn FnOnce(&Rc<Shard>) -> LocalBoxFuture<'static, ()> + Send>;

/// The peer shard is gone (shutting down).
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not reachable")]
pub struct MeshError(pub usize);

impl Shard {
    /// Sends `task` to shard `target` (runs inline when `target` is this shard).
    pub async fn send(self: &Rc<Self>, target: usize, task: MeshTask) -> Result<(), MeshError> {
        if target == self.id {
            let fut = task(self);
            crate::runtime::spawn(fut).detach();
            return Ok(());
        }
        let tx = self.peers.get(target).ok_or(MeshError(target))?;
        crate::metrics::ShardMetrics::add(&self.metrics.mesh_sent, 1);
        tx.send_async(task).await.map_err(|_| MeshError(target))
    }

    /// Messages waiting in this shard's outgoing mesh queues.
    pub fn mesh_queue_depth(&self) -> usize {
        self.peers.iter().map(flume::Sender::len).sum()
    }

    /// Runs `f` on shard `target` and returns its result. `f`'s synchronous part runs in
    /// mesh-queue order on the target; the future it returns completes there.
    pub async fn call<R, F, Fut>(self: &Rc<Self>, target: usize, f: F) -> Result<R, MeshError>
    where
        R: Send + 'static,
        F: FnOnce(&Rc<Shard>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + 'static,
    {
        let rx = self.start_call(target, f).await?;
        rx.recv_async().await.map_err(|_| MeshError(target))
    }

    /// Like [`Shard::call`] but returns once the task is enqueued (so callers can keep their
    /// order), with a receiver for the result.
    pub async fn start_call<R, F, Fut>(
        self: &Rc<Self>,
        target: usize,
        f: F,
    ) -> Result<flume::Receiver<R>, MeshError>
    where
        R: Send + 'static,
        F: FnOnce(&Rc<Shard>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + 'static,
    {
        let (tx, rx) = flume::bounded(1);
        let task: MeshTask = Box::new(move |shard: &Rc<Shard>| {
            let fut = f(shard);
            Box::pin(async move {
                let _ = tx.send_async(fut.await).await;
            })
        });
        self.send(target, task).await?;
        Ok(rx)
    }
}

/// `senders[from][to]` and `receivers[to][from]` of the mesh.
pub type Mesh = (
    Vec<Vec<flume::Sender<MeshTask>>>,
    Vec<Vec<flume::Receiver<MeshTask>>>,
);

/// Builds the mesh: one bounded queue per ordered pair of shards.
pub fn build_mesh(shards: usize) -> Mesh {
    let mut senders: Vec<Vec<flume::Sender<MeshTask>>> = (0..shards).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<flume::Receiver<MeshTask>>> =
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

/// Runs tasks arriving from one peer, in order.
pub async fn run_mesh_receiver(shard: Rc<Shard>, rx: flume::Receiver<MeshTask>) {
    while let Ok(task) = rx.recv_async().await {
        let fut = task(&shard);
        crate::runtime::spawn(fut).detach();
    }
}
