//! The aborted-transaction index of a sealed segment, `<base>.txnindex` (Kafka's `.txnindex`):
//! the aborted transactions whose abort marker lies in the segment, which a read_committed
//! fetch of the segment's offsets (or earlier ones: a transaction may span segments) names.
//!
//! ```text
//! magic "SLTX" | version u16 = 1 | crc32c u32 (of everything after it) | count u32 |
//!   producer_id i64 | first_offset i64 | last_offset i64   (× count, in last_offset order)
//! ```
//!
//! `last_offset` is the abort marker's offset. A segment's entries are those whose marker lies in
//! `[base, next_offset)`: a file may hold more (the cleaner writes the union of the segments it
//! merges under the first one's name before its swap commits, see `log/compact.rs`) and readers
//! filter. Who writes it, and the active segment's aborted transactions (in the producer state
//! and its snapshot, not in a file), are described in `log/mod.rs`.

use sluice_base::Reader;

use crate::txn::AbortedTxn;

const MAGIC: &[u8; 4] = b"SLTX";
const VERSION: u16 = 1;
const ENTRY_BYTES: usize = 24;

/// What memory keeps of a sealed segment's index: enough to know whether a fetch must read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnSummary {
    pub count: u32,
    /// The smallest first offset of the segment's aborted transactions.
    pub min_first_offset: i64,
}

/// Appends `count u32 | (producer_id i64, first_offset i64, last_offset i64) × count`: the
/// list in an index file and in the producer snapshot.
pub(crate) fn put_entries<'a>(
    body: &mut Vec<u8>,
    entries: impl ExactSizeIterator<Item = &'a AbortedTxn>,
) {
    body.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for a in entries {
        body.extend_from_slice(&a.producer_id.to_be_bytes());
        body.extend_from_slice(&a.first_offset.to_be_bytes());
        body.extend_from_slice(&a.last_offset.to_be_bytes());
    }
}

/// Reads what [`put_entries`] wrote; `None` if the input is short (a hostile count allocates
/// nothing past the input).
pub(crate) fn get_entries(r: &mut Reader<'_>) -> Option<Vec<AbortedTxn>> {
    let count = r.u32()? as usize;
    if count > r.remaining() / ENTRY_BYTES {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(AbortedTxn {
            producer_id: r.i64()?,
            first_offset: r.i64()?,
            last_offset: r.i64()?,
        });
    }
    Some(out)
}

pub(crate) fn encode(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + entries.len() * ENTRY_BYTES);
    put_entries(&mut body, entries.iter());
    let mut out = Vec::with_capacity(10 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The entries of an index file, or `None` if it is damaged. Never panics.
pub fn decode(bytes: &[u8]) -> Option<Vec<AbortedTxn>> {
    let mut r = Reader::new(bytes);
    if r.take(4)? != MAGIC || r.u16()? != VERSION {
        return None;
    }
    let crc = r.u32()?;
    if crc32c::crc32c(r.rest()) != crc {
        return None;
    }
    let entries = get_entries(&mut r)?;
    r.is_empty().then_some(entries)
}

/// The entries whose marker lies in `[base, next_offset)`.
pub(crate) fn in_segment(
    entries: &[AbortedTxn],
    base: i64,
    next_offset: i64,
) -> impl Iterator<Item = &AbortedTxn> {
    entries
        .iter()
        .filter(move |a| a.last_offset >= base && a.last_offset < next_offset)
}

/// The summary of a segment's entries (`None`: it has none).
pub(crate) fn summarize(entries: &[AbortedTxn], base: i64, next_offset: i64) -> Option<TxnSummary> {
    in_segment(entries, base, next_offset).fold(None, |acc, a| {
        Some(match acc {
            None => TxnSummary {
                count: 1,
                min_first_offset: a.first_offset,
            },
            Some(s) => TxnSummary {
                count: s.count + 1,
                min_first_offset: s.min_first_offset.min(a.first_offset),
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(producer_id: i64, first_offset: i64, last_offset: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
        }
    }

    #[test]
    fn round_trip_and_summary() {
        let entries = vec![txn(1, 3, 10), txn(2, 0, 12), txn(1, 11, 20)];
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes), Some(entries.clone()));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
        assert_eq!(
            summarize(&entries, 10, 20),
            Some(TxnSummary {
                count: 2,
                min_first_offset: 0
            })
        );
        assert_eq!(summarize(&entries, 21, 30), None);
        assert_eq!(in_segment(&entries, 12, 21).count(), 2);
    }

    #[test]
    fn damaged_files_are_refused_without_panicking() {
        let bytes = encode(&[txn(1, 3, 10), txn(2, 0, 12)]);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert_eq!(decode(&b), None, "bit flipped in byte {i}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        // A count that claims more than the file holds (CRC recomputed).
        let mut b = bytes.clone();
        b[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&b[10..]);
        b[6..10].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&b), None);
    }
}
