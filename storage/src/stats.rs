//! Lock-free (single-thread, `Cell`) statistics of a log, read by the broker's metrics scrape:
//! writes, bytes, write, fdatasync and disk read latency, and group-commit batch sizes.

use std::cell::Cell;

/// Upper bounds (seconds) for latency histograms: 50 µs .. 10 s.
pub const LATENCY_BUCKETS_S: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Upper bounds for count histograms (batches per write).
pub const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// A fixed-bucket histogram for one thread.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<Cell<u64>>,
    sum: Cell<f64>,
    count: Cell<u64>,
}

/// A sendable copy of a [`Histogram`] (non-cumulative bucket counts, +Inf last).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| Cell::new(0)).collect(),
            sum: Cell::new(0.0),
            count: Cell::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get(i) {
            c.set(c.get() + 1);
        }
        self.sum.set(self.sum.get() + v);
        self.count.set(self.count.get() + 1);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self.counts.iter().map(Cell::get).collect(),
            sum: self.sum.get(),
            count: self.count.get(),
        }
    }
}

impl HistogramSnapshot {
    pub fn empty(bounds: &'static [f64]) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Adds `other` (same bounds) into `self`.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Per-log I/O statistics.
#[derive(Debug)]
pub struct LogStats {
    /// io_uring write submissions of the writer.
    pub writes: Cell<u64>,
    pub bytes_written: Cell<u64>,
    /// From a write's submission until the writer saw it finish (the device's time, and the
    /// time the writer then spent building the next buffer, if longer).
    pub write_seconds: Histogram,
    pub fsync_seconds: Histogram,
    /// Reads the tail cache did not hold: from the lookup until the batches were read (the
    /// disk read, or the wait for the chunk read ahead for it).
    pub disk_read_seconds: Histogram,
    /// Batches covered by one write (group commit).
    pub batches_per_write: Histogram,
    /// The cleaner's reads and writes (compacted logs).
    pub cleaner_bytes_read: Cell<u64>,
    pub cleaner_bytes_written: Cell<u64>,
    /// When the last clean finished (ms since the epoch; 0: never).
    pub cleaner_last_ms: Cell<i64>,
    /// Bytes of segment files the open read and checked (recovery's scan).
    pub recovery_scanned_bytes: Cell<u64>,
}

impl LogStats {
    pub(crate) fn on_clean(&self, read: u64, written: u64) {
        self.cleaner_bytes_read
            .set(self.cleaner_bytes_read.get() + read);
        self.cleaner_bytes_written
            .set(self.cleaner_bytes_written.get() + written);
        self.cleaner_last_ms.set(sluice_base::now_ms());
    }
}

impl Default for LogStats {
    fn default() -> Self {
        LogStats {
            writes: Cell::new(0),
            bytes_written: Cell::new(0),
            write_seconds: Histogram::new(LATENCY_BUCKETS_S),
            fsync_seconds: Histogram::new(LATENCY_BUCKETS_S),
            disk_read_seconds: Histogram::new(LATENCY_BUCKETS_S),
            batches_per_write: Histogram::new(COUNT_BUCKETS),
            cleaner_bytes_read: Cell::new(0),
            cleaner_bytes_written: Cell::new(0),
            cleaner_last_ms: Cell::new(0),
            recovery_scanned_bytes: Cell::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_sum_and_merge() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 1, 1]);
        assert_eq!(s.count, 4);
        let mut m = HistogramSnapshot::empty(&[1.0, 2.0]);
        m.merge(&s);
        m.merge(&s);
        assert_eq!(m.counts, vec![4, 2, 2]);
        assert!((m.sum - 12.0).abs() < 1e-9);
    }
}
