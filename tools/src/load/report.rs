//! The results of a run: the JSON document (shape documented in `docs/sluice-load.schema.json`),
//! the human summary, the `kafka-producer-perf-test`-style lines, the HDR percentile file and
//! the machine description.
//!
//! Units: MB = 2^20 bytes (as Kafka's perf tools print it); latencies in milliseconds with
//! microsecond resolution; durations in seconds.
//! Throughput of a side = measured messages / measured window, where the window runs from the
//! end of the warmup to the side's last event (acknowledgement or consumption).

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::cli::{Config, Mode};
use super::run::{Outcome, Run, StopReason};
use super::stats::{percentile_distribution, LatencyMs, SideStats};
use super::LoadError;

/// Bytes per MB in every MB/s figure.
pub const MB: f64 = 1024.0 * 1024.0;
/// Version of the JSON document's shape; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: Tool,
    pub mode: Mode,
    pub config: ConfigReport,
    pub machine: Machine,
    pub results: Results,
}

#[derive(Debug, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
    pub librdkafka_version: String,
}

#[derive(Debug, Serialize)]
pub struct ConfigReport {
    #[serde(flatten)]
    pub flags: Config,
    /// Every librdkafka property the producers got (`null` when none ran).
    pub producer_client_config: Option<BTreeMap<String, String>>,
    /// Every librdkafka property the consumers got (`null` when none ran).
    pub consumer_client_config: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu_count: usize,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub hostname: Option<String>,
    pub os: &'static str,
    pub arch: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Side {
    /// Whether this side ran in this mode.
    pub ran: bool,
    pub clients: usize,
    /// Produce: acknowledged without error. Consume: consumed.
    pub messages: u64,
    /// Delivery / enqueue errors (produce) or consumer errors (consume).
    pub errors: u64,
    /// Connection-level errors librdkafka reported and retried itself (not in `errors`).
    pub client_errors: u64,
    /// Produce: messages handed to the client. Consume: equal to `messages` (plus any claimed
    /// past a `--messages` target).
    pub attempted: u64,
    pub bytes: u64,
    pub measured_messages: u64,
    pub measured_bytes: u64,
    pub duration_s: f64,
    pub throughput_msgs_per_sec: f64,
    pub throughput_mb_per_sec: f64,
    pub latency_ms: LatencyMs,
    pub error_kinds: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct TopicReport {
    pub name: String,
    pub partitions: i32,
    pub created: bool,
    /// Messages between low and high watermarks when the run started.
    pub backlog_at_start: u64,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub produced: Side,
    pub consumed: Side,
    /// Of the primary side: produced in `produce` mode, consumed otherwise.
    pub throughput_msgs_per_sec: f64,
    pub throughput_mb_per_sec: f64,
    /// Of the primary side.
    pub latency_ms: LatencyMs,
    /// `produce_ack` (acknowledged − intended send) or `end_to_end` (consumed − sent stamp).
    pub latency_kind: &'static str,
    /// Measured window of the primary side.
    pub duration_s: f64,
    pub warmup_s: f64,
    pub wall_time_s: f64,
    pub started_at_unix_s: f64,
    pub stop_reason: Option<StopReason>,
    /// produced.errors + consumed.errors.
    pub errors: u64,
    /// e2e: acknowledged but not consumed (`null` in other modes).
    pub missing: Option<u64>,
    pub drain_timed_out: bool,
    pub stale_skipped: u64,
    pub queue_full_waits: u64,
    pub schedule_lag_unsent: u64,
    pub topic: TopicReport,
    /// Everything `--fail-on-error` fails on; empty on a clean run.
    pub problems: Vec<String>,
}

/// Reads the machine description from /proc (fields are `null` where unreadable).
pub fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let cpu_model = read("/proc/cpuinfo").and_then(|s| field(&s, "model name"));
    let memory_total_bytes = read("/proc/meminfo")
        .and_then(|s| field(&s, "MemTotal"))
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024);
    Machine {
        cpu_count: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model,
        kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
        memory_total_bytes,
        hostname: read("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
    }
}

/// The value of the first `name : value` line.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

/// From the end of the warmup to the last acknowledgement / consumption: messages still being
/// acknowledged or drained after `--duration` ended took that long, so they stretch the window.
fn window_s(run: &Run, stats: &SideStats) -> f64 {
    let last = SideStats::get(&stats.last_event_ns);
    last.saturating_sub(run.warmup_ns) as f64 / 1e9
}

fn side(run: &Run, stats: &SideStats, ran: bool, clients: usize) -> (Side, Histogram<u64>) {
    let histogram = stats.measured_histogram();
    let duration_s = window_s(run, stats);
    let measured_messages = SideStats::get(&stats.measured_messages);
    let measured_bytes = SideStats::get(&stats.measured_bytes);
    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    let s = Side {
        ran,
        clients: if ran { clients } else { 0 },
        messages: SideStats::get(&stats.messages),
        errors: SideStats::get(&stats.errors),
        client_errors: SideStats::get(&stats.client_errors),
        attempted: SideStats::get(&stats.attempted),
        bytes: SideStats::get(&stats.bytes),
        measured_messages,
        measured_bytes,
        duration_s,
        throughput_msgs_per_sec: per_s(measured_messages as f64),
        throughput_mb_per_sec: per_s(measured_bytes as f64 / MB),
        latency_ms: LatencyMs::from_histogram(&histogram),
        error_kinds: stats.error_kinds(),
    };
    (s, histogram)
}

/// Builds the report and the primary latency histogram (for `--hdr-file`).
pub fn build(outcome: &Outcome) -> (Report, Histogram<u64>) {
    let run = &outcome.run;
    let cfg = &run.cfg;
    let (produced, produced_hist) = side(run, &run.produced, cfg.mode.produces(), cfg.producers);
    let (consumed, consumed_hist) = side(run, &run.consumed, cfg.mode.consumes(), cfg.consumers);
    let (primary, hist, latency_kind) = match cfg.mode {
        Mode::Produce => (&produced, produced_hist, "produce_ack"),
        Mode::Consume | Mode::E2e => (&consumed, consumed_hist, "end_to_end"),
    };
    let missing =
        (cfg.mode == Mode::E2e).then(|| produced.messages.saturating_sub(consumed.messages));
    let mut results = Results {
        throughput_msgs_per_sec: primary.throughput_msgs_per_sec,
        throughput_mb_per_sec: primary.throughput_mb_per_sec,
        latency_ms: primary.latency_ms.clone(),
        latency_kind,
        duration_s: primary.duration_s,
        warmup_s: cfg.warmup_s,
        wall_time_s: outcome.wall_time_s,
        started_at_unix_s: outcome.started_at_unix_s,
        stop_reason: run.stop_reason(),
        errors: produced.errors + consumed.errors,
        missing,
        drain_timed_out: run
            .drain_timed_out
            .load(std::sync::atomic::Ordering::Relaxed),
        stale_skipped: SideStats::get(&run.stale_skipped),
        queue_full_waits: SideStats::get(&run.queue_full_waits),
        schedule_lag_unsent: SideStats::get(&run.schedule_lag_unsent),
        topic: TopicReport {
            name: cfg.topic.clone(),
            partitions: outcome.topic.partitions,
            created: outcome.topic.created,
            backlog_at_start: outcome.topic.backlog(),
        },
        problems: Vec::new(),
        produced,
        consumed,
    };
    results.problems = problems(cfg, &results);
    let report = Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "sluice-load",
            version: env!("CARGO_PKG_VERSION"),
            librdkafka_version: rdkafka::util::get_rdkafka_version().1,
        },
        mode: cfg.mode,
        config: ConfigReport {
            flags: cfg.clone(),
            producer_client_config: cfg.mode.produces().then(|| run.producer_properties.clone()),
            consumer_client_config: cfg.mode.consumes().then(|| run.consumer_properties.clone()),
        },
        machine: machine(),
        results,
    };
    (report, hist)
}

/// What `--fail-on-error` fails on.
pub fn problems(cfg: &Config, r: &Results) -> Vec<String> {
    let mut p = Vec::new();
    if r.produced.errors > 0 {
        p.push(format!("{} produce errors", r.produced.errors));
    }
    if r.consumed.errors > 0 {
        p.push(format!("{} consume errors", r.consumed.errors));
    }
    if let Some(missing) = r.missing.filter(|m| *m > 0) {
        p.push(format!("{missing} messages acknowledged but not consumed"));
    }
    if let Some(n) = cfg.messages {
        let interrupted = r.stop_reason == Some(StopReason::Interrupted);
        if cfg.mode == Mode::Consume && r.consumed.messages < n && !interrupted {
            p.push(format!(
                "consumed {} of the {n} messages asked for",
                r.consumed.messages
            ));
        }
    }
    if r.stop_reason == Some(StopReason::IdleTimeout) {
        p.push("consumers stopped on the idle timeout".to_string());
    }
    if r.drain_timed_out {
        p.push("e2e drain timed out".to_string());
    }
    if r.schedule_lag_unsent > 0 {
        p.push(format!(
            "{} scheduled messages never sent (producers fell behind the rate)",
            r.schedule_lag_unsent
        ));
    }
    p
}

/// `kafka-producer-perf-test`'s final line (integer-ms percentiles, as it prints them).
pub fn perf_line(side: &Side, verb: &str, latency_label: &str) -> String {
    let l = &side.latency_ms;
    format!(
        "{} records {verb}, {:.1} records/sec ({:.2} MB/sec), {:.2} ms avg {latency_label}, \
         {:.2} ms max {latency_label}, {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
        side.measured_messages,
        side.throughput_msgs_per_sec,
        side.throughput_mb_per_sec,
        l.mean,
        l.max,
        l.p50.floor() as u64,
        l.p95.floor() as u64,
        l.p99.floor() as u64,
        l.p999.floor() as u64,
    )
}

fn latency_row(l: &LatencyMs) -> String {
    format!(
        "p50 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}  mean {:.3}  (n={})",
        l.p50, l.p99, l.p999, l.p9999, l.max, l.mean, l.count
    )
}

fn side_rows(out: &mut Vec<String>, label: &str, s: &Side, latency_label: &str) {
    out.push(format!(
        "{label}: {} messages ({} measured), {} errors, {:.2} MB; {:.1} msg/s, {:.2} MB/s over {:.2} s",
        s.messages,
        s.measured_messages,
        s.errors,
        s.bytes as f64 / MB,
        s.throughput_msgs_per_sec,
        s.throughput_mb_per_sec,
        s.duration_s
    ));
    out.push(format!(
        "  {latency_label} latency ms: {}",
        latency_row(&s.latency_ms)
    ));
    for (kind, n) in &s.error_kinds {
        out.push(format!("  error x{n}: {kind}"));
    }
}

/// The human summary (stdout).
pub fn summary(report: &Report) -> String {
    let r = &report.results;
    let c = &report.config.flags;
    let mut out = Vec::new();
    out.push(format!(
        "sluice-load {}: topic {} ({} partitions) at {}, {:.2} s measured after {:.2} s warmup, stopped: {}",
        c.mode.name(),
        r.topic.name,
        r.topic.partitions,
        c.bootstrap,
        r.duration_s,
        r.warmup_s,
        r.stop_reason.map_or("completed", StopReason::name),
    ));
    if r.produced.ran {
        side_rows(
            &mut out,
            "produced",
            &r.produced,
            "ack (from intended send)",
        );
    }
    if r.consumed.ran {
        side_rows(&mut out, "consumed", &r.consumed, "end-to-end");
    }
    if let Some(missing) = r.missing {
        out.push(format!(
            "produced vs consumed: {} / {} (missing {missing})",
            r.produced.messages, r.consumed.messages
        ));
    }
    if r.produced.ran {
        out.push(perf_line(&r.produced, "sent", "latency"));
    }
    if r.consumed.ran {
        out.push(perf_line(&r.consumed, "received", "end-to-end latency"));
    }
    for p in &r.problems {
        out.push(format!("problem: {p}"));
    }
    out.join("\n")
}

pub fn write_json(path: &Path, report: &Report) -> Result<(), LoadError> {
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| LoadError::Output(format!("cannot encode JSON: {e}")))?;
    std::fs::write(path, text + "\n")
        .map_err(|e| LoadError::Output(format!("cannot write {}: {e}", path.display())))
}

pub fn write_hdr(path: &Path, histogram: &Histogram<u64>) -> Result<(), LoadError> {
    std::fs::write(path, percentile_distribution(histogram))
        .map_err(|e| LoadError::Output(format!("cannot write {}: {e}", path.display())))
}
