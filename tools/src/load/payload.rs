//! Payloads and keys.
//!
//! Payload layout (all sizes in bytes, `size` = `--message-size`):
//!
//! ```text
//! 0        8                      8+random_len                  size
//! +--------+----------------------+-----------------------------+
//! | stamp  | random bytes         | repetitive filler text      |
//! +--------+----------------------+-----------------------------+
//!   u64 BE   random_len = round(random_ratio * (size - 8))
//! ```
//!
//! `stamp` is the message's *intended* send time in nanoseconds since the Unix epoch, which
//! consumers (in this or another process on the same clock) turn into end-to-end latency.
//! Payloads shorter than 8 bytes carry no stamp; consumers then use the record timestamp.
//! Random bytes come from a SplitMix64 generator seeded by `--seed`, fresh for every message, so
//! compressors cannot find redundancy across messages that a real workload would not have.

/// Bytes taken by the send-time stamp at the start of a payload.
pub const STAMP_BYTES: usize = 8;

const FILLER: &[u8] = b"sluice-load repetitive filler 0123456789 abcdefghijklmnopqrstuvwxyz. ";

/// SplitMix64: tiny, fast, good enough for payload bytes (not for anything secret).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let bytes = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&bytes[..rest.len()]);
        }
    }
}

/// Builds one payload after another into a reused buffer.
pub struct PayloadGen {
    buf: Vec<u8>,
    stamped: bool,
    random_len: usize,
    rng: SplitMix64,
}

impl PayloadGen {
    pub fn new(size: usize, random_ratio: f64, seed: u64) -> Self {
        let stamped = size >= STAMP_BYTES;
        let body = if stamped { size - STAMP_BYTES } else { size };
        let random_len = ((random_ratio.clamp(0.0, 1.0) * body as f64).round() as usize).min(body);
        let mut buf = vec![0u8; size];
        let filler_start = size - body + random_len;
        for (i, b) in buf[filler_start..].iter_mut().enumerate() {
            *b = FILLER[i % FILLER.len()];
        }
        PayloadGen {
            buf,
            stamped,
            random_len,
            rng: SplitMix64::new(seed),
        }
    }

    /// Random bytes per payload.
    #[cfg(test)]
    pub fn random_len(&self) -> usize {
        self.random_len
    }

    /// The next payload, stamped with `stamp_epoch_ns`.
    pub fn next(&mut self, stamp_epoch_ns: u64) -> &[u8] {
        let body_start = if self.stamped {
            self.buf[..STAMP_BYTES].copy_from_slice(&stamp_epoch_ns.to_be_bytes());
            STAMP_BYTES
        } else {
            0
        };
        let random_end = body_start + self.random_len;
        self.rng.fill(&mut self.buf[body_start..random_end]);
        &self.buf
    }
}

/// The stamp of a payload, if it is long enough to carry one.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let head: [u8; STAMP_BYTES] = payload.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_be_bytes(head))
}

/// Writes the key of message `sequence` (round-robin over `key_count` keys) into `out`.
pub fn write_key(out: &mut String, sequence: u64, key_count: u64) {
    use std::fmt::Write;
    out.clear();
    // Writing to a String cannot fail.
    let _ = write!(out, "key-{:08}", sequence % key_count.max(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_sizes() {
        let mut g = PayloadGen::new(1024, 0.5, 1);
        assert_eq!(g.random_len(), 508);
        let p = g.next(0x0102_0304_0506_0708).to_vec();
        assert_eq!(p.len(), 1024);
        assert_eq!(read_stamp(&p), Some(0x0102_0304_0506_0708));
        assert_eq!(&p[8 + 508..8 + 508 + 11], b"sluice-load");
    }

    #[test]
    fn random_part_changes_filler_does_not() {
        let mut g = PayloadGen::new(256, 0.25, 9);
        let a = g.next(1).to_vec();
        let b = g.next(2).to_vec();
        let r = g.random_len();
        assert_eq!(r, 62);
        assert_ne!(a[8..8 + r], b[8..8 + r]);
        assert_eq!(a[8 + r..], b[8 + r..]);
    }

    #[test]
    fn ratio_extremes() {
        let mut g = PayloadGen::new(100, 0.0, 1);
        assert_eq!(g.random_len(), 0);
        let p = g.next(5).to_vec();
        assert!(p[8..].iter().all(|b| FILLER.contains(b)));
        let g = PayloadGen::new(100, 1.0, 1);
        assert_eq!(g.random_len(), 92);
    }

    #[test]
    fn tiny_payloads_carry_no_stamp() {
        let mut g = PayloadGen::new(4, 1.0, 1);
        assert_eq!(g.next(77).len(), 4);
        assert_eq!(read_stamp(&[1, 2, 3]), None);
        let mut g = PayloadGen::new(0, 0.5, 1);
        assert!(g.next(1).is_empty());
        let mut g = PayloadGen::new(8, 0.5, 1);
        assert_eq!(read_stamp(g.next(42)), Some(42));
    }

    #[test]
    fn same_seed_same_bytes() {
        let mut a = PayloadGen::new(64, 1.0, 42);
        let mut b = PayloadGen::new(64, 1.0, 42);
        assert_eq!(a.next(0), b.next(0));
        let mut c = PayloadGen::new(64, 1.0, 43);
        assert_ne!(a.next(0), c.next(0));
    }

    #[test]
    fn random_bytes_look_random() {
        // A crude check that the generator is not stuck: all 256 byte values appear.
        let mut rng = SplitMix64::new(3);
        let mut buf = vec![0u8; 64 * 1024];
        rng.fill(&mut buf);
        let mut seen = [false; 256];
        for b in &buf {
            seen[*b as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn keys_cycle() {
        let mut k = String::new();
        write_key(&mut k, 3, 10);
        assert_eq!(k, "key-00000003");
        write_key(&mut k, 13, 10);
        assert_eq!(k, "key-00000003");
        write_key(&mut k, 5, 0);
        assert_eq!(k, "key-00000000");
    }
}
