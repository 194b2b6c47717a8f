//! RecordBatch v2 header parsing and validation.
//!
//! Owns the only code that interprets batch bytes coming from the outside (producers) or from disk.
//! It never panics on any input: every access is bounds-checked and every malformed shape is a
//! [`BatchError`]. The on-disk batch is the wire batch, byte for byte.
//!
//! ```text
//! RecordBatch v2 (all integers big-endian)
//! off size field
//!   0   8  base_offset              ┐ rewritten by the broker on append
//!   8   4  batch_length             │ (= total size - 12)
//!  12   4  partition_leader_epoch   ┘ rewritten by the broker on append
//!  16   1  magic (= 2)
//!  17   4  crc (CRC-32C over bytes 21..end)
//!  21   2  attributes  bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control
//!  23   4  last_offset_delta
//!  27   8  base_timestamp
//!  35   8  max_timestamp
//!  43   8  producer_id
//!  51   2  producer_epoch
//!  53   4  base_sequence
//!  57   4  records_count
//!  61   …  records (opaque to storage)
//! ```
//!
//! Invariants checked by [`BatchHeader::parse`] (plus CRC by [`BatchHeader::verify_crc`]):
//! magic 2, `batch_length >= 49`, `records_count >= 1`, `last_offset_delta >= records_count - 1`.

use thiserror::Error;

use crate::records::read_varint;

/// Size of the fixed RecordBatch v2 header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// `batch_length` counts everything after the first 12 bytes (base_offset + batch_length).
pub const BATCH_LENGTH_OFFSET_BYTES: usize = 12;
/// Smallest legal `batch_length` (a header with zero records bytes).
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - BATCH_LENGTH_OFFSET_BYTES) as i32;
/// Byte range covered by the CRC starts here (attributes).
pub const CRC_START: usize = 21;

pub(crate) const OFF_BASE_OFFSET: usize = 0;
pub(crate) const OFF_PARTITION_LEADER_EPOCH: usize = 12;
pub(crate) const OFF_CRC: usize = 17;
pub(crate) const OFF_ATTRIBUTES: usize = 21;
pub(crate) const OFF_MAX_TIMESTAMP: usize = 35;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub(crate) const ATTR_TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// A malformed record batch. Every variant is a client (or disk) problem, never a bug.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("record set is empty")]
    Empty,
    #[error("batch header truncated: {available} bytes, need {needed}")]
    TooShort { available: usize, needed: usize },
    #[error("batch_length {batch_length} is below the minimum {min}", min = BATCH_LENGTH_MIN)]
    BadLength { batch_length: i32 },
    #[error("batch claims {needed} bytes but only {available} remain")]
    LengthMismatch { needed: usize, available: usize },
    #[error("unsupported magic {magic} (only RecordBatch v2 is accepted)")]
    BadMagic { magic: i8 },
    #[error("CRC mismatch: header {expected:#010x}, computed {actual:#010x}")]
    BadCrc { expected: u32, actual: u32 },
    #[error("records_count {records_count} must be >= 1")]
    BadRecordCount { records_count: i32 },
    #[error(
        "last_offset_delta {last_offset_delta} inconsistent with records_count {records_count}"
    )]
    BadOffsetDelta {
        last_offset_delta: i32,
        records_count: i32,
    },
    #[error("offset overflow: base {base_offset} + delta {last_offset_delta}")]
    OffsetOverflow {
        base_offset: i64,
        last_offset_delta: i32,
    },
    #[error(
        "inconsistent batch offset range: last_offset_delta {last_offset_delta} with {records_count} records"
    )]
    InconsistentOffsetRange {
        last_offset_delta: i32,
        records_count: i32,
    },
    #[error("record {index} has offset delta {offset_delta}, expected {index}")]
    RecordOffsetDelta { index: i32, offset_delta: i64 },
    #[error("malformed record {index}: {what}")]
    MalformedRecord { index: i32, what: &'static str },
}

impl BatchError {
    /// A batch that is well formed but that Kafka refuses to append (INVALID_RECORD rather than
    /// CORRUPT_MESSAGE).
    pub fn is_invalid_record(&self) -> bool {
        matches!(
            self,
            BatchError::InconsistentOffsetRange { .. }
                | BatchError::RecordOffsetDelta { .. }
                | BatchError::MalformedRecord { .. }
        )
    }
}

/// The fixed header of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses and checks the fixed header at the start of `buf` (which may extend past the batch).
    /// Does not check that the whole batch is present nor its CRC; see [`validate_batches`].
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::TooShort {
                available: buf.len(),
                needed: BATCH_HEADER_BYTES,
            });
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if h.batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::BadLength {
                batch_length: h.batch_length,
            });
        }
        if h.magic != 2 {
            return Err(BatchError::BadMagic { magic: h.magic });
        }
        if h.records_count < 1 {
            return Err(BatchError::BadRecordCount {
                records_count: h.records_count,
            });
        }
        // Every record has a distinct offset delta in 0..=last_offset_delta.
        if h.last_offset_delta < 0 || (h.last_offset_delta as i64) < h.records_count as i64 - 1 {
            return Err(BatchError::BadOffsetDelta {
                last_offset_delta: h.last_offset_delta,
                records_count: h.records_count,
            });
        }
        Ok(h)
    }

    /// Whole batch size on disk / on the wire: 12 + batch_length.
    pub fn total_size(&self) -> usize {
        BATCH_LENGTH_OFFSET_BYTES + self.batch_length.max(0) as usize
    }

    /// Offset of the last record. Saturates instead of overflowing (see `checked_last_offset`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    pub(crate) fn checked_last_offset(&self) -> Result<i64, BatchError> {
        self.base_offset
            .checked_add(self.last_offset_delta as i64)
            .ok_or(BatchError::OffsetOverflow {
                base_offset: self.base_offset,
                last_offset_delta: self.last_offset_delta,
            })
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    /// True if the timestamp-type attribute says LogAppendTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE_LOG_APPEND != 0
    }

    /// Checks the CRC-32C of the complete batch `batch` (exactly `total_size()` bytes).
    pub fn verify_crc(&self, batch: &[u8]) -> Result<(), BatchError> {
        if batch.len() < self.total_size() || batch.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::LengthMismatch {
                needed: self.total_size(),
                available: batch.len(),
            });
        }
        let actual = crc32c::crc32c(&batch[CRC_START..self.total_size()]);
        if actual != self.crc {
            return Err(BatchError::BadCrc {
                expected: self.crc,
                actual,
            });
        }
        Ok(())
    }
}

/// Parses and fully checks the batch at the start of `buf`: header, presence of all its bytes, CRC.
pub fn parse_checked(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(buf)?;
    let size = h.total_size();
    if buf.len() < size {
        return Err(BatchError::LengthMismatch {
            needed: size,
            available: buf.len(),
        });
    }
    h.checked_last_offset()?;
    h.verify_crc(&buf[..size])?;
    Ok(h)
}

/// Validates a produce record set: one or more RecordBatch v2 back to back, nothing after the last.
pub fn validate_batches(records: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let h = parse_checked(&records[pos..])?;
        pos += h.total_size();
        out.push(h);
    }
    Ok(out)
}

/// Validates a record set to be appended, as Kafka's log validator does for client batches:
/// [`validate_batches`], plus `last_offset_delta == records_count - 1`, and for uncompressed
/// batches each record's framing and offset delta `0..records_count` in order (a record whose
/// delta points into later offsets makes consumers skip other producers' records).
pub fn validate_for_append(records: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    let headers = validate_batches(records)?;
    let mut pos = 0usize;
    for h in &headers {
        if h.last_offset_delta as i64 != h.records_count as i64 - 1 {
            return Err(BatchError::InconsistentOffsetRange {
                last_offset_delta: h.last_offset_delta,
                records_count: h.records_count,
            });
        }
        if h.compression() == 0 {
            check_record_offsets(h, &records[pos + BATCH_HEADER_BYTES..pos + h.total_size()])?;
        }
        pos += h.total_size();
    }
    Ok(headers)
}

/// Walks the records of an uncompressed batch (`body`: the bytes after the header): each is
/// `length: varint, attributes: i8, timestamp_delta: varlong, offset_delta: varint, ...`.
fn check_record_offsets(h: &BatchHeader, body: &[u8]) -> Result<(), BatchError> {
    let mut pos = 0usize;
    for index in 0..h.records_count {
        let bad = |what| BatchError::MalformedRecord { index, what };
        let (len, n) = read_varint(&body[pos..]).ok_or(bad("bad length"))?;
        pos += n;
        let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
        let record = body
            .get(pos..pos.saturating_add(len))
            .ok_or(bad("length past the end of the batch"))?;
        let rest = record.get(1..).ok_or(bad("truncated"))?;
        let (_, n) = read_varint(rest).ok_or(bad("bad timestamp delta"))?;
        let (offset_delta, _) = read_varint(&rest[n..]).ok_or(bad("bad offset delta"))?;
        if offset_delta != index as i64 {
            return Err(BatchError::RecordOffsetDelta {
                index,
                offset_delta,
            });
        }
        pos += len;
    }
    if pos != body.len() {
        return Err(BatchError::MalformedRecord {
            index: h.records_count,
            what: "bytes after the last record",
        });
    }
    Ok(())
}

/// Rewrites the fields the broker owns in the batch at the start of `batch`:
/// base_offset and partition_leader_epoch (both outside the CRC). With `log_append_time_ms`,
/// also sets the timestamp-type bit and max_timestamp, and recomputes the CRC.
/// `batch` must be a batch that passed [`parse_checked`].
pub(crate) fn rewrite_header(
    batch: &mut [u8],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time_ms: Option<i64>,
) {
    debug_assert!(batch.len() >= BATCH_HEADER_BYTES);
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFF_PARTITION_LEADER_EPOCH..OFF_PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(now_ms) = log_append_time_ms {
        let attrs = be_i16(batch, OFF_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE_LOG_APPEND;
        batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
        batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{build_batch, BatchSpec};

    #[test]
    fn parses_built_batch() {
        let b = build_batch(&BatchSpec::new(5).base_timestamp(1000));
        let hs = validate_batches(&b).unwrap();
        assert_eq!(hs.len(), 1);
        let h = hs[0];
        assert_eq!(h.records_count, 5);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.max_timestamp, 1004);
        assert_eq!(h.compression(), 0);
        assert!(!h.is_control() && !h.is_transactional());
    }

    #[test]
    fn several_batches_back_to_back() {
        let mut v = build_batch(&BatchSpec::new(1));
        v.extend_from_slice(&build_batch(&BatchSpec::new(3)));
        assert_eq!(validate_batches(&v).unwrap().len(), 2);
        v.push(0);
        assert!(validate_batches(&v).is_err(), "trailing garbage");
    }

    #[test]
    fn malformed_inputs() {
        let good = build_batch(&BatchSpec::new(2));
        assert_eq!(validate_batches(&[]), Err(BatchError::Empty));
        assert!(matches!(
            validate_batches(&good[..10]),
            Err(BatchError::TooShort { .. })
        ));
        assert!(matches!(
            validate_batches(&good[..good.len() - 1]),
            Err(BatchError::LengthMismatch { .. })
        ));
        let mut bad = good.clone();
        bad[16] = 1;
        assert!(matches!(
            validate_batches(&bad),
            Err(BatchError::BadMagic { magic: 1 })
        ));
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            validate_batches(&bad),
            Err(BatchError::BadCrc { .. })
        ));
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&bad),
            Err(BatchError::BadLength { .. })
        ));
        let mut bad = good.clone();
        bad[57..61].copy_from_slice(&0i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&bad),
            Err(BatchError::BadRecordCount { .. })
        ));
        let mut bad = good.clone();
        bad[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            validate_batches(&bad),
            Err(BatchError::BadOffsetDelta { .. })
        ));
        let mut bad = good.clone();
        bad[0..8].copy_from_slice(&i64::MAX.to_be_bytes());
        assert!(matches!(
            validate_batches(&bad),
            Err(BatchError::OffsetOverflow { .. })
        ));
    }

    /// Re-encodes the batch's CRC after a test edited its bytes.
    fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn append_validation_refuses_what_kafka_refuses() {
        let good = build_batch(&BatchSpec::new(3));
        assert_eq!(validate_for_append(&good).unwrap().len(), 1);
        // last_offset_delta beyond records_count - 1: a valid shape for a compacted batch on
        // disk, refused from a producer.
        let mut bad = good.clone();
        bad[23..27].copy_from_slice(&5i32.to_be_bytes());
        fix_crc(&mut bad);
        validate_batches(&bad).unwrap();
        let e = validate_for_append(&bad).unwrap_err();
        assert!(
            matches!(e, BatchError::InconsistentOffsetRange { .. }),
            "{e:?}"
        );
        assert!(e.is_invalid_record());
        // The second record claims offset delta 2 (the first record's fields are one byte each
        // here: length, attributes, timestamp delta, offset delta).
        let mut bad = good.clone();
        let first_len = read_varint(&bad[BATCH_HEADER_BYTES..]).unwrap();
        let second = BATCH_HEADER_BYTES + first_len.1 + first_len.0 as usize;
        let (_, n) = read_varint(&bad[second..]).unwrap();
        let (_, t) = read_varint(&bad[second + n + 1..]).unwrap();
        let at = second + n + 1 + t;
        assert_eq!(read_varint(&bad[at..]).unwrap().0, 1);
        bad[at] = 4; // zigzag(2)
        fix_crc(&mut bad);
        validate_batches(&bad).unwrap();
        assert_eq!(
            validate_for_append(&bad),
            Err(BatchError::RecordOffsetDelta {
                index: 1,
                offset_delta: 2
            })
        );
        // More records claimed than present.
        let mut bad = good.clone();
        bad[57..61].copy_from_slice(&4i32.to_be_bytes());
        bad[23..27].copy_from_slice(&3i32.to_be_bytes());
        fix_crc(&mut bad);
        assert!(matches!(
            validate_for_append(&bad),
            Err(BatchError::MalformedRecord { index: 3, .. })
        ));
        // Fewer records claimed than present.
        let mut bad = good.clone();
        bad[57..61].copy_from_slice(&2i32.to_be_bytes());
        bad[23..27].copy_from_slice(&1i32.to_be_bytes());
        fix_crc(&mut bad);
        assert!(matches!(
            validate_for_append(&bad),
            Err(BatchError::MalformedRecord { index: 2, .. })
        ));
        // Random record bytes never panic.
        let mut rng = crate::test_util::Rng::new(0xbad);
        for _ in 0..2000 {
            let mut v = good.clone();
            for _ in 0..1 + rng.below(4) {
                let at =
                    BATCH_HEADER_BYTES + rng.below((v.len() - BATCH_HEADER_BYTES) as u64) as usize;
                v[at] = rng.next_u64() as u8;
            }
            fix_crc(&mut v);
            let _ = validate_for_append(&v);
        }
    }

    #[test]
    fn rewrite_keeps_crc_valid() {
        let mut b = build_batch(&BatchSpec::new(3));
        rewrite_header(&mut b, 42, 7, None);
        let h = parse_checked(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        rewrite_header(&mut b, 43, 8, Some(99_999));
        let h = parse_checked(&b).unwrap();
        assert_eq!(h.max_timestamp, 99_999);
        assert!(h.is_log_append_time());
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = crate::test_util::Rng::new(0x5eed);
        let good = build_batch(&BatchSpec::new(4));
        for i in 0..5000 {
            let mut v = if i % 2 == 0 {
                good.clone()
            } else {
                let n = rng.below(200) as usize;
                (0..n).map(|_| rng.next_u64() as u8).collect()
            };
            for _ in 0..rng.below(4) {
                if !v.is_empty() {
                    let at = rng.below(v.len() as u64) as usize;
                    v[at] = rng.next_u64() as u8;
                }
            }
            let cut = rng.below(v.len() as u64 + 1) as usize;
            let _ = validate_batches(&v[..cut]);
            let _ = crate::scan::scan_segment(&v[..cut]);
        }
    }
}
