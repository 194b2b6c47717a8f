//! Counters and latency histograms shared between the client threads and the reporter.
//!
//! Each client (one producer or one consumer) owns a [`Recorder`]: two HDR histograms in
//! microseconds behind a mutex only that client and the once-a-second reporter touch. The
//! `interval` histogram holds everything since the last progress line (warmup included) and is
//! swapped out by the reporter; the `measured` histogram holds only post-warmup values and is
//! read once at the end. Counts live in [`SideStats`] atomics, one per side (produce / consume).
//! Invariant: `measured_*` ≤ the matching totals; every error reported by the client is counted
//! exactly once in `errors` and never in `messages`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram holds (1 hour, in µs); larger values are clamped to it.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant decimal digits of every latency histogram.
pub const LATENCY_SIGFIG: u8 = 3;
/// Distinct error descriptions kept per side; further kinds are folded into "other".
pub const ERROR_KINDS_MAX: usize = 32;

/// An empty latency histogram (µs, 1 µs .. 1 h, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy hdrhistogram's rules; failure would be a bug here.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGFIG)
        .expect("constant histogram bounds are valid")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another thread must not hide the figures gathered so far.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Histograms {
    interval: Histogram<u64>,
    measured: Histogram<u64>,
}

/// One client's latency histograms.
pub struct Recorder {
    inner: Mutex<Histograms>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            inner: Mutex::new(Histograms {
                interval: new_histogram(),
                measured: new_histogram(),
            }),
        }
    }
}

impl Recorder {
    pub fn record(&self, latency_us: u64, measured: bool) {
        let value = latency_us.clamp(1, LATENCY_US_MAX);
        let mut h = lock(&self.inner);
        h.interval.saturating_record(value);
        if measured {
            h.measured.saturating_record(value);
        }
    }

    /// Adds the interval histogram into `into` and clears it.
    pub fn drain_interval(&self, into: &mut Histogram<u64>) {
        let mut h = lock(&self.inner);
        // Same bounds on both sides, so adding cannot fail; ignore rather than panic.
        let _ = into.add(&h.interval);
        h.interval.reset();
    }

    pub fn add_measured(&self, into: &mut Histogram<u64>) {
        let h = lock(&self.inner);
        let _ = into.add(&h.measured);
    }
}

/// Counters of one side (all producers, or all consumers).
#[derive(Default)]
pub struct SideStats {
    /// Produce: messages handed to the client. Consume: unused.
    pub attempted: AtomicU64,
    /// Produce: acknowledged without error. Consume: consumed (and counted).
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    pub measured_messages: AtomicU64,
    pub measured_bytes: AtomicU64,
    /// Client-level errors librdkafka reports outside any message (e.g. a lost connection);
    /// librdkafka retries those itself, so they are shown but not counted in `errors`.
    pub client_errors: AtomicU64,
    /// Time of the last acknowledged / consumed message, ns after the start.
    pub last_event_ns: AtomicU64,
    error_kinds: Mutex<BTreeMap<String, u64>>,
    recorders: Mutex<Vec<Arc<Recorder>>>,
}

impl SideStats {
    pub fn new_recorder(&self) -> Arc<Recorder> {
        let r = Arc::new(Recorder::default());
        lock(&self.recorders).push(Arc::clone(&r));
        r
    }

    /// Counts one error and remembers its kind.
    pub fn error(&self, kind: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.note_kind(kind);
    }

    pub fn client_error(&self, kind: &str) {
        self.client_errors.fetch_add(1, Ordering::Relaxed);
        self.note_kind(&format!("client: {kind}"));
    }

    fn note_kind(&self, kind: &str) {
        let mut kinds = lock(&self.error_kinds);
        if kinds.len() >= ERROR_KINDS_MAX && !kinds.contains_key(kind) {
            *kinds.entry("other".to_string()).or_insert(0) += 1;
        } else {
            *kinds.entry(kind.to_string()).or_insert(0) += 1;
        }
    }

    pub fn error_kinds(&self) -> BTreeMap<String, u64> {
        lock(&self.error_kinds).clone()
    }

    pub fn event_at(&self, t_ns: u64) {
        self.last_event_ns.fetch_max(t_ns, Ordering::Relaxed);
    }

    /// Merged interval histograms of every client, clearing them.
    pub fn drain_interval(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for r in lock(&self.recorders).iter() {
            r.drain_interval(&mut h);
        }
        h
    }

    /// Merged post-warmup histograms of every client.
    pub fn measured_histogram(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for r in lock(&self.recorders).iter() {
            r.add_measured(&mut h);
        }
        h
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Latency figures in milliseconds (from µs histograms).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl LatencyMs {
    pub fn from_histogram(h: &Histogram<u64>) -> LatencyMs {
        if h.is_empty() {
            return LatencyMs::default();
        }
        LatencyMs {
            count: h.len(),
            min: us_to_ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: us_to_ms(h.value_at_quantile(0.50)),
            p95: us_to_ms(h.value_at_quantile(0.95)),
            p99: us_to_ms(h.value_at_quantile(0.99)),
            p999: us_to_ms(h.value_at_quantile(0.999)),
            p9999: us_to_ms(h.value_at_quantile(0.9999)),
            max: us_to_ms(h.max()),
        }
    }
}

/// The classic HdrHistogram percentile distribution (as Java's `outputPercentileDistribution`
/// prints it, 5 ticks per half distance), values in milliseconds — the input format of the
/// HdrHistogram plotter.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0; // µs → ms
    let digits = usize::from(h.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total: u64 = 0;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / SCALE, h.stdev() / SCALE, h.max() as f64 / SCALE)
    };
    // Java's sub-bucket count: 2^ceil(log2(2 * 10^sigfig)).
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig())))
        .log2()
        .ceil()
        .exp2() as u64;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_in_ms() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let l = LatencyMs::from_histogram(&h);
        assert_eq!(l.count, 10_000);
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p99 - 9.9).abs() < 0.02, "{l:?}");
        assert!((l.max - 10.0).abs() < 0.01, "{l:?}");
        assert!((l.mean - 5.0).abs() < 0.01, "{l:?}");
        assert_eq!(
            LatencyMs::from_histogram(&new_histogram()),
            LatencyMs::default()
        );
    }

    #[test]
    fn recorder_splits_interval_and_measured() {
        let s = SideStats::default();
        let r = s.new_recorder();
        r.record(100, false);
        r.record(200, true);
        r.record(u64::MAX, true); // clamped, not dropped
        r.record(0, true); // clamped to 1 µs
        assert_eq!(s.drain_interval().len(), 4);
        assert_eq!(s.drain_interval().len(), 0);
        assert_eq!(s.measured_histogram().len(), 3);
    }

    #[test]
    fn error_kinds_are_bounded() {
        let s = SideStats::default();
        for i in 0..100 {
            s.error(&format!("kind {i}"));
        }
        s.error("kind 0");
        let kinds = s.error_kinds();
        assert_eq!(SideStats::get(&s.errors), 101);
        assert_eq!(kinds.len(), ERROR_KINDS_MAX + 1);
        assert_eq!(kinds.get("kind 0"), Some(&2));
        assert_eq!(kinds.get("other"), Some(&68));
    }

    #[test]
    fn percentile_distribution_format() {
        let mut h = new_histogram();
        for us in [1000u64, 2000, 3000, 4000] {
            h.record(us).unwrap();
        }
        let text = percentile_distribution(&h);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        let first = lines.next().unwrap();
        assert_eq!(
            first,
            "       1.000 0.000000000000          1           1.00"
        );
        let rows: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let last = rows.last().unwrap();
        assert!(
            last.starts_with("       4.001 1.000000000000          4"),
            "{last}"
        );
        assert!(text.contains("#[Max     =        4.001, Total count    =            4]"));
        assert!(text.contains("SubBuckets     =         2048]"));
        // Empty histograms still produce the header and footer.
        let empty = percentile_distribution(&new_histogram());
        assert!(empty.contains("Total count    =            0"));
    }
}
