//! Recovery scanner: walks raw segment bytes batch by batch and reports where the valid prefix ends.
//!
//! Pure function over bytes, shared by recovery, `segdump` and the fuzz target. A segment file is
//! a sequence of complete RecordBatch v2 (see `batch.rs`) possibly followed by a torn batch,
//! zero padding (O_DIRECT tail block / crash) or garbage:
//!
//! ```text
//! | batch | batch | ... | batch | torn batch / 0x00 padding / garbage |
//! ^0                             ^valid_len
//! ```
//!
//! A batch is accepted only if its header parses, all its bytes are present, its CRC matches and
//! its base offset is greater than the previous batch's last offset (offsets strictly increase).

use crate::batch::{parse_checked, BatchError, BatchHeader, BATCH_HEADER_BYTES};

/// One valid batch found by the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Byte position of the batch within the scanned bytes.
    pub position: u64,
    pub size: u32,
    pub max_timestamp: i64,
    pub records_count: i32,
    pub partition_leader_epoch: i32,
}

/// Why the scan stopped at `valid_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// All bytes were consumed by valid batches.
    End,
    /// Everything from `valid_len` on is zero (preallocation or O_DIRECT padding): a clean tail.
    Zeros,
    /// A batch header at `valid_len` claims `needed` bytes but fewer remain (torn write, or the
    /// caller handed over only a prefix of the file).
    Incomplete { needed: u64 },
    /// The bytes at `valid_len` are not a valid batch.
    Invalid(BatchError),
    /// The batch at `valid_len` is valid but its offsets do not follow the previous batch.
    NonMonotonic {
        base_offset: i64,
        previous_last: i64,
    },
}

/// Result of [`scan_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanResult {
    pub batches: Vec<ScannedBatch>,
    /// Length of the valid prefix.
    pub valid_len: u64,
    pub stop: ScanStop,
}

impl ScanResult {
    /// True if the scan ended at a clean boundary (all bytes valid, or only zero padding after).
    pub fn is_clean(&self) -> bool {
        matches!(self.stop, ScanStop::End | ScanStop::Zeros)
    }
}

/// Scans `bytes` from position 0. Never panics.
pub fn scan_segment(bytes: &[u8]) -> ScanResult {
    scan_from(bytes, None)
}

/// Like [`scan_segment`], requiring the first batch's base offset to be greater than
/// `previous_last` when given (used when scanning a segment in chunks).
pub fn scan_from(bytes: &[u8], previous_last: Option<i64>) -> ScanResult {
    let mut batches = Vec::new();
    let mut pos = 0usize;
    let mut prev = previous_last;
    let stop = loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            break ScanStop::End;
        }
        let parsed = parse_checked(rest);
        if parsed.is_err() && rest.iter().all(|&b| b == 0) {
            break ScanStop::Zeros;
        }
        match parsed {
            Ok(h) => {
                if let Some(p) = prev {
                    if h.base_offset <= p {
                        break ScanStop::NonMonotonic {
                            base_offset: h.base_offset,
                            previous_last: p,
                        };
                    }
                }
                let last = h.last_offset();
                batches.push(scanned(&h, pos as u64));
                prev = Some(last);
                pos += h.total_size();
            }
            Err(BatchError::LengthMismatch { needed, .. }) => {
                break ScanStop::Incomplete {
                    needed: needed as u64,
                }
            }
            Err(BatchError::TooShort { .. }) if rest.len() < BATCH_HEADER_BYTES => {
                break ScanStop::Incomplete {
                    needed: BATCH_HEADER_BYTES as u64,
                }
            }
            Err(e) => break ScanStop::Invalid(e),
        }
    };
    ScanResult {
        batches,
        valid_len: pos as u64,
        stop,
    }
}

/// The scanner's record of the batch with header `h` at `position`.
pub(crate) fn scanned(h: &BatchHeader, position: u64) -> ScannedBatch {
    ScannedBatch {
        base_offset: h.base_offset,
        last_offset: h.last_offset(),
        position,
        size: h.total_size() as u32,
        max_timestamp: h.max_timestamp,
        records_count: h.records_count,
        partition_leader_epoch: h.partition_leader_epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::rewrite_header;
    use crate::test_util::{build_batch, BatchSpec};

    fn segment(n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut v = Vec::new();
        let mut ends = Vec::new();
        let mut off = 0i64;
        for i in 0..n {
            let mut b = build_batch(&BatchSpec::new(1 + i as i32 % 3));
            rewrite_header(&mut b, off, 0, None);
            off += 1 + i as i64 % 3;
            v.extend_from_slice(&b);
            ends.push(v.len());
        }
        (v, ends)
    }

    #[test]
    fn clean_and_zero_tail() {
        let (mut v, ends) = segment(5);
        let r = scan_segment(&v);
        assert_eq!(r.batches.len(), 5);
        assert_eq!(r.stop, ScanStop::End);
        v.extend_from_slice(&[0; 5000]);
        let r = scan_segment(&v);
        assert_eq!(r.stop, ScanStop::Zeros);
        assert_eq!(r.valid_len as usize, ends[4]);
    }

    #[test]
    fn every_cut_and_flip_of_last_batch() {
        let (v, ends) = segment(4);
        let start = ends[2];
        for cut in start..v.len() {
            let r = scan_segment(&v[..cut]);
            assert_eq!(r.batches.len(), 3, "cut {cut}");
            assert_eq!(r.valid_len as usize, start);
        }
        for at in start..v.len() {
            let mut w = v.clone();
            w[at] ^= 0x5a;
            let r = scan_segment(&w);
            // Flipping base_offset/leader-epoch bytes keeps the CRC valid; the batch may survive
            // with different offsets only if they still increase.
            if at < start + 8 || (start + 12..start + 16).contains(&at) {
                continue;
            }
            assert_eq!(r.batches.len(), 3, "flip at {at}");
            assert_eq!(r.valid_len as usize, start);
        }
    }

    #[test]
    fn non_monotonic_offsets_stop() {
        let mut a = build_batch(&BatchSpec::new(2));
        rewrite_header(&mut a, 10, 0, None);
        let mut b = build_batch(&BatchSpec::new(1));
        rewrite_header(&mut b, 11, 0, None);
        a.extend_from_slice(&b);
        let r = scan_segment(&a);
        assert_eq!(r.batches.len(), 1);
        assert!(matches!(r.stop, ScanStop::NonMonotonic { .. }));
    }
}
