//! Broker start-up and shutdown: data dir lock, metadata load, SO_REUSEPORT listeners, one
//! pinned shard thread per core, and a signal wait on the main thread.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, error, info, warn};

use crate::cluster::image::MetadataImage;
use crate::cluster::store::MetadataStore;
use crate::config::Config;
use crate::controller::{Controller, ControllerConfig};
use crate::kafka::connection;
use crate::limits::{
    METADATA_APPLY_QUEUE_DEPTH, OPEN_RETRY_MS, PORT_RELEASE_WAIT_MS, SCRAPE_QUEUE_DEPTH,
    SHUTDOWN_GRACE_MS,
};
use crate::metrics::{self, ControlRequest, Endpoint, ShardMetrics};
use crate::shard::controller::{Backend, ControllerDriver};
use crate::shard::{build_mesh, run_mesh_receiver, MeshMsg, Shard};
use crate::util::now_ms;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("data dir {0} is in use by another sluice process")]
    Locked(String),
    #[error(transparent)]
    Metadata(#[from] crate::cluster::store::MetadataError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {source}")]
    Shard {
        shard: usize,
        source: std::io::Error,
    },
}

/// Creates the data dir, checks it is writable and takes an exclusive lock on it.
fn prepare_data_dir(dir: &Path) -> Result<fs::File, StartError> {
    let err = |source| StartError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    fs::create_dir_all(dir).map_err(err)?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(".lock"))
        .map_err(err)?;
    // SAFETY: flock on an fd we own; no memory is involved.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StartError::Locked(dir.display().to_string()));
    }
    Ok(lock)
}

/// Fails if another process already listens on `addr`: SO_REUSEPORT (which our shards need)
/// would otherwise let a second broker share the port and split clients between the two.
fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    retry_while_in_use(addr, || {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())
    })
}

/// Runs `bind` again while it fails with "address in use", for at most
/// `PORT_RELEASE_WAIT_MS`: a broker restarted at once after `kill -9` would otherwise find its
/// own dead predecessor's listening socket still bound for a few milliseconds.
fn retry_while_in_use<T>(
    addr: SocketAddr,
    mut bind: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let deadline = std::time::Instant::now() + Duration::from_millis(PORT_RELEASE_WAIT_MS);
    let mut logged = false;
    loop {
        match bind() {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                // Debug: a second broker on a port in use still ends with one clear error.
                if !logged {
                    debug!(%addr, wait_ms = PORT_RELEASE_WAIT_MS, "address in use; waiting for it to be released");
                    logged = true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Blocks SIGINT/SIGTERM/SIGHUP in this thread (and the threads it spawns) so `sigwait`
/// receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a zeroed, owned sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is a valid signal set and `sig` a valid out-pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// Raises the open-file limit as far as allowed: every partition keeps a segment open for
/// writing and one for reading, so 10,000 partitions need more than the usual 1,024 or 20,000
/// (Kafka's documentation asks for 100,000+). Root may raise the hard limit too.
fn raise_fd_limit() {
    const WANTED: libc::rlim_t = 1 << 20;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, owned rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_max < WANTED {
            let raised = libc::rlimit {
                rlim_cur: WANTED,
                rlim_max: WANTED,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                info!(limit = WANTED, "raised the open-file limit");
                return;
            }
        }
        if lim.rlim_cur < lim.rlim_max {
            let soft = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
                info!(limit = lim.rlim_max, "raised the open-file limit");
            }
        }
    }
}

pub fn run(config: Config) -> Result<(), StartError> {
    // Before any thread starts (the metadata writer is the first): threads inherit the mask,
    // and a SIGTERM delivered to a thread that does not block it would kill the process
    // instead of reaching `sigwait` (seen as a rare unclean exit on SIGTERM).
    let signals = block_signals();
    sluice_storage::keep_large_buffers_in_heap();
    raise_fd_limit();
    let _lock = prepare_data_dir(&config.args.data_dir)?;
    let (metadata, image) = if config.clustered() && config.args.controller_listen.is_none() {
        // A broker-only node: its metadata comes from the active controller once started.
        if let Err(e) = crate::partition::dir::remove_deleted(&config.args.data_dir) {
            warn!(error = %e, "removing deleted partition directories failed");
        }
        (Metadata::Remote, MetadataImage::default())
    } else if config.clustered() {
        let dir = config.args.data_dir.join("__raft");
        let recovered = crate::quorum::recover(&dir).map_err(|source| StartError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let image = recovered.image.clone();
        // Deleted topics' directories are swept once this node has caught up with the cluster
        // (`shard::cluster`); a crash's `-delete` leftovers can go now.
        if let Err(e) = crate::partition::dir::remove_deleted(&config.args.data_dir) {
            warn!(error = %e, "removing deleted partition directories failed");
        }
        // Bound now, before anything starts: a voter whose endpoint another process holds
        // must not run, or its peers would talk Raft with that process (seen in tests as a
        // foreign quorum's votes and entries reaching this cluster).
        let endpoint = match config.args.controller_listen {
            Some(addr) => Some(
                retry_while_in_use(addr, || std::net::TcpListener::bind(addr))
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|source| StartError::Listen { addr, source })?,
            ),
            None => None,
        };
        (Metadata::Quorum(Box::new(recovered), endpoint), image)
    } else {
        let (store, image) = MetadataStore::open(&config.args.data_dir, config.args.node_id)?;
        // A single node's image is complete at start, so a directory it does not know is a
        // deleted topic's (a cluster node sweeps later, once caught up: `shard::cluster`).
        match crate::partition::dir::sweep(&config.args.data_dir, &image) {
            Ok(0) => {}
            Ok(n) => info!(
                removed = n,
                "removed partition directories of deleted topics"
            ),
            Err(e) => {
                warn!(error = %e, "sweeping partition directories failed; stale ones are replaced when opened")
            }
        }
        (Metadata::Local(store), image)
    };
    let mut metadata = Some(metadata);

    // Every listener, bound once per shard (SO_REUSEPORT spreads its connections).
    let mut per_shard: Vec<Vec<TcpListener>> = (0..config.shards).map(|_| Vec::new()).collect();
    let mut bound_ports = Vec::with_capacity(config.listeners.len());
    let mut bound_addrs = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let addr = listener.addr;
        let failed = |source| StartError::Listen { addr, source };
        ensure_port_free(addr).map_err(failed)?;
        let first = bind(addr).map_err(failed)?;
        let bound = first.local_addr().map_err(failed)?;
        per_shard[0].push(first);
        for shard in per_shard.iter_mut().skip(1) {
            shard.push(bind(bound).map_err(|source| StartError::Listen {
                addr: bound,
                source,
            })?);
        }
        bound_ports.push(bound.port());
        bound_addrs.push(bound);
    }
    let bound = bound_addrs[0];
    let config = Arc::new(config.with_bound_ports(&bound_ports));

    let (senders, receivers) = build_mesh(config.shards);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let image = Arc::new(image);
    let shared = Arc::new(crate::shard::Shared::default());
    let mut shutdowns = Vec::with_capacity(config.shards);
    let mut threads = Vec::with_capacity(config.shards);
    let (ready_tx, ready_rx) = flume::bounded::<()>(config.shards);
    let (controls, control_rxs): (Vec<_>, Vec<_>) = (0..config.shards)
        .map(|_| flume::bounded::<ControlRequest>(SCRAPE_QUEUE_DEPTH))
        .unzip();
    let endpoint = Arc::new(Endpoint {
        shards: controls,
        ready_shards: AtomicUsize::new(0),
    });
    let metrics_addr = match config.metrics_listen {
        Some(addr) => Some(
            metrics::spawn_http(addr, endpoint.clone())
                .map_err(|source| StartError::Listen { addr, source })?,
        ),
        None => None,
    };
    for (id, (((peers, inbox), listeners), control)) in senders
        .into_iter()
        .zip(receivers)
        .zip(per_shard)
        .zip(control_rxs)
        .enumerate()
    {
        let (stop_tx, stop_rx) = flume::bounded::<()>(1);
        shutdowns.push(stop_tx);
        let config = config.clone();
        let image = image.clone();
        let metadata = if id == 0 { metadata.take() } else { None };
        let shared = shared.clone();
        let ready = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sluice-shard-{id}"))
            .spawn(move || {
                sluice_storage::set_cache_budget(config.args.tail_cache_shard_bytes);
                let start = ShardStart {
                    id,
                    config,
                    peers,
                    inbox,
                    listeners,
                    image,
                    metadata,
                    shared,
                    stop: stop_rx,
                    ready,
                    control,
                };
                match crate::runtime::block_on_pinned(id % cpus, shard_main(start)) {
                    Ok(()) => {}
                    Err(e) => error!(shard = id, error = %e, "cannot build io_uring runtime"),
                }
            })
            .map_err(|source| StartError::Shard { shard: id, source })?;
        threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..config.shards {
        if ready_rx.recv().is_err() {
            break;
        }
        endpoint.ready_shards.fetch_add(1, Ordering::Relaxed);
    }
    info!(listen = %bound, shards = config.shards, data_dir = %config.args.data_dir.display(), "sluice started");
    // Tests and scripts read this line to learn the port (e.g. with --listen 127.0.0.1:0).
    let mut out = std::io::stdout();
    if let Some(addr) = metrics_addr {
        let _ = writeln!(out, "sluice metrics on {addr}");
    }
    // Each listener first: a reader that stops at "listening on" has seen them all.
    for (l, addr) in config.listeners.iter().zip(&bound_addrs) {
        let _ = writeln!(out, "sluice listener {} on {addr}", l.name());
    }
    let _ = writeln!(out, "sluice listening on {bound}");
    let _ = out.flush();

    let sig = loop {
        let sig = wait_for_signal(&signals);
        if sig != libc::SIGHUP {
            break sig;
        }
        // SIGHUP: the TLS listeners' certificates and keys are read again.
        match &config.tls {
            Some(tls) => match tls.reload() {
                Ok(()) => info!("SIGHUP: TLS keystore and truststore reloaded"),
                Err(e) => {
                    error!(error = %e, "SIGHUP: TLS reload failed; the previous certificates stay")
                }
            },
            None => info!("SIGHUP: no TLS listener, nothing to reload"),
        }
    };
    info!(signal = sig, "shutting down");
    for s in &shutdowns {
        let _ = s.send(());
    }
    for t in threads {
        if t.join().is_err() {
            error!("a shard thread panicked during shutdown");
        }
    }
    info!("sluice stopped");
    Ok(())
}

/// Where shard 0's controller keeps the metadata.
enum Metadata {
    Local(MetadataStore),
    /// A voter: its journal (boxed: large beside a store handle) and its bound controller
    /// endpoint.
    Quorum(Box<crate::quorum::Recovered>, Option<std::net::TcpListener>),
    /// A broker-only node of a cluster.
    Remote,
}

/// What one shard thread starts with.
struct ShardStart {
    id: usize,
    config: Arc<Config>,
    peers: Vec<flume::Sender<MeshMsg>>,
    inbox: Vec<flume::Receiver<MeshMsg>>,
    /// One per `config.listeners`, in that order.
    listeners: Vec<TcpListener>,
    image: Arc<MetadataImage>,
    /// The metadata log or quorum (shard 0, which runs the controller).
    metadata: Option<Metadata>,
    shared: Arc<crate::shard::Shared>,
    stop: flume::Receiver<()>,
    ready: flume::Sender<()>,
    control: flume::Receiver<ControlRequest>,
}

async fn shard_main(start: ShardStart) {
    let ShardStart {
        id,
        config,
        peers,
        inbox,
        listeners,
        image,
        metadata,
        shared,
        stop,
        ready,
        control,
    } = start;
    let (apply_tx, apply_rx) = flume::bounded(METADATA_APPLY_QUEUE_DEPTH);
    let mut recovered = None;
    let controller = metadata.map(|metadata| {
        // The controller starts where its log does: the snapshot's image for a voter (Raft
        // replays the rest), this node's image otherwise.
        let start = match &metadata {
            Metadata::Quorum(r, _) => r.snapshot_image.clone(),
            _ => (*image).clone(),
        };
        let controller_config = ControllerConfig {
            default_partitions: config.args.num_partitions,
            default_replication_factor: config.args.default_replication_factor,
            brokers: vec![config.args.node_id],
            min_insync_replicas: config.args.min_insync_replicas,
        };
        let backend = match metadata {
            Metadata::Local(store) => Backend::Local(store),
            Metadata::Quorum(r, endpoint) => {
                recovered = Some((*r, endpoint));
                Backend::Quorum(std::cell::OnceCell::new())
            }
            Metadata::Remote => Backend::Remote,
        };
        ControllerDriver::new(
            Controller::new(controller_config, start),
            backend,
            config.args.broker_session_timeout_ms,
            config.args.broker_heartbeat_interval_ms,
            crate::quorum::ControllerTls::of(&config),
        )
    });
    let shard = Rc::new(Shard::new(
        id,
        config.clone(),
        shared,
        peers,
        image.clone(),
        apply_tx,
        controller,
    ));
    crate::runtime::spawn(shard.clone().run_metadata_applier(apply_rx)).detach();
    // Open (and recover) this shard's partitions before serving anything.
    shard.apply_metadata(image).await;
    for rx in inbox {
        crate::runtime::spawn(run_mesh_receiver(shard.clone(), rx)).detach();
    }
    if let Some((r, endpoint)) = recovered {
        crate::runtime::spawn(crate::shard::cluster::start(shard.clone(), r, endpoint)).detach();
    } else if id == 0 && config.clustered() {
        crate::runtime::spawn(crate::shard::cluster::start_broker_only(shard.clone())).detach();
    }
    crate::runtime::spawn(housekeeping(shard.clone())).detach();
    crate::runtime::spawn(crate::shard::cleaner::run(shard.clone())).detach();
    if config.clustered() {
        crate::runtime::spawn(crate::shard::replication::leader_ticks(shard.clone())).detach();
    }
    crate::runtime::spawn(retry_failed_opens(shard.clone())).detach();
    crate::runtime::spawn(crate::shard::stats::serve_control(shard.clone(), control)).detach();
    crate::runtime::spawn(crate::shard::stats::stall_probe(shard.clone())).detach();
    // Consumer groups: create/load __consumer_offsets, then the coordinator's timer.
    crate::runtime::spawn(crate::shard::groups::run(shard.clone())).detach();
    // Transactions: load __transaction_state partitions once the topic exists; the timer.
    crate::runtime::spawn(crate::shard::txns::run(shard.clone())).detach();
    if id == 0 {
        crate::runtime::spawn(crate::shard::bootstrap::run(shard.clone())).detach();
    }
    let mut acceptors = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        match crate::runtime::net::TcpListener::from_std(listener) {
            Ok(l) => acceptors.push(crate::runtime::spawn(accept_loop(shard.clone(), l, index))),
            Err(e) => error!(shard = id, error = %e, "cannot use listener"),
        }
    }
    let _ = ready.send(());
    let _ = stop.recv_async().await;
    if id == 0 && config.clustered() {
        let limit =
            Duration::from_millis(config.args.broker_session_timeout_ms.min(SHUTDOWN_GRACE_MS));
        crate::shard::cluster::controlled_shutdown(&shard, limit).await;
    }
    shard.shutting_down.set(true);
    drop(acceptors); // cancels the accept loops: no new connections
                     // Finish in-flight requests (bounded), then flush and checkpoint every log.
    let grace = crate::runtime::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    while shard.inflight.get() > 0 && crate::runtime::now() < grace {
        crate::runtime::sleep(Duration::from_millis(5)).await;
    }
    shard.close_logs().await;
    info!(shard = id, "shard stopped");
}

/// Connections open in the whole process (all shards), for `--max-connections`.
static CONNECTIONS_TOTAL: AtomicUsize = AtomicUsize::new(0);

/// Accepts connections of listener `index` (of `config.listeners`).
async fn accept_loop(shard: Rc<Shard>, listener: crate::runtime::net::TcpListener, index: usize) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let args = &shard.config.args;
                let total = CONNECTIONS_TOTAL.load(Ordering::Relaxed);
                if shard.connections.get() >= args.max_connections_per_shard
                    || total >= args.max_connections
                {
                    ShardMetrics::add(&shard.metrics.connections_rejected, 1);
                    warn!(%peer, shard = shard.id, total, "connection limit reached; closing new connection");
                    drop(stream);
                    continue;
                }
                CONNECTIONS_TOTAL.fetch_add(1, Ordering::Relaxed);
                ShardMetrics::add(&shard.metrics.connections_accepted, 1);
                let s = shard.clone();
                crate::runtime::spawn(async move {
                    connection::serve(s, stream, peer, index).await;
                    CONNECTIONS_TOTAL.fetch_sub(1, Ordering::Relaxed);
                })
                .detach();
            }
            Err(e) => {
                warn!(shard = shard.id, error = %e, "accept failed");
                crate::runtime::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Retries opening partition logs that failed (e.g. disk full at start-up) until they open.
async fn retry_failed_opens(shard: Rc<Shard>) {
    loop {
        crate::runtime::sleep(Duration::from_millis(OPEN_RETRY_MS)).await;
        if shard.shutting_down.get() {
            return;
        }
        if shard.open_failures.get() > 0 {
            shard.apply_metadata(shard.metadata()).await;
        }
    }
}

/// Retention and time-based rolls, off the request path.
async fn housekeeping(shard: Rc<Shard>) {
    let period = Duration::from_millis(shard.config.args.log_retention_check_interval_ms.max(10));
    loop {
        crate::runtime::sleep(period).await;
        if shard.shutting_down.get() {
            return;
        }
        let now = now_ms();
        for p in shard.partitions() {
            if let Err(e) = p.log.maybe_roll(now).await {
                warn!(topic = %p.topic, partition = p.index, error = %e, "segment roll failed");
            }
            let expired = p
                .log
                .expire_producers(now, shard.config.args.producer_id_expiration_ms);
            if expired > 0 {
                info!(topic = %p.topic, partition = p.index, producers = expired, "expired idle producer state");
            }
            match p.log.enforce_retention(now).await {
                Ok(0) => {}
                Ok(n) => {
                    info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments")
                }
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed")
                }
            }
        }
    }
}
