//! Transaction markers: Kafka's control batches that commit or abort a producer's transaction
//! in one partition.
//!
//! A marker is a RecordBatch v2 with the transactional and control attributes, the producer's
//! id and epoch, base sequence -1 and one record:
//! ```text
//! key    version i16 = 0 | type i16 (0 = abort, 1 = commit)
//! value  version i16 = 0 | coordinator_epoch i32
//! ```
//! The producer state (`producer.rs`) follows markers: it closes the producer's open
//! transaction and, for an abort, remembers the aborted range so read_committed fetches can
//! name it.

use crate::batch::{BatchHeader, BATCH_HEADER_BYTES, CRC_START};
use crate::records::parse_records;

/// What a control record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

/// An aborted transaction of one producer: its data lies in `first_offset..last_offset`
/// (`last_offset` is the abort marker's offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What the control batch `batch` says: its type and the coordinator epoch in its first
/// record, or `None` if it is not a control batch or not one we know. Never panics.
pub fn parse_marker(batch: &[u8]) -> Option<(ControlType, i32)> {
    let h = BatchHeader::parse(batch).ok()?;
    if !h.is_control() || h.compression() != 0 {
        return None;
    }
    let body = batch.get(BATCH_HEADER_BYTES..h.total_size())?;
    let records = parse_records(body, h.records_count).ok()?;
    let first = records.first()?;
    let kind = match first.key? {
        [0, 0, 0, 0] => ControlType::Abort,
        [0, 0, 0, 1] => ControlType::Commit,
        _ => return None,
    };
    // The value (version 0: coordinator epoch) is optional to us: -1 if absent or unknown.
    let coordinator_epoch = match first.value {
        Some([0, 0, a, b, c, d, ..]) => i32::from_be_bytes([*a, *b, *c, *d]),
        _ => -1,
    };
    Some((kind, coordinator_epoch))
}

/// A marker batch at base offset 0 (the log assigns the offset).
pub fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut key = [0u8; 4];
    key[3] = commit as u8;
    let mut value = [0u8; 6];
    value[2..6].copy_from_slice(&coordinator_epoch.to_be_bytes());
    // One record: attributes 0, timestamp delta 0, offset delta 0, key, value, no headers.
    // Every varint here fits one byte (zigzag: 2n for n < 64).
    let mut record = vec![0u8, 0, 0, (key.len() * 2) as u8];
    record.extend_from_slice(&key);
    record.push((value.len() * 2) as u8);
    record.extend_from_slice(&value);
    record.push(0);
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + 1 + record.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let batch_length = (BATCH_HEADER_BYTES - 12 + 1 + record.len()) as i32;
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch (the log sets it)
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc, below
    b.extend_from_slice(&0x30i16.to_be_bytes()); // transactional | control
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records count
    b.push((record.len() * 2) as u8);
    b.extend_from_slice(&record);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate_for_append;

    #[test]
    fn markers_are_valid_control_batches() {
        for commit in [false, true] {
            let m = encode_marker(42, 7, commit, 3, 1_000);
            let hs = validate_for_append(&m).unwrap();
            assert_eq!(hs.len(), 1);
            let h = &hs[0];
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 7, -1)
            );
            h.verify_crc(&m).unwrap();
            let want = if commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            };
            assert_eq!(parse_marker(&m), Some((want, 3)));
            let body = &m[BATCH_HEADER_BYTES..];
            let r = &parse_records(body, 1).unwrap()[0];
            assert_eq!(r.value, Some(&[0u8, 0, 0, 0, 0, 3][..]));
        }
    }

    #[test]
    fn parse_marker_of_anything_else_is_none() {
        let m = encode_marker(1, 0, true, 0, 0);
        for cut in 0..m.len() {
            assert_eq!(parse_marker(&m[..cut]), None);
        }
        let mut bad = m.clone();
        bad[BATCH_HEADER_BYTES + 5 + 3] = 9; // key type 9
        assert_eq!(parse_marker(&bad), None);
        let mut data = m.clone();
        data[22] = 0x10; // transactional data, not control
        assert_eq!(parse_marker(&data), None);
    }
}
