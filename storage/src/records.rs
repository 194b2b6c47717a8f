//! Records inside a RecordBatch v2, for the two places that need more than batch headers: the
//! log cleaner (keys, tombstones, dropping records) and the key check of compacted topics.
//!
//! ```text
//! records (after decompression) = record × records_count, back to back
//! record = length varint (bytes after it)
//!          attributes i8 | timestamp_delta varlong | offset_delta varint
//!          key_length varint (-1: null) | key | value_length varint (-1: null: a tombstone)
//!          value | headers_count varint | headers
//! ```
//!
//! Storage has no compression codecs: the broker hands them in as [`Codecs`]. Batch bytes come
//! from clients (a CRC proves only that they were not damaged since): every length is checked,
//! nothing here panics, and decompression is bounded by the caller's limit.

use crate::batch::{BatchError, BatchHeader, BATCH_HEADER_BYTES, CRC_START, OFF_CRC};

/// Compression codecs (Kafka's ids: 1 gzip, 2 snappy, 3 lz4, 4 zstd), supplied by the broker.
pub trait Codecs {
    /// Decompresses `data`; an error if it is malformed or would exceed `limit` bytes.
    fn decompress(&self, codec: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, String>;
    /// Compresses `data` (Kafka's framing for the codec).
    fn compress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String>;
}

/// One record of a batch, borrowed from the (decompressed) records bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The whole record, length prefix included (copied as is when the record is kept).
    pub raw: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
}

impl RecordView<'_> {
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// The records bytes of `batch` (one whole batch, header included), decompressed if needed,
/// at most `limit` bytes.
pub fn records_bytes(
    batch: &[u8],
    h: &BatchHeader,
    codecs: &dyn Codecs,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let body = batch
        .get(BATCH_HEADER_BYTES..h.total_size())
        .ok_or("batch shorter than its header says")?;
    match h.compression() {
        0 => Ok(body.to_vec()),
        c => codecs.decompress(c, body, limit),
    }
}

/// Splits records bytes into `count` records (the batch's records_count). An error if the
/// framing is wrong or bytes are left over.
pub fn parse_records(body: &[u8], count: i32) -> Result<Vec<RecordView<'_>>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    for index in 0..count.max(0) {
        let bad = |what| BatchError::MalformedRecord { index, what };
        let rest = body.get(pos..).ok_or(bad("past the end"))?;
        let (len, n) = read_varint(rest).ok_or(bad("bad length"))?;
        let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
        let end = n.checked_add(len).ok_or(bad("length overflow"))?;
        let raw = rest
            .get(..end)
            .ok_or(bad("length past the end of the batch"))?;
        let mut r = &raw[n..];
        r = r.get(1..).ok_or(bad("truncated attributes"))?;
        let (timestamp_delta, k) = read_varint(r).ok_or(bad("bad timestamp delta"))?;
        r = &r[k..];
        let (offset_delta, k) = read_varint(r).ok_or(bad("bad offset delta"))?;
        r = &r[k..];
        let (key, r) = read_bytes(r).ok_or(bad("bad key"))?;
        let (value, _) = read_bytes(r).ok_or(bad("bad value"))?;
        out.push(RecordView {
            raw,
            timestamp_delta,
            offset_delta,
            key,
            value,
        });
        pos += end;
    }
    if pos != body.len() {
        return Err(BatchError::MalformedRecord {
            index: count,
            what: "bytes after the last record",
        });
    }
    Ok(out)
}

/// `batch` rebuilt with only `kept` (records parsed from it, in order): same base offset, last
/// offset delta, base timestamp, producer fields, attributes and codec, so offsets and
/// sequence numbers do not change; a new records count, max timestamp (CreateTime), length
/// and CRC. `kept` must not be empty.
pub fn rebuild_batch(
    batch: &[u8],
    h: &BatchHeader,
    kept: &[RecordView<'_>],
    codecs: &dyn Codecs,
) -> Result<Vec<u8>, String> {
    let header = batch
        .get(..BATCH_HEADER_BYTES)
        .ok_or("batch shorter than its header")?;
    let mut body = Vec::with_capacity(kept.iter().map(|r| r.raw.len()).sum());
    for r in kept {
        body.extend_from_slice(r.raw);
    }
    let body = match h.compression() {
        0 => body,
        c => codecs.compress(c, &body)?,
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&body);
    let batch_length = i32::try_from(out.len() - 12).map_err(|_| "batch too large")?;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let count = i32::try_from(kept.len()).map_err(|_| "too many records")?;
    out[57..61].copy_from_slice(&count.to_be_bytes());
    if !h.is_log_append_time() {
        let max = kept
            .iter()
            .map(|r| h.base_timestamp.saturating_add(r.timestamp_delta))
            .max()
            .unwrap_or(h.max_timestamp);
        out[35..43].copy_from_slice(&max.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// A length-prefixed byte string (varint length, -1 = null): the bytes and what follows.
fn read_bytes(b: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let (len, n) = read_varint(b)?;
    let rest = &b[n..];
    if len == -1 {
        return Some((None, rest));
    }
    let len = usize::try_from(len).ok()?;
    Some((Some(rest.get(..len)?), rest.get(len..)?))
}

/// A zigzag varint/varlong (up to 10 bytes): its value and its length in bytes.
pub(crate) fn read_varint(b: &[u8]) -> Option<(i64, usize)> {
    let mut raw = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests;
