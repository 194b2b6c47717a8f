//! One run: the shared [`Run`] state (clock, windows, stop flag, counters), the threads that
//! drive the clients, and the once-a-second progress line.
//!
//! Timeline, in ns after the start (`now_ns`):
//!
//! ```text
//! 0 ─── warmup ───▶ warmup_ns ─── measured (duration) ───▶ end_ns ─ drain (e2e) ─▶
//! ```
//!
//! Only messages inside `[warmup_ns, end_ns)` enter the summary histograms and throughput
//! (producers and e2e by intended send time, consume mode by arrival time). Every thread checks
//! the stop flag at least every 100 ms, and every wait in the run has a bound, so the process
//! always ends: duration / messages / caught-up / idle timeout / e2e drain timeout / Ctrl-C.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::cli::{Config, Mode};
use super::consume::{self, CatchUp};
use super::kafka::{self, TopicState};
use super::produce;
use super::stats::{LatencyMs, SideStats};
use super::LoadError;

/// Spacing of progress lines.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the supervising thread checks the workers.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(50);
/// e2e with `--group`: how many connect timeouts the group may take to hand out partitions.
const GROUP_JOIN_TIMEOUTS: u32 = 3;

/// Why the run (or its first side) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Duration,
    Messages,
    CaughtUp,
    IdleTimeout,
    AllConsumed,
    DrainTimeout,
    Interrupted,
}

impl StopReason {
    /// The name used in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Duration => "duration",
            StopReason::Messages => "messages",
            StopReason::CaughtUp => "caught_up",
            StopReason::IdleTimeout => "idle_timeout",
            StopReason::AllConsumed => "all_consumed",
            StopReason::DrainTimeout => "drain_timeout",
            StopReason::Interrupted => "interrupted",
        }
    }
}

struct Clock {
    start: Instant,
    start_epoch_ns: u64,
}

/// State shared by every thread of one run.
pub struct Run {
    pub cfg: Config,
    pub producer_properties: BTreeMap<String, String>,
    pub consumer_properties: BTreeMap<String, String>,
    clock: OnceLock<Clock>,
    pub warmup_ns: u64,
    /// End of the measured window; `None` when only `--messages` bounds the run.
    pub end_ns: Option<u64>,
    drain_ns: u64,
    stop: AtomicBool,
    stop_reason: Mutex<Option<StopReason>>,
    pub produced: SideStats,
    pub consumed: SideStats,
    /// e2e: messages acknowledged once every producer finished; `u64::MAX` before that.
    produced_final: AtomicU64,
    /// e2e: messages consumed that this run did not produce.
    pub stale_skipped: AtomicU64,
    /// Times a producer found librdkafka's queue full and waited.
    pub queue_full_waits: AtomicU64,
    /// Fixed-rate messages never sent because the producer fell a drain timeout behind.
    pub schedule_lag_unsent: AtomicU64,
    pub drain_timed_out: AtomicBool,
}

fn system_epoch_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn secs_to_ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

impl Run {
    pub fn new(cfg: Config) -> Run {
        let warmup_ns = secs_to_ns(cfg.warmup_s);
        let end_ns = cfg.duration_s.map(|d| warmup_ns + secs_to_ns(d));
        Run {
            producer_properties: kafka::producer_properties(&cfg),
            consumer_properties: kafka::consumer_properties(&cfg),
            clock: OnceLock::new(),
            warmup_ns,
            end_ns,
            drain_ns: secs_to_ns(cfg.drain_timeout_s),
            stop: AtomicBool::new(false),
            stop_reason: Mutex::new(None),
            produced: SideStats::default(),
            consumed: SideStats::default(),
            produced_final: AtomicU64::new(u64::MAX),
            stale_skipped: AtomicU64::new(0),
            queue_full_waits: AtomicU64::new(0),
            schedule_lag_unsent: AtomicU64::new(0),
            drain_timed_out: AtomicBool::new(false),
            cfg,
        }
    }

    /// Starts the clock; later calls do nothing.
    pub fn begin(&self) {
        let _ = self.clock.set(Clock {
            start: Instant::now(),
            start_epoch_ns: system_epoch_ns(),
        });
    }

    /// ns since the start (0 before it).
    pub fn now_ns(&self) -> u64 {
        self.clock
            .get()
            .map_or(0, |c| c.start.elapsed().as_nanos() as u64)
    }

    pub fn start_epoch_ns(&self) -> u64 {
        self.clock.get().map_or(0, |c| c.start_epoch_ns)
    }

    /// Wall-clock ns of a point `ns_after_start`, on the monotonic clock anchored at the start.
    pub fn epoch_ns(&self, ns_after_start: u64) -> u64 {
        self.start_epoch_ns().saturating_add(ns_after_start)
    }

    pub fn now_epoch_ns(&self) -> u64 {
        match self.clock.get() {
            Some(c) => c.start_epoch_ns + c.start.elapsed().as_nanos() as u64,
            None => system_epoch_ns(),
        }
    }

    pub fn in_measured_window(&self, t_ns: u64) -> bool {
        t_ns >= self.warmup_ns && self.end_ns.is_none_or(|end| t_ns < end)
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Records `reason` unless an earlier one exists.
    pub fn note_stop_reason(&self, reason: StopReason) {
        let mut r = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert(reason);
    }

    /// Stops every thread.
    pub fn request_stop(&self, reason: StopReason) {
        self.note_stop_reason(reason);
        self.stop.store(true, Ordering::Release);
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        *self.stop_reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True once a fixed-rate producer is a whole drain timeout past the end of the window.
    pub fn schedule_lag_exceeded(&self, now_ns: u64) -> bool {
        self.end_ns
            .is_some_and(|end| now_ns >= end.saturating_add(self.drain_ns))
    }

    fn set_producers_done(&self) {
        let acked = SideStats::get(&self.produced.messages);
        self.produced_final.store(acked, Ordering::Release);
    }

    /// e2e: every acknowledged message has been consumed.
    pub fn e2e_all_consumed(&self) -> bool {
        self.cfg.mode == Mode::E2e
            && SideStats::get(&self.consumed.messages)
                >= self.produced_final.load(Ordering::Acquire)
    }
}

/// What a finished run hands to the report.
pub struct Outcome {
    pub run: Arc<Run>,
    pub topic: TopicState,
    pub wall_time_s: f64,
    pub started_at_unix_s: f64,
}

/// Runs the whole workload.
pub fn execute(cfg: Config) -> Result<Outcome, LoadError> {
    let topic = kafka::prepare(&cfg)?;
    if !topic.created && cfg.partitions_requested && topic.partitions != cfg.partitions {
        eprintln!(
            "note: topic {} exists with {} partitions; using it as is",
            cfg.topic, topic.partitions
        );
    }
    if cfg.mode.consumes() && cfg.group.is_none() && cfg.consumers > topic.partitions as usize {
        eprintln!(
            "note: {} consumers for {} partitions: some consumers get none",
            cfg.consumers, topic.partitions
        );
    }
    let run = Arc::new(Run::new(cfg));
    let producers = if run.cfg.mode.produces() {
        produce::create(&run)?
    } else {
        Vec::new()
    };
    let consumers = if run.cfg.mode.consumes() {
        consume::create(&run, &topic)?
    } else {
        Vec::new()
    };
    if run.cfg.mode == Mode::E2e && run.cfg.group.is_some() {
        let timeout = Duration::from_secs_f64(run.cfg.connect_timeout_s) * GROUP_JOIN_TIMEOUTS;
        if !consume::await_group_assignment(&consumers, topic.partitions, timeout) {
            return Err(LoadError::Client(format!(
                "consumer group {} was not assigned all {} partitions within {:.0?}",
                run.cfg.group.as_deref().unwrap_or(""),
                topic.partitions,
                timeout
            )));
        }
    }
    let catch_up = run
        .cfg
        .from_beginning
        .then(|| Arc::new(CatchUp::new(&topic)));

    let started_at_unix_s = system_epoch_ns() as f64 / 1e9;
    run.begin();
    if catch_up.as_ref().is_some_and(|c| c.complete()) {
        run.request_stop(StopReason::CaughtUp);
    }
    watch_interrupts(&run);

    let mut consumer_threads = Vec::new();
    for (i, consumer) in consumers.into_iter().enumerate() {
        let run = Arc::clone(&run);
        let catch_up = catch_up.clone();
        consumer_threads.push(spawn(format!("consumer-{i}"), move || {
            consume::drive(run, consumer, catch_up)
        })?);
    }
    let mut producer_threads = Vec::new();
    for (i, producer) in producers.into_iter().enumerate() {
        let run = Arc::clone(&run);
        producer_threads.push(spawn(format!("producer-{i}"), move || {
            produce::drive(run, producer, i)
        })?);
    }
    supervise(&run, &topic, &producer_threads, &consumer_threads);
    for t in producer_threads.into_iter().chain(consumer_threads) {
        if t.join().is_err() {
            eprintln!("warning: a client thread panicked; figures may be incomplete");
        }
    }
    let wall_time_s = run.now_ns() as f64 / 1e9;
    Ok(Outcome {
        run,
        topic,
        wall_time_s,
        started_at_unix_s,
    })
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, LoadError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(|e| LoadError::Client(format!("cannot start thread: {e}")))
}

/// First Ctrl-C: stop gracefully (flush, summary). Second: exit at once.
fn watch_interrupts(run: &Arc<Run>) {
    let run = Arc::clone(run);
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                eprintln!("\ninterrupted: stopping (Ctrl-C again to quit at once)");
                run.request_stop(StopReason::Interrupted);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            });
        });
    if spawned.is_err() {
        eprintln!("note: cannot watch for Ctrl-C; it will end the run without a summary");
    }
}

/// Waits for the workers, printing progress, finishing e2e producers/consumers in order.
fn supervise(
    run: &Run,
    topic: &TopicState,
    producers: &[JoinHandle<()>],
    consumers: &[JoinHandle<()>],
) {
    let mut progress = Progress::new(run, topic);
    let mut next_tick_ns = PROGRESS_INTERVAL.as_nanos() as u64;
    let mut producers_done_at_ns: Option<u64> = None;
    loop {
        std::thread::sleep(SUPERVISE_INTERVAL);
        let now_ns = run.now_ns();
        if producers_done_at_ns.is_none() && producers.iter().all(JoinHandle::is_finished) {
            run.set_producers_done();
            producers_done_at_ns = Some(now_ns);
        }
        if run.cfg.mode == Mode::E2e && !run.stopping() {
            if let Some(done) = producers_done_at_ns {
                if now_ns.saturating_sub(done) > run.drain_ns {
                    run.drain_timed_out.store(true, Ordering::Relaxed);
                    run.request_stop(StopReason::DrainTimeout);
                }
            }
        }
        let finished = producers
            .iter()
            .chain(consumers)
            .all(JoinHandle::is_finished);
        if now_ns >= next_tick_ns {
            next_tick_ns += PROGRESS_INTERVAL.as_nanos() as u64;
            let line = progress.line(now_ns);
            if !run.cfg.quiet {
                eprintln!("{line}");
            }
        }
        if finished {
            return;
        }
    }
}

/// Interval figures between two progress lines.
struct Progress<'a> {
    run: &'a Run,
    backlog_at_start: u64,
    last_ns: u64,
    last_produced: (u64, u64),
    last_consumed: (u64, u64),
}

impl<'a> Progress<'a> {
    fn new(run: &'a Run, topic: &TopicState) -> Self {
        Progress {
            run,
            backlog_at_start: topic.backlog(),
            last_ns: 0,
            last_produced: (0, 0),
            last_consumed: (0, 0),
        }
    }

    fn line(&mut self, now_ns: u64) -> String {
        let run = self.run;
        let dt_s = (now_ns.saturating_sub(self.last_ns) as f64 / 1e9).max(1e-9);
        self.last_ns = now_ns;
        let phase = if now_ns < run.warmup_ns {
            " warmup"
        } else {
            ""
        };
        let mut out = format!("[{:>5.0}s{phase}]", now_ns as f64 / 1e9);
        if run.cfg.mode.produces() {
            let s = &run.produced;
            let now = (SideStats::get(&s.messages), SideStats::get(&s.bytes));
            let in_flight = SideStats::get(&s.attempted)
                .saturating_sub(now.0)
                .saturating_sub(SideStats::get(&s.errors));
            side_line(&mut out, "produce", now, self.last_produced, dt_s, s);
            let _ = write!(out, " in-flight {in_flight}");
            self.last_produced = now;
        }
        if run.cfg.mode.consumes() {
            let s = &run.consumed;
            let now = (SideStats::get(&s.messages), SideStats::get(&s.bytes));
            if run.cfg.mode.produces() {
                out.push_str(" |");
            }
            side_line(&mut out, "consume", now, self.last_consumed, dt_s, s);
            if run.cfg.mode == Mode::E2e {
                let backlog = SideStats::get(&run.produced.messages).saturating_sub(now.0);
                let _ = write!(out, " backlog {backlog}");
            } else if run.cfg.from_beginning {
                let _ = write!(
                    out,
                    " remaining {}",
                    self.backlog_at_start.saturating_sub(now.0)
                );
            }
            self.last_consumed = now;
        }
        out
    }
}

fn side_line(
    out: &mut String,
    label: &str,
    now: (u64, u64),
    last: (u64, u64),
    dt_s: f64,
    s: &SideStats,
) {
    let msgs = now.0.saturating_sub(last.0) as f64 / dt_s;
    let mb = now.1.saturating_sub(last.1) as f64 / dt_s / super::report::MB;
    let l = LatencyMs::from_histogram(&s.drain_interval());
    let _ = write!(
        out,
        " {label} {msgs:>9.0} msg/s {mb:>8.2} MB/s p50 {:>8.2} ms p99 {:>8.2} ms err {}",
        l.p50,
        l.p99,
        SideStats::get(&s.errors)
    );
}
