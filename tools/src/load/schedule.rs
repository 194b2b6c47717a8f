//! The fixed-rate send schedule and the split of work between producers.
//!
//! With `--rate R` and `P` producers, the aggregate stream is evenly spaced at `1/R` seconds and
//! producer `i` owns slots `i, i+P, i+2P, ...`; message `k` of producer `i` is *intended* to be
//! sent at `(i + k·P) / R` seconds after the start. Latency is measured from that intended
//! time, never from the moment the producer got round to sending, so a stall in the broker (or
//! in the client's queue) shows up in every message it delayed (no coordinated omission).
//! Without a rate there is no schedule: the intended time is the moment of sending.

/// A producer's slice of a fixed-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Spacing of the aggregate stream, ns.
    slot_ns: f64,
    producers: u64,
    index: u64,
}

impl Schedule {
    /// `None` when `rate_msgs_per_sec` asks for "as fast as possible".
    pub fn new(rate_msgs_per_sec: Option<f64>, producers: usize, index: usize) -> Option<Self> {
        let rate = rate_msgs_per_sec.filter(|r| r.is_finite() && *r > 0.0)?;
        assert!(index < producers, "producer index out of range");
        Some(Schedule {
            slot_ns: 1e9 / rate,
            producers: producers as u64,
            index: index as u64,
        })
    }

    /// Intended send time of this producer's message `k`, in ns after the start.
    pub fn intended_ns(&self, k: u64) -> u64 {
        let slot = self.index.saturating_add(k.saturating_mul(self.producers));
        (slot as f64 * self.slot_ns) as u64
    }

    /// How many of this producer's messages are intended before `t_ns` (exclusive).
    pub fn due_before(&self, t_ns: u64) -> u64 {
        // Smallest k with intended_ns(k) >= t_ns, found by estimate then correction so float
        // rounding cannot shift the boundary.
        let estimate = ((t_ns as f64 / self.slot_ns - self.index as f64) / self.producers as f64)
            .ceil()
            .max(0.0) as u64;
        let mut k = estimate.saturating_sub(2);
        while self.intended_ns(k) < t_ns {
            k += 1;
        }
        k
    }
}

/// Producer `index`'s share of `total` messages: the remainder goes to the first producers.
pub fn share(total: u64, producers: usize, index: usize) -> u64 {
    let p = producers.max(1) as u64;
    total / p + u64::from((index as u64) < total % p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rate_no_schedule() {
        assert_eq!(Schedule::new(None, 4, 0), None);
        assert_eq!(Schedule::new(Some(0.0), 4, 0), None);
        assert_eq!(Schedule::new(Some(f64::NAN), 4, 0), None);
    }

    #[test]
    fn single_producer_is_evenly_spaced() {
        let s = Schedule::new(Some(1000.0), 1, 0).unwrap();
        assert_eq!(s.intended_ns(0), 0);
        assert_eq!(s.intended_ns(1), 1_000_000);
        assert_eq!(s.intended_ns(1000), 1_000_000_000);
    }

    #[test]
    fn producers_interleave_into_one_even_stream() {
        // 50k msg/s over 4 producers: aggregate slots 20us apart, each producer every 80us.
        let all: Vec<u64> = {
            let mut v: Vec<u64> = (0..4)
                .flat_map(|i| {
                    let s = Schedule::new(Some(50_000.0), 4, i).unwrap();
                    (0..100).map(move |k| s.intended_ns(k))
                })
                .collect();
            v.sort_unstable();
            v
        };
        for (n, t) in all.iter().enumerate() {
            assert_eq!(*t, n as u64 * 20_000);
        }
    }

    #[test]
    fn due_before_counts_slots() {
        let s = Schedule::new(Some(1000.0), 1, 0).unwrap();
        assert_eq!(s.due_before(0), 0);
        assert_eq!(s.due_before(1), 1);
        assert_eq!(s.due_before(1_000_000_000), 1000);
        assert_eq!(s.due_before(1_000_000_001), 1001);
        let s = Schedule::new(Some(3.0), 2, 1).unwrap();
        // slots at 1/3 s, 3/3 s, 5/3 s ...
        assert_eq!(s.due_before(2_000_000_000), 3);
        for t in [0u64, 1, 333_333_333, 333_333_334, 10_000_000_000] {
            let k = s.due_before(t);
            assert!(s.intended_ns(k) >= t);
            assert!(k == 0 || s.intended_ns(k - 1) < t);
        }
    }

    #[test]
    fn rate_times_duration_is_message_count() {
        // 10 s at 200k msg/s over 4 producers sends exactly 2M messages.
        let ten_s = 10_000_000_000;
        let total: u64 = (0..4)
            .map(|i| {
                Schedule::new(Some(200_000.0), 4, i)
                    .unwrap()
                    .due_before(ten_s)
            })
            .sum();
        assert_eq!(total, 2_000_000);
    }

    #[test]
    fn shares_add_up() {
        assert_eq!(share(10, 4, 0), 3);
        assert_eq!(share(10, 4, 1), 3);
        assert_eq!(share(10, 4, 2), 2);
        assert_eq!(share(10, 4, 3), 2);
        for total in [0u64, 1, 7, 20_000, 1_000_003] {
            for p in 1..9usize {
                assert_eq!((0..p).map(|i| share(total, p, i)).sum::<u64>(), total);
            }
        }
    }
}
