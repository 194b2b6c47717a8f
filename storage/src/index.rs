//! Sparse offset index and time index of one segment, kept in memory and persisted as
//! `<base>.index` / `<base>.timeindex` when a segment is sealed (roll), on close and after recovery.
//!
//! In memory: `offsets[i] = (base_offset - segment_base, file position)` of a batch start, one
//! per `index_interval_bytes`; `times[i] = (running max timestamp up to and including that batch,
//! its relative offset)`, strictly increasing timestamps.
//!
//! ```text
//! file layout (both files, big-endian)
//!   0 u32 magic "SLIX" (.index) / "SLTI" (.timeindex)
//!   4 u16 version = 1          6 u16 entry_bytes (8 / 12)
//!   8 i64 base_offset         16 u64 log_size (bytes of .log this index covers; all fsynced)
//!  24 i64 next_offset (offset after the last covered batch)
//!  32 i64 max_timestamp       40 i64 max_timestamp_offset
//!  48 u32 entry_count         52 u32 crc32c(bytes 0..52 ++ entries)
//!  56 entries: .index (u32 rel_offset, u32 position) | .timeindex (i64 timestamp, u32 rel_offset)
//! ```
//!
//! The index files are derived data: on any mismatch (CRC, magic, base, bounds, non-monotonic
//! entries) recovery ignores them and rebuilds by scanning the segment.

use sluice_base::Reader;

const INDEX_MAGIC: u32 = u32::from_be_bytes(*b"SLIX");
const TIME_MAGIC: u32 = u32::from_be_bytes(*b"SLTI");
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 56;

/// What the index knows about the covered part of its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexSummary {
    pub base_offset: i64,
    pub log_size: u64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub max_timestamp_offset: i64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentIndex {
    pub offsets: Vec<(u32, u32)>,
    pub times: Vec<(i64, u32)>,
    bytes_since_entry: u64,
}

impl SegmentIndex {
    /// Records a batch starting at `pos` with relative offset `rel`; `running_max_ts` is the
    /// segment's max timestamp including this batch.
    pub fn on_batch(&mut self, rel: u32, pos: u32, size: u32, running_max_ts: i64, interval: u32) {
        if pos > 0 && self.bytes_since_entry >= interval as u64 {
            self.offsets.push((rel, pos));
            if self.times.last().is_none_or(|&(t, _)| running_max_ts > t) {
                self.times.push((running_max_ts, rel));
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += size as u64;
    }

    /// File position of the last indexed batch starting at or before relative offset `rel`.
    pub fn lookup(&self, rel: u32) -> u32 {
        let i = self.offsets.partition_point(|&(r, _)| r <= rel);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].1
        }
    }

    /// A position from which a forward scan finds the first batch with max_timestamp >= ts.
    pub fn lookup_time(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|&(t, _)| t < ts);
        if i == 0 {
            0
        } else {
            self.lookup(self.times[i - 1].1)
        }
    }

    pub fn encode(&self, s: &IndexSummary) -> (Vec<u8>, Vec<u8>) {
        let mut idx = header(INDEX_MAGIC, 8, s, self.offsets.len());
        for (r, p) in &self.offsets {
            idx.extend_from_slice(&r.to_be_bytes());
            idx.extend_from_slice(&p.to_be_bytes());
        }
        let mut tim = header(TIME_MAGIC, 12, s, self.times.len());
        for (t, r) in &self.times {
            tim.extend_from_slice(&t.to_be_bytes());
            tim.extend_from_slice(&r.to_be_bytes());
        }
        (seal(idx), seal(tim))
    }

    /// Decodes both files; `None` unless both are intact and agree with each other and `base`.
    pub fn decode(base: i64, idx: &[u8], tim: &[u8]) -> Option<(SegmentIndex, IndexSummary)> {
        let (s1, oe) = open(idx, INDEX_MAGIC, 8, base)?;
        let (s2, te) = open(tim, TIME_MAGIC, 12, base)?;
        if s1 != s2 {
            return None;
        }
        let span = s1.next_offset.checked_sub(base)?;
        let mut offsets = Vec::with_capacity(oe.len() / 8);
        let mut oe = Reader::new(oe);
        while !oe.is_empty() {
            let (r, p) = (oe.u32()?, oe.u32()?);
            if (r as i64) >= span || p as u64 >= s1.log_size {
                return None;
            }
            if offsets.last().is_some_and(|&(lr, lp)| r <= lr || p <= lp) {
                return None;
            }
            offsets.push((r, p));
        }
        let mut times = Vec::with_capacity(te.len() / 12);
        let mut te = Reader::new(te);
        while !te.is_empty() {
            let (t, r) = (te.i64()?, te.u32()?);
            if (r as i64) >= span || times.last().is_some_and(|&(lt, lr)| t <= lt || r <= lr) {
                return None;
            }
            times.push((t, r));
        }
        Some((
            SegmentIndex {
                offsets,
                times,
                bytes_since_entry: 0,
            },
            s1,
        ))
    }
}

fn header(magic: u32, entry_bytes: u16, s: &IndexSummary, count: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_BYTES + count * entry_bytes as usize);
    v.extend_from_slice(&magic.to_be_bytes());
    v.extend_from_slice(&VERSION.to_be_bytes());
    v.extend_from_slice(&entry_bytes.to_be_bytes());
    v.extend_from_slice(&s.base_offset.to_be_bytes());
    v.extend_from_slice(&s.log_size.to_be_bytes());
    v.extend_from_slice(&s.next_offset.to_be_bytes());
    v.extend_from_slice(&s.max_timestamp.to_be_bytes());
    v.extend_from_slice(&s.max_timestamp_offset.to_be_bytes());
    v.extend_from_slice(&(count as u32).to_be_bytes());
    v.extend_from_slice(&[0; 4]); // crc placeholder
    v
}

fn seal(mut v: Vec<u8>) -> Vec<u8> {
    let mut crc = crc32c::crc32c(&v[..52]);
    crc = crc32c::crc32c_append(crc, &v[HEADER_BYTES..]);
    v[52..56].copy_from_slice(&crc.to_be_bytes());
    v
}

fn open(b: &[u8], magic: u32, entry_bytes: u16, base: i64) -> Option<(IndexSummary, &[u8])> {
    let crc_covered = b.get(..52)?;
    let mut r = Reader::new(b);
    let (file_magic, version, file_entry_bytes) = (r.u32()?, r.u16()?, r.u16()?);
    let s = IndexSummary {
        base_offset: r.i64()?,
        log_size: r.u64()?,
        next_offset: r.i64()?,
        max_timestamp: r.i64()?,
        max_timestamp_offset: r.i64()?,
    };
    let count = r.u32()? as usize;
    let crc = r.u32()?;
    let entries = r.rest();
    if crc != crc32c::crc32c_append(crc32c::crc32c(crc_covered), entries)
        || file_magic != magic
        || version != VERSION
        || file_entry_bytes != entry_bytes
        || entries.len() != count.checked_mul(entry_bytes as usize)?
        || s.base_offset != base
        || s.next_offset < base
    {
        return None;
    }
    Some((s, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_round_trip() {
        let mut ix = SegmentIndex::default();
        let mut pos = 0u32;
        for i in 0..100u32 {
            ix.on_batch(i * 2, pos, 1000, 1000 + i as i64, 4096);
            pos += 1000;
        }
        assert!(!ix.offsets.is_empty());
        assert_eq!(ix.lookup(0), 0);
        let (r, p) = ix.offsets[3];
        assert_eq!(ix.lookup(r), p);
        assert_eq!(ix.lookup(r + 1), p);
        let s = IndexSummary {
            base_offset: 500,
            log_size: pos as u64,
            next_offset: 700,
            max_timestamp: 1099,
            max_timestamp_offset: 699,
        };
        let (a, b) = ix.encode(&s);
        let (ix2, s2) = SegmentIndex::decode(500, &a, &b).unwrap();
        assert_eq!(s2, s);
        assert_eq!(ix2.offsets, ix.offsets);
        assert_eq!(ix2.times, ix.times);
        assert!(SegmentIndex::decode(501, &a, &b).is_none());
        for i in 0..a.len() {
            let mut d = a.clone();
            d[i] ^= 4;
            assert!(SegmentIndex::decode(500, &d, &b).is_none(), "flip {i}");
        }
    }
}
