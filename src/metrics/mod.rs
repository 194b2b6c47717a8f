//! Prometheus metrics and health endpoints.
//!
//! Each shard counts in its own [`ShardMetrics`] (`Cell`s: no locks, no atomics on the data
//! path). A scrape of `/metrics` on `--metrics-listen` asks every shard, over a control channel,
//! for a [`ShardSnapshot`] (plain data; taken by `crate::shard::stats`), merges them and renders
//! the Prometheus text format ([`render`]). `/live` answers 200 while the process runs; `/ready`
//! answers 200 once every shard serves. The HTTP side ([`http`]) is a small blocking server on
//! its own thread: one request per connection, bounded request size and time.
//!
//! Must not touch: shards (this module only holds counters and renders plain data).

pub mod http;
pub mod render;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use sluice_storage::stats::{Histogram, HistogramSnapshot, LATENCY_BUCKETS_S};

pub use http::{spawn_http, Endpoint};
pub use render::render;

/// Scrape-time request to a shard: reply with a snapshot.
pub type ControlRequest = flume::Sender<ShardSnapshot>;

/// Counters of one shard.
pub struct ShardMetrics {
    pub(crate) requests: RefCell<HashMap<(i16, i16), u64>>,
    pub(crate) errors: RefCell<HashMap<(i16, i16), u64>>,
    pub(crate) queue_seconds: RefCell<HashMap<i16, Histogram>>,
    pub(crate) handling_seconds: RefCell<HashMap<i16, Histogram>>,
    pub bytes_received: Cell<u64>,
    pub bytes_sent: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    pub connections_rejected: Cell<u64>,
    /// SASL exchanges that authenticated, and those refused (bad mechanism, message or
    /// credentials).
    pub sasl_authentications: Cell<u64>,
    pub sasl_authentication_failures: Cell<u64>,
    /// Logins that renewed a session on its connection (KIP-368), counted in
    /// `sasl_authentications` too.
    pub sasl_reauthentications: Cell<u64>,
    /// Connections closed because their SASL session expired (KIP-368) without a new login.
    pub sasl_sessions_expired: Cell<u64>,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: Cell<u64>,
    /// Requests (or parts of them) the ACLs denied.
    pub authorization_denials: Cell<u64>,
    /// Responses that throttled a client over its quota, and the milliseconds they asked for.
    pub quota_throttles: Cell<u64>,
    pub quota_throttle_ms: Cell<u64>,
    /// Bytes read for a Fetch that its response could not carry (see the fetch handler).
    pub fetch_dropped_bytes: Cell<u64>,
    /// KIP-890 part 1: transactional batches checked with their coordinator before opening a
    /// transaction in a partition, and batches refused (not in the transaction, or the
    /// transaction ended since the check).
    pub txn_verifications: Cell<u64>,
    pub txn_verification_failures: Cell<u64>,
    pub mesh_sent: Cell<u64>,
    pub stall_seconds: Histogram,
    /// Each timer's lateness less the CPU wait meanwhile, at most the time on a CPU (see
    /// `stats::own_stall`).
    pub own_stall_seconds: Histogram,
    /// Time the shard's thread was ready to run but waited for a CPU, in nanoseconds (the
    /// kernel's schedstat run delay, read by the stall probe).
    pub cpu_wait_ns: Cell<u64>,
    /// ISR changes this broker asked for as a partition leader.
    pub isr_shrinks: Cell<u64>,
    pub isr_expands: Cell<u64>,
    /// Times a replica here became its partition's leader.
    pub leader_elections: Cell<u64>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            requests: RefCell::new(HashMap::new()),
            errors: RefCell::new(HashMap::new()),
            queue_seconds: RefCell::new(HashMap::new()),
            handling_seconds: RefCell::new(HashMap::new()),
            bytes_received: Cell::new(0),
            bytes_sent: Cell::new(0),
            connections_accepted: Cell::new(0),
            connections_rejected: Cell::new(0),
            sasl_authentications: Cell::new(0),
            sasl_authentication_failures: Cell::new(0),
            sasl_reauthentications: Cell::new(0),
            sasl_sessions_expired: Cell::new(0),
            tls_handshake_failures: Cell::new(0),
            authorization_denials: Cell::new(0),
            quota_throttles: Cell::new(0),
            quota_throttle_ms: Cell::new(0),
            fetch_dropped_bytes: Cell::new(0),
            txn_verifications: Cell::new(0),
            txn_verification_failures: Cell::new(0),
            mesh_sent: Cell::new(0),
            stall_seconds: Histogram::new(LATENCY_BUCKETS_S),
            own_stall_seconds: Histogram::new(LATENCY_BUCKETS_S),
            cpu_wait_ns: Cell::new(0),
            isr_shrinks: Cell::new(0),
            isr_expands: Cell::new(0),
            leader_elections: Cell::new(0),
        }
    }
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl ShardMetrics {
    pub fn add(c: &Cell<u64>, n: u64) {
        add(c, n)
    }

    /// A request was decoded: counts it and records its queue time (frame complete → dispatch).
    pub fn request(&self, api: ApiKey, version: i16, queued: Duration) {
        *self
            .requests
            .borrow_mut()
            .entry((api as i16, version))
            .or_default() += 1;
        self.queue_seconds
            .borrow_mut()
            .entry(api as i16)
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS_S))
            .observe(queued.as_secs_f64());
    }

    /// A request was answered after `handling` (dispatch → response ready).
    pub fn handled(&self, api: ApiKey, handling: Duration) {
        self.handling_seconds
            .borrow_mut()
            .entry(api as i16)
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS_S))
            .observe(handling.as_secs_f64());
    }

    /// An error code returned for `api` (top level or per partition).
    pub fn error(&self, api: ApiKey, code: i16) {
        if code != 0 {
            *self
                .errors
                .borrow_mut()
                .entry((api as i16, code))
                .or_default() += 1;
        }
    }
}

/// One partition as metrics see it.
#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    /// The last stable offset (read_committed consumers read below it).
    pub last_stable_offset: i64,
    /// Producers with a transaction open in the partition.
    pub open_transactions: usize,
    pub size_bytes: u64,
    pub segments: usize,
    pub producers: usize,
    /// As its leader in a cluster: (under-replicated, under min ISR, largest follower lag).
    pub replication: Option<(bool, bool, i64)>,
    /// Compacted partitions: (dirty ratio, when the last clean finished in ms, 0: never).
    pub cleaner: Option<(f64, i64)>,
}

/// (group, state, members, [(topic, partition, committed offset)])
pub type GroupRow = (String, &'static str, usize, Vec<(String, i32, i64)>);

/// Renders one gauge per partition.
type PartitionGauge = (&'static str, &'static str, fn(&PartitionSnapshot) -> String);

/// The controller quorum and this broker's registration as shard 0 sees them (cluster mode).
#[derive(Debug, Clone, Default)]
pub struct ControllerSnapshot {
    /// The active controller's node id (-1: none known).
    pub leader: i32,
    pub is_active: bool,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub registered: bool,
    pub fenced: bool,
}

/// Everything one shard reports; `Send`, merged on scrape.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub requests: Vec<((i16, i16), u64)>,
    pub errors: Vec<((i16, i16), u64)>,
    pub queue_seconds: Vec<(i16, HistogramSnapshot)>,
    pub handling_seconds: Vec<(i16, HistogramSnapshot)>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub connections_open: usize,
    pub connections_accepted: u64,
    pub connections_rejected: u64,
    pub sasl_authentications: u64,
    pub sasl_authentication_failures: u64,
    pub sasl_reauthentications: u64,
    pub sasl_sessions_expired: u64,
    pub tls_handshake_failures: u64,
    pub authorization_denials: u64,
    pub quota_throttles: u64,
    pub quota_throttle_ms: u64,
    pub fetch_dropped_bytes: u64,
    pub txn_verifications: u64,
    pub txn_verification_failures: u64,
    pub mesh_sent: u64,
    pub mesh_queue_depth: usize,
    pub stall_seconds: HistogramSnapshot,
    pub own_stall_seconds: HistogramSnapshot,
    pub cpu_wait_ns: u64,
    pub read_budget_used: usize,
    pub read_budget: usize,
    pub writes: u64,
    pub bytes_written: u64,
    /// The log cleaner's reads and writes (compacted partitions).
    pub cleaner_bytes_read: u64,
    pub cleaner_bytes_written: u64,
    /// Segment bytes the recovery scans read when the shard's partitions opened.
    pub recovery_scanned_bytes: u64,
    pub write_seconds: HistogramSnapshot,
    pub fsync_seconds: HistogramSnapshot,
    pub disk_read_seconds: HistogramSnapshot,
    pub batches_per_write: HistogramSnapshot,
    pub partitions: Vec<PartitionSnapshot>,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub leader_elections: u64,
    pub groups: Vec<GroupRow>,
    /// The transaction coordinator's transactional ids: (state name, start ms; -1: none).
    pub transactions: Vec<(&'static str, i64)>,
    /// Shard 0 of a cluster node.
    pub controller: Option<ControllerSnapshot>,
}

/// Log lines (and other diagnostics) dropped because writing them failed, e.g. stderr
/// redirected to a file on a full disk. Process-wide: logging has no shard.
pub static LOG_WRITE_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
