//! Producer clients: one librdkafka `ThreadedProducer` per `--producers`, each driven by its own
//! thread that follows the fixed-rate [`Schedule`] (or sends flat out), and a delivery callback
//! that turns acknowledgements into counts and latencies.
//!
//! Latency = acknowledgement time − *intended* send time (see `schedule.rs`), carried through
//! librdkafka as the delivery opaque (ns after the start, in a `usize`). Every delivery error is
//! counted once; librdkafka's own retries stay enabled but nothing is re-sent by us, so a
//! failure is never folded into the figures as a success.
//! Bounds: the send loop ends at `--messages`/`--duration`/stop; waits on a full queue check
//! the stop flag; the final flush waits at most [`FLUSH_TIMEOUT`], then purges (purged messages
//! come back through the callback as errors).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;

use super::kafka::{client_config, MESSAGE_TIMEOUT_MS};
use super::payload::{write_key, PayloadGen};
use super::run::{Run, StopReason};
use super::schedule::{share, Schedule};
use super::stats::Recorder;
use super::LoadError;

// The delivery opaque carries ns-after-start in a usize.
const _: () = assert!(usize::BITS >= 64, "sluice-load needs a 64-bit target");

/// Longest wait for outstanding acknowledgements at the end of a run.
pub const FLUSH_TIMEOUT: Duration = Duration::from_millis(MESSAGE_TIMEOUT_MS + 5_000);
/// Pause before retrying an enqueue the full client queue refused.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(200);
/// Longest single sleep while waiting for the next scheduled send, so stop is noticed quickly.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// Delivery callback state of one producer.
pub struct ProducerCtx {
    run: Arc<Run>,
    recorder: Arc<Recorder>,
}

impl ClientContext for ProducerCtx {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _log_message: &str) {}

    fn error(&self, error: KafkaError, reason: &str) {
        self.run
            .produced
            .client_error(&format!("{error}: {reason}"));
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, intended_ns: usize) {
        let now_ns = self.run.now_ns();
        let stats = &self.run.produced;
        match result {
            Ok(message) => {
                let bytes = message.payload_len() + message.key().map_or(0, <[u8]>::len);
                let intended_ns = intended_ns as u64;
                let measured = self.run.in_measured_window(intended_ns);
                stats.messages.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                if measured {
                    stats.measured_messages.fetch_add(1, Ordering::Relaxed);
                    stats
                        .measured_bytes
                        .fetch_add(bytes as u64, Ordering::Relaxed);
                }
                self.recorder
                    .record(now_ns.saturating_sub(intended_ns) / 1000, measured);
                stats.event_at(now_ns);
            }
            Err((error, _)) => stats.error(&error.to_string()),
        }
    }
}

pub type LoadProducer = ThreadedProducer<ProducerCtx>;

/// Creates the producer clients (before the clock starts, so set-up is not measured). With
/// `--transaction-size`, each gets its own transactional.id and is initialised here.
pub fn create(run: &Arc<Run>) -> Result<Vec<LoadProducer>, LoadError> {
    (0..run.cfg.producers)
        .map(|index| {
            let mut config = client_config(&run.producer_properties);
            if run.cfg.transaction_size.is_some() {
                config.set(
                    "transactional.id",
                    format!("sluice-load-{}-{index}", run.cfg.seed),
                );
            }
            let ctx = ProducerCtx {
                run: Arc::clone(run),
                recorder: run.produced.new_recorder(),
            };
            let producer: LoadProducer = config
                .create_with_context(ctx)
                .map_err(|e| LoadError::Client(format!("cannot create producer: {e}")))?;
            if run.cfg.transaction_size.is_some() {
                producer
                    .init_transactions(TXN_TIMEOUT)
                    .map_err(|e| LoadError::Client(format!("init_transactions: {e}")))?;
            }
            Ok(producer)
        })
        .collect()
}

/// Waits (at most [`TXN_TIMEOUT`]) until the producer has no message in flight.
fn wait_delivered(producer: &LoadProducer) {
    let deadline = std::time::Instant::now() + TXN_TIMEOUT;
    while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Bound of one transactional call (init, begin, commit).
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// With `--transaction-size N`: begins a transaction before record `k` when `k % N == 0`, and
/// commits after record `k` when `(k + 1) % N == 0`. False (counted as a client error) when the
/// call failed: the producer stops.
fn transaction_step(run: &Run, producer: &LoadProducer, k: u64, before: bool) -> bool {
    let Some(n) = run.cfg.transaction_size else {
        return true;
    };
    let r = if before && k.is_multiple_of(n) {
        producer.begin_transaction()
    } else if !before && (k + 1).is_multiple_of(n) {
        // Wait for the deliveries first, watching the in-flight count: rdkafka's own flush (and
        // commit_transaction's) waits in 100 ms polls that compete with the ThreadedProducer's
        // polling thread for the delivery events, which capped a producer at ~10 transactions
        // a second whatever the broker did.
        wait_delivered(producer);
        producer.commit_transaction(TXN_TIMEOUT)
    } else {
        return true;
    };
    match r {
        Ok(()) => true,
        Err(e) => {
            run.produced.error(&format!("transaction: {e}"));
            false
        }
    }
}

/// The send loop of producer `index`; returns when its share is sent or the run ends.
pub fn drive(run: Arc<Run>, producer: LoadProducer, index: usize) {
    let cfg = &run.cfg;
    let limit = cfg.messages.map(|n| share(n, cfg.producers, index));
    let schedule = Schedule::new(cfg.rate_msgs_per_sec, cfg.producers, index);
    let seed = cfg.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut payloads = PayloadGen::new(cfg.message_size, cfg.random_ratio, seed);
    let mut key = String::new();
    let mut k: u64 = 0;
    let stop_reason = loop {
        if run.stopping() {
            break None;
        }
        if limit.is_some_and(|n| k >= n) {
            break Some(StopReason::Messages);
        }
        let intended_ns = match &schedule {
            Some(s) => s.intended_ns(k),
            None => run.now_ns(),
        };
        if run.end_ns.is_some_and(|end| intended_ns >= end) {
            break Some(StopReason::Duration);
        }
        if run.schedule_lag_exceeded(run.now_ns()) {
            // Hopelessly behind a fixed schedule: stop rather than run on without bound.
            let unsent = schedule
                .as_ref()
                .zip(run.end_ns)
                .map_or(0, |(s, end)| s.due_before(end).saturating_sub(k));
            let unsent = limit.map_or(unsent, |n| unsent.min(n - k));
            run.schedule_lag_unsent.fetch_add(unsent, Ordering::Relaxed);
            break Some(StopReason::Duration);
        }
        if schedule.is_some() && !wait_until(&run, intended_ns) {
            break None;
        }
        let payload = payloads.next(run.epoch_ns(intended_ns));
        let mut record =
            BaseRecord::with_opaque_to(&cfg.topic, intended_ns as usize).payload(payload);
        if cfg.keyed {
            write_key(&mut key, k, cfg.key_count);
            record = record.key(key.as_str());
        }
        if !transaction_step(&run, &producer, k, true) {
            break None;
        }
        run.produced.attempted.fetch_add(1, Ordering::Relaxed);
        if !enqueue(&run, &producer, record) {
            break None;
        }
        if !transaction_step(&run, &producer, k, false) {
            break None;
        }
        k += 1;
    };
    if let Some(reason) = stop_reason {
        run.note_stop_reason(reason);
    }
    // A transaction left open (the run ended mid-way) is committed, so what was acknowledged
    // is also readable by read_committed consumers.
    if let Some(n) = cfg.transaction_size {
        if !k.is_multiple_of(n) {
            wait_delivered(&producer);
            if let Err(e) = producer.commit_transaction(TXN_TIMEOUT) {
                run.produced.error(&format!("transaction: {e}"));
            }
        }
    }
    finish(&producer);
}

/// Sleeps until `intended_ns`; false when the run is stopping.
fn wait_until(run: &Run, intended_ns: u64) -> bool {
    loop {
        if run.stopping() {
            return false;
        }
        let now = run.now_ns();
        if now >= intended_ns {
            return true;
        }
        std::thread::sleep(Duration::from_nanos(intended_ns - now).min(SLEEP_SLICE));
    }
}

/// Hands one record to librdkafka, waiting while its queue is full. False when the run is
/// stopping before the record could be queued (it is then not counted as attempted).
fn enqueue(
    run: &Run,
    producer: &LoadProducer,
    mut record: BaseRecord<'_, str, [u8], usize>,
) -> bool {
    loop {
        match producer.send(record) {
            Ok(()) => return true,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if run.stopping() {
                    run.produced.attempted.fetch_sub(1, Ordering::Relaxed);
                    return false;
                }
                run.queue_full_waits.fetch_add(1, Ordering::Relaxed);
                record = back;
                std::thread::sleep(QUEUE_FULL_BACKOFF);
            }
            Err((error, _)) => {
                run.produced.error(&format!("enqueue: {error}"));
                return true;
            }
        }
    }
}

/// Waits (bounded) for outstanding acknowledgements; whatever is left is purged and comes back
/// through the delivery callback as an error.
fn finish(producer: &LoadProducer) {
    if producer.flush(FLUSH_TIMEOUT).is_err() {
        producer.purge(PurgeConfig::default().queue().inflight());
        let _ = producer.flush(Duration::from_secs(1));
    }
}
