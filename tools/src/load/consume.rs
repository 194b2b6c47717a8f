//! Consumer clients: one librdkafka `BaseConsumer` per `--consumers`, each polled by its own
//! thread.
//!
//! Partitions: with `--group` the group protocol assigns them; otherwise consumer `i` is
//! assigned every partition `p` with `p mod consumers == i`, starting at the end offsets read at
//! start (or at the beginning with `--from-beginning`), so e2e consumes exactly what this run
//! produces.
//! Latency = receive time − the send-time stamp in the payload (`payload.rs`), falling back to
//! the record timestamp (ms) when the payload carries no plausible stamp.
//! Stops: `--messages` (a shared claim counter keeps the count exact over all consumers),
//! caught up with the end offsets seen at start (`--from-beginning`: offset or partition EOF),
//! `--duration` (consume mode), all produced messages consumed (e2e), idle timeout, stop flag.
//! Every consumer error is counted once; partition EOF is an event, not an error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

use super::cli::Mode;
use super::kafka::{client_config, TopicState};
use super::payload::read_stamp;
use super::run::{Run, StopReason};
use super::stats::Recorder;
use super::LoadError;

/// Longest single poll, so stop conditions are checked at least this often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// A payload stamp further than this ahead of the local clock is not a stamp.
const STAMP_FUTURE_TOLERANCE_NS: u64 = 60_000_000_000;

/// Callback state of one consumer.
pub struct ConsumerCtx {
    run: Arc<Run>,
    /// e2e with `--group`: where assigned partitions start (end offsets seen at start, by
    /// partition id), so the group reads exactly what this run produces — not committed offsets
    /// of an earlier run, and not "latest" resolved after the first messages arrived.
    start_offsets: Option<Vec<i64>>,
}

impl ClientContext for ConsumerCtx {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _log_message: &str) {}

    fn error(&self, error: KafkaError, reason: &str) {
        // With enable.partition.eof librdkafka may also announce end-of-partition here; it is
        // an event (handled in the poll loop), not an error.
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            return;
        }
        self.run
            .consumed
            .client_error(&format!("{error}: {reason}"));
    }
}

impl ConsumerContext for ConsumerCtx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assigning = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assigning {
            if let Some(starts) = &self.start_offsets {
                set_start_offsets(tpl, starts);
            }
        }
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match (assigning, cooperative) {
            (true, false) => consumer.assign(tpl),
            (true, true) => consumer.incremental_assign(tpl),
            (false, false) => consumer.unassign(),
            (false, true) => consumer.incremental_unassign(tpl),
        };
        if let Err(e) = result {
            self.run.consumed.error(&format!("rebalance: {e}"));
        }
    }
}

/// Sets each element of `tpl` to start at `starts[partition]`.
fn set_start_offsets(tpl: &mut TopicPartitionList, starts: &[i64]) {
    let targets: Vec<(String, i32, i64)> = tpl
        .elements()
        .iter()
        .filter_map(|e| {
            let start = usize::try_from(e.partition())
                .ok()
                .and_then(|p| starts.get(p))?;
            Some((e.topic().to_string(), e.partition(), *start))
        })
        .collect();
    for (topic, partition, start) in targets {
        // Only fails for a partition missing from the list, which cannot happen here.
        let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(start));
    }
}

pub type LoadConsumer = BaseConsumer<ConsumerCtx>;

/// `--from-beginning` progress: which partitions reached the end offsets seen at start.
pub struct CatchUp {
    target: Vec<i64>,
    done: Vec<AtomicBool>,
    remaining: AtomicUsize,
}

impl CatchUp {
    pub fn new(topic: &TopicState) -> CatchUp {
        let done: Vec<AtomicBool> = topic
            .watermarks
            .iter()
            .map(|(lo, hi)| AtomicBool::new(hi <= lo))
            .collect();
        let remaining = done.iter().filter(|d| !d.load(Ordering::Relaxed)).count();
        CatchUp {
            target: topic.watermarks.iter().map(|(_, hi)| *hi).collect(),
            done,
            remaining: AtomicUsize::new(remaining),
        }
    }

    pub fn complete(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// Marks `partition` done; true when that completed the catch-up.
    pub fn mark(&self, partition: i32) -> bool {
        let Some(flag) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.done.get(p))
        else {
            return false;
        };
        if flag.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Notes that `offset` of `partition` was consumed; true when that completed the catch-up.
    pub fn consumed(&self, partition: i32, offset: i64) -> bool {
        let reached = usize::try_from(partition)
            .ok()
            .and_then(|p| self.target.get(p))
            .is_some_and(|target| offset + 1 >= *target);
        reached && self.mark(partition)
    }
}

/// Creates the consumer clients and gives them their partitions or subscription.
pub fn create(run: &Arc<Run>, topic: &TopicState) -> Result<Vec<LoadConsumer>, LoadError> {
    let config = client_config(&run.consumer_properties);
    let count = run.cfg.consumers;
    let mut consumers = Vec::with_capacity(count);
    for index in 0..count {
        let ctx = ConsumerCtx {
            run: Arc::clone(run),
            start_offsets: (run.cfg.mode == Mode::E2e && run.cfg.group.is_some())
                .then(|| topic.watermarks.iter().map(|(_, high)| *high).collect()),
        };
        let consumer: LoadConsumer = config
            .create_with_context(ctx)
            .map_err(|e| LoadError::Client(format!("cannot create consumer: {e}")))?;
        if run.cfg.group.is_some() {
            consumer
                .subscribe(&[&run.cfg.topic])
                .map_err(|e| LoadError::Client(format!("cannot subscribe: {e}")))?;
        } else {
            let assignment =
                assignment(&run.cfg.topic, topic, run.cfg.from_beginning, count, index)
                    .map_err(|e| LoadError::Client(format!("cannot build assignment: {e}")))?;
            consumer
                .assign(&assignment)
                .map_err(|e| LoadError::Client(format!("cannot assign partitions: {e}")))?;
        }
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// Consumer `index`'s partitions: `p mod count == index`.
fn assignment(
    topic_name: &str,
    topic: &TopicState,
    from_beginning: bool,
    count: usize,
    index: usize,
) -> Result<TopicPartitionList, KafkaError> {
    let mut list = TopicPartitionList::new();
    for (p, (_, high)) in topic.watermarks.iter().enumerate() {
        if p % count != index {
            continue;
        }
        let offset = if from_beginning {
            Offset::Beginning
        } else {
            Offset::Offset(*high)
        };
        list.add_partition_offset(topic_name, p as i32, offset)?;
    }
    Ok(list)
}

/// e2e with `--group`: polls every consumer until the group has handed out all partitions, so
/// producers do not start before anyone listens. Messages seen meanwhile predate the run and are
/// dropped. Bounded by `timeout`; false when it expired.
pub fn await_group_assignment(
    consumers: &[LoadConsumer],
    partitions: i32,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut assigned = 0;
        for c in consumers {
            let _ = c.poll(Duration::from_millis(50));
            assigned += c.assignment().map_or(0, |a| a.count());
        }
        if assigned >= partitions as usize {
            return true;
        }
    }
    false
}

/// The poll loop of one consumer.
pub fn drive(run: Arc<Run>, consumer: LoadConsumer, catch_up: Option<Arc<CatchUp>>) {
    let recorder = run.consumed.new_recorder();
    // e2e is bounded by the producers and the drain timeout instead.
    let idle_bound =
        run.cfg.mode == Mode::Consume && (run.cfg.messages.is_some() || catch_up.is_some());
    let idle_timeout_ns = (run.cfg.idle_timeout_s * 1e9) as u64;
    let mut last_progress_ns = run.now_ns();
    loop {
        if run.stopping() {
            break;
        }
        let now_ns = run.now_ns();
        if run.cfg.mode == Mode::Consume && run.end_ns.is_some_and(|end| now_ns >= end) {
            run.request_stop(StopReason::Duration);
            break;
        }
        if run.e2e_all_consumed() {
            run.request_stop(StopReason::AllConsumed);
            break;
        }
        if idle_bound && now_ns.saturating_sub(last_progress_ns) > idle_timeout_ns {
            run.request_stop(StopReason::IdleTimeout);
            break;
        }
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition)))
                if catch_up.as_ref().is_some_and(|c| c.mark(partition)) =>
            {
                run.request_stop(StopReason::CaughtUp);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => run.consumed.error(&error.to_string()),
            Some(Ok(message)) => {
                last_progress_ns = run.now_ns();
                match on_message(&run, &recorder, &message, catch_up.as_deref()) {
                    Flow::Continue => {}
                    Flow::Stop(reason) => {
                        run.request_stop(reason);
                        break;
                    }
                }
            }
        }
    }
}

enum Flow {
    Continue,
    Stop(StopReason),
}

fn on_message(
    run: &Run,
    recorder: &Recorder,
    message: &BorrowedMessage<'_>,
    catch_up: Option<&CatchUp>,
) -> Flow {
    let stats = &run.consumed;
    let payload = message.payload().unwrap_or(&[]);
    let now_epoch_ns = run.now_epoch_ns();
    let stamp_ns = read_stamp(payload)
        .filter(|s| *s > 0 && *s <= now_epoch_ns.saturating_add(STAMP_FUTURE_TOLERANCE_NS));
    let sent_epoch_ns = stamp_ns.or_else(|| {
        let ms = message.timestamp().to_millis()?;
        u64::try_from(ms)
            .ok()
            .map(|ms| ms.saturating_mul(1_000_000))
    });
    if run.cfg.mode == Mode::E2e && sent_epoch_ns.is_none_or(|t| t < run.start_epoch_ns()) {
        // Not produced by this run (e.g. seen by a group consumer before the start).
        run.stale_skipped.fetch_add(1, Ordering::Relaxed);
        return Flow::Continue;
    }
    let claim = stats.attempted.fetch_add(1, Ordering::Relaxed);
    if run.cfg.messages.is_some_and(|n| claim >= n) {
        return Flow::Stop(StopReason::Messages);
    }
    let bytes = (payload.len() + message.key().map_or(0, <[u8]>::len)) as u64;
    let now_ns = run.now_ns();
    // e2e measures by intended send time (so late arrivals of measured messages still count);
    // consume mode by arrival time.
    let measured = match (run.cfg.mode, sent_epoch_ns) {
        (Mode::E2e, Some(sent)) => {
            run.in_measured_window(sent.saturating_sub(run.start_epoch_ns()))
        }
        _ => run.in_measured_window(now_ns),
    };
    stats.messages.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(bytes, Ordering::Relaxed);
    if measured {
        stats.measured_messages.fetch_add(1, Ordering::Relaxed);
        stats.measured_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    if let Some(sent) = sent_epoch_ns {
        recorder.record(now_epoch_ns.saturating_sub(sent) / 1000, measured);
    }
    stats.event_at(now_ns);
    let caught_up = catch_up.is_some_and(|c| c.consumed(message.partition(), message.offset()));
    if run.cfg.messages.is_some_and(|n| claim + 1 >= n) {
        return Flow::Stop(StopReason::Messages);
    }
    if caught_up {
        return Flow::Stop(StopReason::CaughtUp);
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(watermarks: Vec<(i64, i64)>) -> TopicState {
        TopicState {
            partitions: watermarks.len() as i32,
            created: false,
            watermarks,
        }
    }

    #[test]
    fn catch_up_tracks_end_offsets() {
        let c = CatchUp::new(&topic(vec![(0, 3), (5, 5), (0, 2)]));
        assert!(!c.complete());
        assert!(!c.consumed(0, 1));
        assert!(!c.consumed(0, 2)); // partition 0 done, 2 left
        assert!(!c.consumed(0, 2)); // counted once
        assert!(!c.consumed(7, 100)); // unknown partition ignored
        assert!(c.mark(2)); // EOF on the last one completes
        assert!(c.complete());
    }

    #[test]
    fn empty_topic_is_caught_up_at_once() {
        assert!(CatchUp::new(&topic(vec![(0, 0), (4, 4)])).complete());
    }

    #[test]
    fn assignments_split_partitions() {
        let t = topic(vec![(0, 10); 10]);
        let mut seen = Vec::new();
        for i in 0..3 {
            let list = assignment("t", &t, false, 3, i).unwrap();
            for e in list.elements() {
                assert_eq!(e.partition() as usize % 3, i);
                assert_eq!(e.offset(), Offset::Offset(10));
                seen.push(e.partition());
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let list = assignment("t", &t, true, 1, 0).unwrap();
        assert!(list
            .elements()
            .iter()
            .all(|e| e.offset() == Offset::Beginning));
    }
}
