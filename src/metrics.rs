//! Prometheus metrics and health endpoints.
//!
//! Each shard counts in its own [`ShardMetrics`] (`Cell`s: no locks, no atomics on the data
//! path). A scrape of `/metrics` on `--metrics-listen` asks every shard, over a control channel,
//! for a [`ShardSnapshot`] (plain data), merges them and renders the Prometheus text format.
//! `/live` answers 200 while the process runs; `/ready` answers 200 once every shard serves.
//! The HTTP side is a small blocking server on its own thread: one request per connection,
//! bounded request size and time.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use sluice_storage::stats::{Histogram, HistogramSnapshot, COUNT_BUCKETS, LATENCY_BUCKETS_S};
use tracing::{info, warn};

use crate::shard::Shard;

/// Scrape-time request to a shard: reply with a snapshot.
pub type ControlRequest = flume::Sender<ShardSnapshot>;

/// Longest a scrape waits for a shard's snapshot.
const SCRAPE_SHARD_WAIT: Duration = Duration::from_secs(2);
/// A timer that fires this late means the shard was blocked ("reactor stall").
pub const STALL_LOG_THRESHOLD: Duration = Duration::from_micros(500);
/// Stall probe period.
const STALL_PROBE_PERIOD: Duration = Duration::from_millis(10);

/// Counters of one shard.
pub struct ShardMetrics {
    requests: RefCell<HashMap<(i16, i16), u64>>,
    errors: RefCell<HashMap<(i16, i16), u64>>,
    queue_seconds: RefCell<HashMap<i16, Histogram>>,
    handling_seconds: RefCell<HashMap<i16, Histogram>>,
    pub bytes_received: Cell<u64>,
    pub bytes_sent: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    pub connections_rejected: Cell<u64>,
    pub mesh_sent: Cell<u64>,
    pub stall_seconds: Histogram,
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
            mesh_sent: Cell::new(0),
            stall_seconds: Histogram::new(LATENCY_BUCKETS_S),
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
    pub size_bytes: u64,
    pub segments: usize,
    pub producers: usize,
}

/// (group, state, members, [(topic, partition, committed offset)])
pub type GroupRow = (String, &'static str, usize, Vec<(String, i32, i64)>);

/// Renders one gauge per partition.
type PartitionGauge = (&'static str, &'static str, fn(&PartitionSnapshot) -> String);

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
    pub mesh_sent: u64,
    pub mesh_queue_depth: usize,
    pub stall_seconds: HistogramSnapshot,
    pub read_budget_used: usize,
    pub read_budget: usize,
    pub writes: u64,
    pub bytes_written: u64,
    pub fsync_seconds: HistogramSnapshot,
    pub batches_per_write: HistogramSnapshot,
    pub partitions: Vec<PartitionSnapshot>,
    pub groups: Vec<GroupRow>,
}

/// Takes this shard's snapshot.
pub fn snapshot(shard: &Shard) -> ShardSnapshot {
    let m = &shard.metrics;
    let mut fsync = HistogramSnapshot::empty(LATENCY_BUCKETS_S);
    let mut batches = HistogramSnapshot::empty(COUNT_BUCKETS);
    let (mut writes, mut bytes_written) = (0u64, 0u64);
    let partitions = shard
        .partitions()
        .iter()
        .map(|p| {
            let log = &p.log;
            let s = log.stats();
            writes += s.writes.get();
            bytes_written += s.bytes_written.get();
            fsync.merge(&s.fsync_seconds.snapshot());
            batches.merge(&s.batches_per_write.snapshot());
            PartitionSnapshot {
                topic: p.topic.clone(),
                partition: p.index,
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
                high_watermark: log.high_watermark(),
                size_bytes: log.size_bytes(),
                segments: log.segment_count(),
                producers: log.producer_count(),
            }
        })
        .collect();
    let groups = shard
        .groups
        .summaries()
        .into_iter()
        .map(|g| (g.group, g.state, g.members, g.offsets))
        .collect();
    ShardSnapshot {
        shard: shard.id,
        requests: m.requests.borrow().iter().map(|(k, v)| (*k, *v)).collect(),
        errors: m.errors.borrow().iter().map(|(k, v)| (*k, *v)).collect(),
        queue_seconds: m
            .queue_seconds
            .borrow()
            .iter()
            .map(|(k, h)| (*k, h.snapshot()))
            .collect(),
        handling_seconds: m
            .handling_seconds
            .borrow()
            .iter()
            .map(|(k, h)| (*k, h.snapshot()))
            .collect(),
        bytes_received: m.bytes_received.get(),
        bytes_sent: m.bytes_sent.get(),
        connections_open: shard.connections.get(),
        connections_accepted: m.connections_accepted.get(),
        connections_rejected: m.connections_rejected.get(),
        mesh_sent: m.mesh_sent.get(),
        mesh_queue_depth: shard.mesh_queue_depth(),
        stall_seconds: m.stall_seconds.snapshot(),
        read_budget_used: shard.read_budget_used.get(),
        read_budget: shard.config.args.shard_memory_budget_bytes,
        writes,
        bytes_written,
        fsync_seconds: fsync,
        batches_per_write: batches,
        partitions,
        groups,
    }
}

/// Answers scrape requests for this shard.
pub async fn serve_control(shard: Rc<Shard>, rx: flume::Receiver<ControlRequest>) {
    while let Ok(reply) = rx.recv_async().await {
        let _ = reply.send(snapshot(&shard));
    }
}

/// Measures how late a short timer fires: time the shard spent not polling its tasks.
pub async fn stall_probe(shard: Rc<Shard>) {
    let mut last_log = Instant::now() - Duration::from_secs(60);
    loop {
        let start = Instant::now();
        compio::time::sleep(STALL_PROBE_PERIOD).await;
        let late = start.elapsed().saturating_sub(STALL_PROBE_PERIOD);
        shard.metrics.stall_seconds.observe(late.as_secs_f64());
        if late > STALL_LOG_THRESHOLD && last_log.elapsed() > Duration::from_secs(10) {
            last_log = Instant::now();
            warn!(
                shard = shard.id,
                stall_us = late.as_micros() as u64,
                "reactor stall: a task ran without yielding"
            );
        }
        if shard.shutting_down.get() {
            return;
        }
    }
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |k| format!("{k:?}"))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0u64;
    for (i, c) in h.counts.iter().enumerate() {
        cumulative += c;
        let le = h
            .bounds
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |b| format!("{b}"));
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
        );
    }
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

/// Log lines (and other diagnostics) dropped because writing them failed, e.g. stderr
/// redirected to a file on a full disk. Process-wide: logging has no shard.
pub static LOG_WRITE_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Merges shard snapshots and renders the Prometheus text exposition format (0.0.4).
pub fn render(shards: &[ShardSnapshot], ready: bool) -> String {
    let mut out = String::with_capacity(16 * 1024);
    header(
        &mut out,
        "sluice_log_write_errors_total",
        "counter",
        "Log lines dropped because writing them failed (e.g. stderr on a full disk).",
    );
    let _ = writeln!(
        out,
        "sluice_log_write_errors_total {}",
        LOG_WRITE_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
    );
    header(
        &mut out,
        "sluice_up",
        "gauge",
        "1 while the broker runs; sluice_ready says whether it serves.",
    );
    let _ = writeln!(out, "sluice_up 1");
    header(
        &mut out,
        "sluice_ready",
        "gauge",
        "1 once every shard serves clients.",
    );
    let _ = writeln!(out, "sluice_ready {}", u8::from(ready));

    let mut requests: BTreeMap<(i16, i16), u64> = BTreeMap::new();
    let mut errors: BTreeMap<(i16, i16), u64> = BTreeMap::new();
    let mut queue: BTreeMap<i16, HistogramSnapshot> = BTreeMap::new();
    let mut handling: BTreeMap<i16, HistogramSnapshot> = BTreeMap::new();
    for s in shards {
        for (k, v) in &s.requests {
            *requests.entry(*k).or_default() += v;
        }
        for (k, v) in &s.errors {
            *errors.entry(*k).or_default() += v;
        }
        for (k, h) in &s.queue_seconds {
            queue
                .entry(*k)
                .or_insert_with(|| HistogramSnapshot::empty(h.bounds))
                .merge(h);
        }
        for (k, h) in &s.handling_seconds {
            handling
                .entry(*k)
                .or_insert_with(|| HistogramSnapshot::empty(h.bounds))
                .merge(h);
        }
    }
    header(
        &mut out,
        "sluice_requests_total",
        "counter",
        "Requests decoded, by API and version.",
    );
    for ((api, version), n) in &requests {
        let _ = writeln!(
            out,
            "sluice_requests_total{{api=\"{}\",version=\"{version}\"}} {n}",
            api_name(*api)
        );
    }
    header(
        &mut out,
        "sluice_request_errors_total",
        "counter",
        "Error codes returned (top level and per partition), by API and code.",
    );
    for ((api, code), n) in &errors {
        let _ = writeln!(
            out,
            "sluice_request_errors_total{{api=\"{}\",code=\"{code}\"}} {n}",
            api_name(*api)
        );
    }
    header(
        &mut out,
        "sluice_request_queue_seconds",
        "histogram",
        "Time from a request's last byte to its dispatch.",
    );
    for (api, h) in &queue {
        histogram(
            &mut out,
            "sluice_request_queue_seconds",
            &format!("api=\"{}\"", api_name(*api)),
            h,
        );
    }
    header(
        &mut out,
        "sluice_request_handling_seconds",
        "histogram",
        "Time from dispatch to the response being ready (includes acks and long-poll waits).",
    );
    for (api, h) in &handling {
        histogram(
            &mut out,
            "sluice_request_handling_seconds",
            &format!("api=\"{}\"", api_name(*api)),
            h,
        );
    }

    let per_shard = |out: &mut String,
                     name: &str,
                     kind: &str,
                     help: &str,
                     f: &dyn Fn(&ShardSnapshot) -> String| {
        header(out, name, kind, help);
        for s in shards {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, f(s));
        }
    };
    per_shard(
        &mut out,
        "sluice_received_bytes_total",
        "counter",
        "Request bytes read from clients.",
        &|s| s.bytes_received.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_sent_bytes_total",
        "counter",
        "Response bytes written to clients.",
        &|s| s.bytes_sent.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_connections_open",
        "gauge",
        "Open client connections.",
        &|s| s.connections_open.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        &|s| s.connections_accepted.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_connections_rejected_total",
        "counter",
        "Client connections closed at once by a connection limit.",
        &|s| s.connections_rejected.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_mesh_messages_sent_total",
        "counter",
        "Messages sent to other shards.",
        &|s| s.mesh_sent.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_mesh_queue_depth",
        "gauge",
        "Messages waiting in this shard's outgoing mesh queues.",
        &|s| s.mesh_queue_depth.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_shard_read_buffer_bytes",
        "gauge",
        "Bytes held for partially received large requests.",
        &|s| s.read_budget_used.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_shard_read_buffer_budget_bytes",
        "gauge",
        "Budget for partially received large requests.",
        &|s| s.read_budget.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_io_uring_writes_total",
        "counter",
        "Log writes submitted through io_uring.",
        &|s| s.writes.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_log_written_bytes_total",
        "counter",
        "Record bytes written to logs.",
        &|s| s.bytes_written.to_string(),
    );
    header(
        &mut out,
        "sluice_fsync_seconds",
        "histogram",
        "fdatasync latency of log writes.",
    );
    for s in shards {
        histogram(
            &mut out,
            "sluice_fsync_seconds",
            &format!("shard=\"{}\"", s.shard),
            &s.fsync_seconds,
        );
    }
    header(
        &mut out,
        "sluice_group_commit_batches",
        "histogram",
        "Record batches covered by one log write (group commit).",
    );
    for s in shards {
        histogram(
            &mut out,
            "sluice_group_commit_batches",
            &format!("shard=\"{}\"", s.shard),
            &s.batches_per_write,
        );
    }
    header(
        &mut out,
        "sluice_reactor_stall_seconds",
        "histogram",
        "How late a 10 ms timer fired: time a shard ran tasks without yielding.",
    );
    for s in shards {
        histogram(
            &mut out,
            "sluice_reactor_stall_seconds",
            &format!("shard=\"{}\"", s.shard),
            &s.stall_seconds,
        );
    }

    let mut parts: Vec<&PartitionSnapshot> = shards.iter().flat_map(|s| &s.partitions).collect();
    parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let gauges: [PartitionGauge; 6] = [
        (
            "sluice_partition_log_start_offset",
            "First offset still in the log.",
            |p| p.log_start_offset.to_string(),
        ),
        (
            "sluice_partition_log_end_offset",
            "Next offset to be assigned.",
            |p| p.log_end_offset.to_string(),
        ),
        (
            "sluice_partition_high_watermark",
            "First offset not yet readable by consumers.",
            |p| p.high_watermark.to_string(),
        ),
        (
            "sluice_partition_size_bytes",
            "Bytes in the partition's segments.",
            |p| p.size_bytes.to_string(),
        ),
        (
            "sluice_partition_segments",
            "Segments of the partition.",
            |p| p.segments.to_string(),
        ),
        (
            "sluice_partition_producers",
            "Idempotent producers with state in the partition.",
            |p| p.producers.to_string(),
        ),
    ];
    for (name, help, f) in gauges {
        header(&mut out, name, "gauge", help);
        for p in &parts {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                escape(&p.topic),
                p.partition,
                f(p)
            );
        }
    }

    let hw: HashMap<(&str, i32), i64> = parts
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    let mut groups: Vec<_> = shards.iter().flat_map(|s| &s.groups).collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    header(
        &mut out,
        "sluice_group_members",
        "gauge",
        "Members of a consumer group.",
    );
    for (g, _, members, _) in &groups {
        let _ = writeln!(
            out,
            "sluice_group_members{{group=\"{}\"}} {members}",
            escape(g)
        );
    }
    header(
        &mut out,
        "sluice_group_state",
        "gauge",
        "1 for the group's current state.",
    );
    for (g, state, _, _) in &groups {
        let _ = writeln!(
            out,
            "sluice_group_state{{group=\"{}\",state=\"{state}\"}} 1",
            escape(g)
        );
    }
    header(
        &mut out,
        "sluice_group_committed_offset",
        "gauge",
        "Committed offset of a group for a partition.",
    );
    for (g, _, _, offsets) in &groups {
        for (t, p, o) in offsets {
            let _ = writeln!(
                out,
                "sluice_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {o}",
                escape(g),
                escape(t)
            );
        }
    }
    header(
        &mut out,
        "sluice_group_lag",
        "gauge",
        "High watermark minus committed offset.",
    );
    for (g, _, _, offsets) in &groups {
        for (t, p, o) in offsets {
            if let Some(h) = hw.get(&(t.as_str(), *p)) {
                let _ = writeln!(
                    out,
                    "sluice_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {}",
                    escape(g),
                    escape(t),
                    (h - o).max(0)
                );
            }
        }
    }
    out
}

/// Shared between the HTTP thread and `server::run`.
pub struct Endpoint {
    pub shards: Vec<flume::Sender<ControlRequest>>,
    /// Shards that finished start-up.
    pub ready_shards: AtomicUsize,
}

/// Binds `addr` and serves `/metrics`, `/ready`, `/live` on a background thread.
pub fn spawn_http(addr: SocketAddr, endpoint: Arc<Endpoint>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("sluice-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &endpoint) {
                    warn!(error = %e, "metrics request failed");
                }
            }
        })?;
    info!(listen = %bound, "metrics endpoint listening");
    Ok(bound)
}

fn answer(mut stream: TcpStream, endpoint: &Endpoint) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = [0u8; 4096];
    let mut len = 0;
    while len < req.len() && !req[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut req[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&req[..len]);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let total = endpoint.shards.len();
    let ready = endpoint.ready_shards.load(Ordering::Relaxed) >= total;
    let (status, ctype, body) = match path {
        "/live" => ("200 OK", "text/plain", "live\n".to_owned()),
        "/ready" if ready => ("200 OK", "text/plain", "ready\n".to_owned()),
        "/ready" => (
            "503 Service Unavailable",
            "text/plain",
            "starting\n".to_owned(),
        ),
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4",
            render(&collect(endpoint), ready),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

fn collect(endpoint: &Endpoint) -> Vec<ShardSnapshot> {
    let waits: Vec<flume::Receiver<ShardSnapshot>> = endpoint
        .shards
        .iter()
        .map(|tx| {
            let (reply_tx, reply_rx) = flume::bounded(1);
            let _ = tx.send_timeout(reply_tx, SCRAPE_SHARD_WAIT);
            reply_rx
        })
        .collect();
    waits
        .into_iter()
        .filter_map(|rx| rx.recv_timeout(SCRAPE_SHARD_WAIT).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_merged_counters_histograms_and_lag() {
        let mut a = ShardSnapshot {
            shard: 0,
            requests: vec![((0, 9), 3)],
            errors: vec![((0, 2), 1)],
            queue_seconds: vec![],
            handling_seconds: vec![(0, {
                let h = Histogram::new(LATENCY_BUCKETS_S);
                h.observe(0.002);
                h.snapshot()
            })],
            bytes_received: 10,
            bytes_sent: 20,
            connections_open: 1,
            connections_accepted: 2,
            connections_rejected: 0,
            mesh_sent: 0,
            mesh_queue_depth: 0,
            stall_seconds: HistogramSnapshot::empty(LATENCY_BUCKETS_S),
            read_budget_used: 0,
            read_budget: 1,
            writes: 1,
            bytes_written: 5,
            fsync_seconds: HistogramSnapshot::empty(LATENCY_BUCKETS_S),
            batches_per_write: HistogramSnapshot::empty(COUNT_BUCKETS),
            partitions: vec![PartitionSnapshot {
                topic: "t".into(),
                partition: 0,
                log_start_offset: 0,
                log_end_offset: 10,
                high_watermark: 10,
                size_bytes: 100,
                segments: 1,
                producers: 0,
            }],
            groups: vec![("g".into(), "Stable", 2, vec![("t".into(), 0, 4)])],
        };
        let mut b = a.clone();
        b.shard = 1;
        b.partitions.clear();
        b.groups.clear();
        a.requests.push(((1, 12), 1));
        let text = render(&[a, b], true);
        assert!(text.contains("sluice_requests_total{api=\"Produce\",version=\"9\"} 6"));
        assert!(text.contains("sluice_requests_total{api=\"Fetch\",version=\"12\"} 1"));
        assert!(text.contains("sluice_request_errors_total{api=\"Produce\",code=\"2\"} 2"));
        assert!(text
            .contains("sluice_request_handling_seconds_bucket{api=\"Produce\",le=\"0.0025\"} 2"));
        assert!(text.contains("sluice_request_handling_seconds_count{api=\"Produce\"} 2"));
        assert!(text.contains("sluice_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 6"));
        assert!(text.contains("sluice_partition_high_watermark{topic=\"t\",partition=\"0\"} 10"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(!series.is_empty());
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
