//! A shard's side of metrics: its snapshot for a scrape, and the reactor-stall probe.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_storage::stats::{HistogramSnapshot, COUNT_BUCKETS, LATENCY_BUCKETS_S};
use tracing::warn;

use super::Shard;
use crate::metrics::{ControlRequest, PartitionSnapshot, ShardMetrics, ShardSnapshot};

/// A timer that fires this late is logged as a "reactor stall", with its parts (see
/// `own_stall`).
pub const STALL_LOG_THRESHOLD: Duration = Duration::from_micros(500);
/// Stall probe period.
const STALL_PROBE_PERIOD: Duration = Duration::from_millis(10);
/// Idle time of every shard after which freed memory goes back to the kernel.
const IDLE_TRIM_AFTER_MS: i64 = 10_000;

/// Takes this shard's snapshot.
pub fn snapshot(shard: &Shard) -> ShardSnapshot {
    let m = &shard.metrics;
    let mut write_seconds = HistogramSnapshot::empty(LATENCY_BUCKETS_S);
    let mut fsync = HistogramSnapshot::empty(LATENCY_BUCKETS_S);
    let mut disk_read_seconds = HistogramSnapshot::empty(LATENCY_BUCKETS_S);
    let mut batches = HistogramSnapshot::empty(COUNT_BUCKETS);
    let (mut writes, mut bytes_written) = (0u64, 0u64);
    let (mut cleaner_read, mut cleaner_written) = (0u64, 0u64);
    let mut recovery_scanned = 0u64;
    let partitions = shard
        .partitions()
        .iter()
        .map(|p| {
            let log = &p.log;
            let s = log.stats();
            writes += s.writes.get();
            bytes_written += s.bytes_written.get();
            cleaner_read += s.cleaner_bytes_read.get();
            cleaner_written += s.cleaner_bytes_written.get();
            recovery_scanned += s.recovery_scanned_bytes.get();
            write_seconds.merge(&s.write_seconds.snapshot());
            fsync.merge(&s.fsync_seconds.snapshot());
            disk_read_seconds.merge(&s.disk_read_seconds.snapshot());
            batches.merge(&s.batches_per_write.snapshot());
            PartitionSnapshot {
                topic: p.topic.clone(),
                partition: p.index,
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
                high_watermark: p.high_watermark(),
                last_stable_offset: p.last_stable_offset(),
                open_transactions: log.txn_counts().0,
                size_bytes: log.size_bytes(),
                segments: log.segment_count(),
                producers: log.producer_count(),
                replication: p.replication_health(),
                cleaner: log.config().cleanup_compact.then(|| {
                    let c = log.cleanable(sluice_base::now_ms(), p.high_watermark());
                    (c.dirty_ratio(), s.cleaner_last_ms.get())
                }),
            }
        })
        .collect();
    let groups = shard
        .groups
        .summaries()
        .into_iter()
        .map(|g| (g.group, g.state, g.members, g.offsets))
        .collect();
    let transactions = shard
        .txns
        .summaries()
        .into_iter()
        .map(|t| (t.state.name(), t.start_ms))
        .collect();
    let controller = (shard.id == 0)
        .then(|| shard.shared.status())
        .flatten()
        .map(|s| crate::metrics::ControllerSnapshot {
            leader: s.quorum.leader.unwrap_or(-1),
            is_active: s.quorum.leader == Some(shard.config.args.node_id),
            term: s.quorum.term,
            commit_index: s.quorum.commit_index,
            applied_index: s.quorum.applied_index,
            registered: s.broker_epoch.is_some(),
            fenced: s.fenced,
        });
    ShardSnapshot {
        controller,
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
        isr_shrinks: m.isr_shrinks.get(),
        isr_expands: m.isr_expands.get(),
        leader_elections: m.leader_elections.get(),
        bytes_received: m.bytes_received.get(),
        bytes_sent: m.bytes_sent.get(),
        connections_open: shard.connections.get(),
        connections_accepted: m.connections_accepted.get(),
        connections_rejected: m.connections_rejected.get(),
        sasl_authentications: m.sasl_authentications.get(),
        sasl_authentication_failures: m.sasl_authentication_failures.get(),
        sasl_reauthentications: m.sasl_reauthentications.get(),
        sasl_sessions_expired: m.sasl_sessions_expired.get(),
        tls_handshake_failures: m.tls_handshake_failures.get(),
        authorization_denials: m.authorization_denials.get(),
        quota_throttles: m.quota_throttles.get(),
        quota_throttle_ms: m.quota_throttle_ms.get(),
        fetch_dropped_bytes: m.fetch_dropped_bytes.get(),
        txn_verifications: m.txn_verifications.get(),
        txn_verification_failures: m.txn_verification_failures.get(),
        mesh_sent: m.mesh_sent.get(),
        mesh_queue_depth: shard.mesh_queue_depth(),
        stall_seconds: m.stall_seconds.snapshot(),
        own_stall_seconds: m.own_stall_seconds.snapshot(),
        cpu_wait_ns: m.cpu_wait_ns.get(),
        read_budget_used: shard.read_budget_used.get(),
        read_budget: shard.config.args.shard_memory_budget_bytes,
        writes,
        bytes_written,
        cleaner_bytes_read: cleaner_read,
        cleaner_bytes_written: cleaner_written,
        recovery_scanned_bytes: recovery_scanned,
        write_seconds,
        fsync_seconds: fsync,
        disk_read_seconds,
        batches_per_write: batches,
        partitions,
        groups,
        transactions,
    }
}

/// Answers scrape requests for this shard.
pub async fn serve_control(shard: Rc<Shard>, rx: flume::Receiver<ControlRequest>) {
    while let Ok(reply) = rx.recv_async().await {
        let _ = reply.send(snapshot(&shard));
    }
}

/// Measures how late a short timer fires: time the shard spent not polling its tasks. Also
/// notes when the shard last moved bytes, and on shard 0 returns the allocator's free memory
/// to the kernel once every shard has been idle for `IDLE_TRIM_AFTER_MS` (once per idle
/// period): the broker keeps freed buffers in the heap for speed
/// (`sluice_storage::keep_large_buffers_in_heap`), which an idle broker need not hold.
pub async fn stall_probe(shard: Rc<Shard>) {
    let mut last_log = crate::runtime::now() - Duration::from_secs(60);
    let mut moved = 0u64;
    let mut trimmed_at = 0i64;
    let mut sched = SchedTimes::open();
    loop {
        let m = &shard.metrics;
        let now_moved = m.bytes_received.get() + m.bytes_sent.get() + m.mesh_sent.get();
        let now = sluice_base::now_ms();
        if now_moved != moved {
            moved = now_moved;
            shard
                .shared
                .last_active_ms
                .fetch_max(now, Ordering::Relaxed);
        }
        let last_active = shard.shared.last_active_ms.load(Ordering::Relaxed);
        if shard.id == 0 && now - last_active >= IDLE_TRIM_AFTER_MS && trimmed_at <= last_active {
            trimmed_at = now;
            crate::runtime::spawn(crate::runtime::spawn_blocking(
                sluice_storage::release_free_memory,
            ))
            .detach();
        }
        let start = crate::runtime::now();
        crate::runtime::sleep(STALL_PROBE_PERIOD).await;
        let late = start.elapsed().saturating_sub(STALL_PROBE_PERIOD);
        shard.metrics.stall_seconds.observe(late.as_secs_f64());
        let times = sched.as_mut().map(SchedTimes::advance);
        let waited_ns = times.map_or(0, |t| t.waited_ns);
        ShardMetrics::add(&shard.metrics.cpu_wait_ns, waited_ns);
        // Without schedstat the lateness cannot be split: all of it counts as the shard's.
        let own = times.map_or(late, |t| own_stall(late, t));
        shard.metrics.own_stall_seconds.observe(own.as_secs_f64());
        if late > STALL_LOG_THRESHOLD && last_log.elapsed() > Duration::from_secs(10) {
            last_log = crate::runtime::now();
            warn!(
                shard = shard.id,
                stall_us = late.as_micros() as u64,
                own_us = own.as_micros() as u64,
                cpu_wait_us = waited_ns / 1000,
                "reactor stall: tasks that did not yield took own_us of it, waiting for a CPU cpu_wait_us, the rest the thread was blocked in a system call or woke late"
            );
        }
        if shard.shutting_down.get() {
            return;
        }
    }
}

/// The calling thread's scheduler times from the kernel's `/proc/thread-self/schedstat`: time
/// on a CPU and run delay (ready to run but waiting for a CPU), both in nanoseconds. They split
/// a late timer into the shard's own work (tasks that did not yield), waiting for a CPU (other
/// threads — a client on the same machine — or too few CPUs), and the rest: off a CPU without
/// waiting for one, i.e. blocked in a system call or woken late (the host, on a virtual
/// machine). The file stays open and is read again at position 0
/// (one `pread` of a few bytes; procfs does not block).
struct SchedTimes {
    file: std::fs::File,
    last: CpuTimes,
}

/// Nanoseconds on a CPU and waiting for one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct CpuTimes {
    on_cpu_ns: u64,
    waited_ns: u64,
}

impl SchedTimes {
    /// `None` where the kernel keeps no schedstat (the CPU wait then counts as 0, and the whole
    /// lateness as the shard's own).
    fn open() -> Option<SchedTimes> {
        let file = std::fs::File::open("/proc/thread-self/schedstat").ok()?;
        let last = read_cpu_times(&file)?;
        Some(SchedTimes { file, last })
    }

    /// The times since the last call.
    fn advance(&mut self) -> CpuTimes {
        let Some(now) = read_cpu_times(&self.file) else {
            return CpuTimes::default();
        };
        let d = CpuTimes {
            on_cpu_ns: now.on_cpu_ns.saturating_sub(self.last.on_cpu_ns),
            waited_ns: now.waited_ns.saturating_sub(self.last.waited_ns),
        };
        self.last = now;
        d
    }
}

fn read_cpu_times(file: &std::fs::File) -> Option<CpuTimes> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 96];
    let n = file.read_at(&mut buf, 0).ok()?;
    parse_schedstat(buf.get(..n)?)
}

/// A schedstat line: "<on-CPU ns> <run delay ns> <timeslices>".
fn parse_schedstat(line: &[u8]) -> Option<CpuTimes> {
    let mut fields = std::str::from_utf8(line).ok()?.split_ascii_whitespace();
    Some(CpuTimes {
        on_cpu_ns: fields.next()?.parse().ok()?,
        waited_ns: fields.next()?.parse().ok()?,
    })
}

/// The part of a timer's lateness `late` that the shard's own work can explain: what is left
/// after the wait for a CPU, at most the time the thread was on one (see [`SchedTimes`]).
fn own_stall(late: Duration, t: CpuTimes) -> Duration {
    late.saturating_sub(Duration::from_nanos(t.waited_ns))
        .min(Duration::from_nanos(t.on_cpu_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_lines_parse_or_are_refused() {
        assert_eq!(
            parse_schedstat(b"169927305 584155 19\n"),
            Some(CpuTimes {
                on_cpu_ns: 169_927_305,
                waited_ns: 584_155
            })
        );
        assert_eq!(parse_schedstat(b"169927305"), None);
        assert_eq!(parse_schedstat(b"1 x 2"), None);
        assert_eq!(parse_schedstat(b"-1 2 3"), None);
        assert_eq!(parse_schedstat(b"\xff\xfe"), None);
        assert_eq!(parse_schedstat(b""), None);
    }

    #[test]
    fn a_late_timer_is_split_into_cpu_wait_own_work_and_oversleep() {
        let ms = Duration::from_millis;
        let t = |on_cpu: u64, waited: u64| CpuTimes {
            on_cpu_ns: on_cpu * 1_000_000,
            waited_ns: waited * 1_000_000,
        };
        // Busy 20 ms without yielding, no wait: all of it is the shard's.
        assert_eq!(own_stall(ms(15), t(20, 0)), ms(15));
        // Late 15 ms, 10 of them waiting for a CPU, 3 ms on one: 3 ms own, 2 ms blocked or
        // woken late.
        assert_eq!(own_stall(ms(15), t(3, 10)), ms(3));
        // Waited longer than it was late: nothing is the shard's.
        assert_eq!(own_stall(ms(5), t(8, 9)), ms(0));
    }

    #[test]
    fn this_threads_times_read_and_never_go_back() {
        // Kernels without schedstat have no file: nothing to check there.
        let Some(mut s) = SchedTimes::open() else {
            return;
        };
        let before = s.last;
        let d = s.advance();
        assert!(s.last.on_cpu_ns >= before.on_cpu_ns && s.last.waited_ns >= before.waited_ns);
        assert_eq!(s.last.on_cpu_ns - before.on_cpu_ns, d.on_cpu_ns);
    }
}
