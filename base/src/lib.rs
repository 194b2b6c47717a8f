//! The few pieces every Sluice crate shares and none owns: a bounds-checked big-endian byte
//! reader ([`Reader`]), a seeded PRNG ([`Rng`]) and the wall clock ([`now_ms`]).
//!
//! Must not touch: anything else (no dependencies, no I/O).

pub mod reader;

pub use reader::Reader;

/// Milliseconds since the Unix epoch (0 if the clock is before it): record timestamps,
/// retention, session deadlines. The one wall clock of the code base.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// xorshift64*: seeded and deterministic (tests print the seed to replay a failure; member ids
/// need uniqueness, not secrecy). Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift never leaves 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Seeded from the clock and the process id (ids that must differ between processes).
    pub fn from_time() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// A copy of `data` with 1 to `edits` random edits (a bit flipped, a byte replaced, a cut,
    /// a byte inserted): the mutation passes of malformed-input tests.
    pub fn mutate(&mut self, data: &[u8], edits: u64) -> Vec<u8> {
        let mut m = data.to_vec();
        for _ in 0..=self.below(edits.max(1)) {
            if m.is_empty() {
                m.push(self.next_u64() as u8);
                continue;
            }
            let at = self.below(m.len() as u64) as usize;
            match self.below(4) {
                0 => m[at] ^= 1 << self.below(8),
                1 => m[at] = self.next_u64() as u8,
                2 => m.truncate(at),
                _ => m.insert(at, self.next_u64() as u8),
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_zero_seed_is_usable() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut z = Rng::new(0);
        assert_ne!(z.next_u64(), z.next_u64());
        assert!((0..1000).all(|_| a.below(7) < 7));
        assert_eq!(a.below(0), 0);
        assert!(now_ms() > 1_600_000_000_000);
    }
}
