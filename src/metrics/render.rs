//! The Prometheus text exposition format (0.0.4) of merged shard snapshots.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use kafka_protocol::messages::ApiKey;
use sluice_storage::stats::HistogramSnapshot;
/// The transaction coordinators' ids per state, and the age of the oldest transaction under
/// way (one that has not completed).
fn render_transactions(out: &mut String, shards: &[ShardSnapshot]) {
    let mut by_state: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut oldest: Option<i64> = None;
    for (state, start_ms) in shards.iter().flat_map(|s| &s.transactions) {
        *by_state.entry(state).or_default() += 1;
        if matches!(*state, "Ongoing" | "PrepareCommit" | "PrepareAbort") && *start_ms >= 0 {
            oldest = Some(oldest.map_or(*start_ms, |o| o.min(*start_ms)));
        }
    }
    header(
        out,
        "sluice_transactional_ids",
        "gauge",
        "Transactional ids this broker coordinates, per transaction state.",
    );
    for (state, n) in by_state {
        let _ = writeln!(out, "sluice_transactional_ids{{state=\"{state}\"}} {n}");
    }
    header(
        out,
        "sluice_transaction_oldest_open_age_seconds",
        "gauge",
        "Age of the oldest transaction not yet completed (0: none).",
    );
    let age = oldest.map_or(0.0, |start| {
        (sluice_base::now_ms() - start).max(0) as f64 / 1000.0
    });
    let _ = writeln!(out, "sluice_transaction_oldest_open_age_seconds {age:.3}");
}

#[cfg(test)]
use sluice_storage::stats::{Histogram, COUNT_BUCKETS, LATENCY_BUCKETS_S};

use super::{PartitionGauge, PartitionSnapshot, ShardSnapshot, LOG_WRITE_ERRORS};

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
        "sluice_sasl_authentications_total",
        "counter",
        "SASL exchanges that authenticated a connection.",
        &|s| s.sasl_authentications.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_sasl_authentication_failures_total",
        "counter",
        "SASL exchanges refused: unsupported mechanism, malformed message or invalid credentials.",
        &|s| s.sasl_authentication_failures.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_sasl_reauthentications_total",
        "counter",
        "SASL logins that renewed a session on its connection (KIP-368), counted in sluice_sasl_authentications_total too.",
        &|s| s.sasl_reauthentications.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_sasl_sessions_expired_total",
        "counter",
        "Connections closed because their SASL session expired without a re-authentication (connections.max.reauth.ms).",
        &|s| s.sasl_sessions_expired.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed (bad certificate, protocol error) or did not finish in time.",
        &|s| s.tls_handshake_failures.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_authorization_denials_total",
        "counter",
        "Operations on resources the ACLs denied (--authorizer standard).",
        &|s| s.authorization_denials.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_quota_throttles_total",
        "counter",
        "Responses that throttled a client over its quota (producer_byte_rate, consumer_byte_rate, request_percentage).",
        &|s| s.quota_throttles.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_quota_throttle_seconds_total",
        "counter",
        "Time clients over their quota were told to wait.",
        &|s| format!("{}", s.quota_throttle_ms as f64 / 1000.0),
    );
    per_shard(
        &mut out,
        "sluice_fetch_dropped_bytes_total",
        "counter",
        "Bytes read for a Fetch that did not fit its response (read again by the next one).",
        &|s| s.fetch_dropped_bytes.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_txn_verifications_total",
        "counter",
        "Transactional batches whose partition was checked with the transaction coordinator before the batch opened a transaction there (KIP-890).",
        &|s| s.txn_verifications.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_txn_verification_failures_total",
        "counter",
        "Transactional batches refused because their partition was not in the producer's transaction, or the transaction ended after the check.",
        &|s| s.txn_verification_failures.to_string(),
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
    per_shard(
        &mut out,
        "sluice_log_cleaner_read_bytes_total",
        "counter",
        "Bytes the log cleaner read from compacted partitions.",
        &|s| s.cleaner_bytes_read.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_log_cleaner_written_bytes_total",
        "counter",
        "Bytes the log cleaner wrote (cleaned segments).",
        &|s| s.cleaner_bytes_written.to_string(),
    );
    per_shard(
        &mut out,
        "sluice_log_recovery_scanned_bytes",
        "gauge",
        "Segment bytes the recovery scans read and checked when the shard's partitions opened (after a crash: what the recovery point and boot checkpoints did not cover).",
        &|s| s.recovery_scanned_bytes.to_string(),
    );
    type Of = fn(&ShardSnapshot) -> &HistogramSnapshot;
    let latencies: [(&str, &str, Of); 5] = [
        (
            "sluice_log_write_seconds",
            "Log data writes, from their submission until the writer saw them finish (it builds the next buffer meanwhile).",
            |s| &s.write_seconds,
        ),
        (
            "sluice_fsync_seconds",
            "fdatasync latency of log writes.",
            |s| &s.fsync_seconds,
        ),
        (
            "sluice_log_disk_read_seconds",
            "Log reads the tail cache did not hold: the disk read, or the wait for the chunk read ahead for it.",
            |s| &s.disk_read_seconds,
        ),
        (
            "sluice_reactor_stall_seconds",
            "How late a 10 ms timer fired: the shard ran tasks without yielding (sluice_reactor_own_stall_seconds), waited for a CPU (sluice_reactor_cpu_wait_seconds_total), was blocked in a system call or woke late.",
            |s| &s.stall_seconds,
        ),
        (
            "sluice_reactor_own_stall_seconds",
            "How late a 10 ms timer fired less the time the shard's thread waited for a CPU meanwhile, at most its time on a CPU: what tasks that did not yield cost (all of the lateness without the kernel's schedstat).",
            |s| &s.own_stall_seconds,
        ),
    ];
    for (name, help, of) in latencies {
        header(&mut out, name, "histogram", help);
        for s in shards {
            histogram(&mut out, name, &format!("shard=\"{}\"", s.shard), of(s));
        }
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
    per_shard(
        &mut out,
        "sluice_reactor_cpu_wait_seconds_total",
        "counter",
        "Time a shard's thread was ready to run but waited for a CPU (the kernel's schedstat run delay; 0 without schedstat).",
        &|s| format!("{:.6}", s.cpu_wait_ns as f64 / 1e9),
    );

    let mut parts: Vec<&PartitionSnapshot> = shards.iter().flat_map(|s| &s.partitions).collect();
    parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let gauges: [PartitionGauge; 8] = [
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
        (
            "sluice_partition_last_stable_offset_lag",
            "High watermark minus last stable offset: what read_committed consumers wait for.",
            |p| (p.high_watermark - p.last_stable_offset).max(0).to_string(),
        ),
        (
            "sluice_partition_open_transactions",
            "Producers with a transaction open in the partition.",
            |p| p.open_transactions.to_string(),
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

    type CleanerGauge = (&'static str, &'static str, fn(f64, i64) -> String);
    let cleaner: [CleanerGauge; 2] = [
        (
            "sluice_partition_dirty_ratio",
            "Compacted partitions: dirty bytes over cleanable bytes (cleaned at min.cleanable.dirty.ratio).",
            |ratio, _| format!("{ratio:.4}"),
        ),
        (
            "sluice_partition_last_clean_timestamp_seconds",
            "Compacted partitions: when the cleaner last finished with it (0: not since start-up).",
            |_, ms| format!("{:.3}", ms as f64 / 1000.0),
        ),
    ];
    for (name, help, f) in cleaner {
        header(&mut out, name, "gauge", help);
        for p in &parts {
            if let Some((ratio, ms)) = p.cleaner {
                let _ = writeln!(
                    out,
                    "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                    escape(&p.topic),
                    p.partition,
                    f(ratio, ms)
                );
            }
        }
    }

    header(
        &mut out,
        "sluice_partition_replica_lag_max",
        "gauge",
        "Offsets the slowest follower is behind, for partitions this broker leads in a cluster.",
    );
    for p in &parts {
        if let Some((_, _, lag)) = p.replication {
            let _ = writeln!(
                out,
                "sluice_partition_replica_lag_max{{topic=\"{}\",partition=\"{}\"}} {lag}",
                escape(&p.topic),
                p.partition
            );
        }
    }
    let led = || parts.iter().filter_map(|p| p.replication);
    let replication: [(&str, &str, &str, u64); 5] = [
        (
            "sluice_under_replicated_partitions",
            "gauge",
            "Partitions this broker leads whose ISR is smaller than their replica set.",
            led().filter(|r| r.0).count() as u64,
        ),
        (
            "sluice_under_min_isr_partitions",
            "gauge",
            "Partitions this broker leads whose ISR is below min.insync.replicas (acks=all refused).",
            led().filter(|r| r.1).count() as u64,
        ),
        (
            "sluice_isr_shrinks_total",
            "counter",
            "ISR shrinks this broker asked the controller for, as a partition leader.",
            shards.iter().map(|s| s.isr_shrinks).sum(),
        ),
        (
            "sluice_isr_expands_total",
            "counter",
            "ISR expansions this broker asked the controller for, as a partition leader.",
            shards.iter().map(|s| s.isr_expands).sum(),
        ),
        (
            "sluice_leader_elections_total",
            "counter",
            "Times a replica on this broker became its partition's leader.",
            shards.iter().map(|s| s.leader_elections).sum(),
        ),
    ];
    for (name, kind, help, value) in replication {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
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
    render_transactions(&mut out, shards);
    if let Some(c) = shards.iter().find_map(|s| s.controller.as_ref()) {
        render_controller(&mut out, c);
    }
    out
}

fn render_controller(out: &mut String, c: &super::ControllerSnapshot) {
    let gauges: [(&str, &str, i64); 8] = [
        (
            "sluice_controller_leader",
            "Node id of the active controller (-1: none known).",
            i64::from(c.leader),
        ),
        (
            "sluice_controller_active",
            "1 while this node is the active controller.",
            i64::from(c.is_active),
        ),
        (
            "sluice_controller_term",
            "Raft term of the controller quorum.",
            c.term as i64,
        ),
        (
            "sluice_controller_commit_index",
            "Raft log index committed by the quorum, as this node knows it.",
            c.commit_index as i64,
        ),
        (
            "sluice_controller_applied_index",
            "Raft log index applied to this node's metadata image.",
            c.applied_index as i64,
        ),
        (
            "sluice_controller_apply_lag",
            "Committed entries not yet applied here.",
            c.commit_index.saturating_sub(c.applied_index) as i64,
        ),
        (
            "sluice_broker_registered",
            "1 once this broker registered with the active controller.",
            i64::from(c.registered),
        ),
        (
            "sluice_broker_fenced",
            "1 while this broker is fenced (not serving partitions as leader).",
            i64::from(c.fenced),
        ),
    ];
    for (name, help, value) in gauges {
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
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
            sasl_authentications: 0,
            sasl_authentication_failures: 0,
            sasl_reauthentications: 0,
            sasl_sessions_expired: 0,
            tls_handshake_failures: 0,
            authorization_denials: 0,
            quota_throttles: 0,
            quota_throttle_ms: 0,
            fetch_dropped_bytes: 0,
            txn_verifications: 0,
            txn_verification_failures: 0,
            mesh_sent: 0,
            mesh_queue_depth: 0,
            stall_seconds: HistogramSnapshot::empty(LATENCY_BUCKETS_S),
            own_stall_seconds: HistogramSnapshot::empty(LATENCY_BUCKETS_S),
            cpu_wait_ns: 2_500_000,
            read_budget_used: 0,
            read_budget: 1,
            writes: 1,
            bytes_written: 5,
            cleaner_bytes_read: 40,
            cleaner_bytes_written: 30,
            recovery_scanned_bytes: 7,
            write_seconds: HistogramSnapshot::empty(LATENCY_BUCKETS_S),
            fsync_seconds: HistogramSnapshot::empty(LATENCY_BUCKETS_S),
            disk_read_seconds: HistogramSnapshot::empty(LATENCY_BUCKETS_S),
            batches_per_write: HistogramSnapshot::empty(COUNT_BUCKETS),
            partitions: vec![PartitionSnapshot {
                topic: "t".into(),
                partition: 0,
                log_start_offset: 0,
                log_end_offset: 10,
                high_watermark: 10,
                last_stable_offset: 7,
                open_transactions: 1,
                size_bytes: 100,
                segments: 1,
                producers: 0,
                replication: Some((true, false, 7)),
                cleaner: Some((0.25, 1_500)),
            }],
            isr_shrinks: 2,
            isr_expands: 1,
            leader_elections: 3,
            groups: vec![("g".into(), "Stable", 2, vec![("t".into(), 0, 4)])],
            transactions: vec![("Ongoing", 1_000), ("CompleteCommit", -1)],
            controller: None,
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
        assert!(
            text.contains("sluice_partition_last_stable_offset_lag{topic=\"t\",partition=\"0\"} 3")
        );
        assert!(text.contains("sluice_partition_open_transactions{topic=\"t\",partition=\"0\"} 1"));
        assert!(text.contains("sluice_transactional_ids{state=\"Ongoing\"} 2"));
        assert!(text.contains("sluice_reactor_cpu_wait_seconds_total{shard=\"0\"} 0.002500"));
        assert!(text.contains("sluice_transactional_ids{state=\"CompleteCommit\"} 2"));
        assert!(text.contains("sluice_partition_replica_lag_max{topic=\"t\",partition=\"0\"} 7"));
        assert!(text.contains("sluice_partition_dirty_ratio{topic=\"t\",partition=\"0\"} 0.2500"));
        assert!(text.contains(
            "sluice_partition_last_clean_timestamp_seconds{topic=\"t\",partition=\"0\"} 1.500"
        ));
        assert!(text.contains("sluice_log_cleaner_read_bytes_total{shard=\"0\"} 40"));
        assert!(text.contains("sluice_under_replicated_partitions 1"));
        assert!(text.contains("sluice_under_min_isr_partitions 0"));
        assert!(
            text.contains("sluice_isr_shrinks_total 4"),
            "summed over shards"
        );
        assert!(text.contains("sluice_leader_elections_total 6"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(!series.is_empty());
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
