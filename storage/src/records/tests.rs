use super::*;
use crate::batch::parse_checked;
use crate::test_util::{build_keyed_batch, set_crc, Rng};

/// A stand-in codec: "compresses" by reversing the bytes (codec 4), refuses the rest.
struct Reverse;

impl Codecs for Reverse {
    fn decompress(&self, codec: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        if codec != 4 || data.len() > limit {
            return Err(format!("codec {codec} / limit"));
        }
        Ok(data.iter().rev().copied().collect())
    }
    fn compress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        if codec != 4 {
            return Err(format!("codec {codec}"));
        }
        Ok(data.iter().rev().copied().collect())
    }
}

fn kv(k: &str, v: Option<&str>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        Some(k.as_bytes().to_vec()),
        v.map(|v| v.as_bytes().to_vec()),
    )
}

fn sample() -> Vec<u8> {
    build_keyed_batch(
        100,
        1_000,
        &[
            kv("a", Some("1")),
            kv("b", None),
            (None, Some(b"keyless".to_vec())),
            kv("a", Some("2")),
        ],
    )
}

/// `batch` with its records "compressed" by [`Reverse`].
fn reversed(batch: &[u8]) -> Vec<u8> {
    let mut b = batch[..BATCH_HEADER_BYTES].to_vec();
    b.extend(batch[BATCH_HEADER_BYTES..].iter().rev());
    b[22] |= 4; // attributes low byte: codec 4
    set_crc(&mut b);
    b
}

#[test]
fn parses_keys_tombstones_and_deltas() {
    let b = sample();
    let h = parse_checked(&b).unwrap();
    let body = records_bytes(&b, &h, &Reverse, 1 << 20).unwrap();
    let r = parse_records(&body, h.records_count).unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].key, Some(&b"a"[..]));
    assert!(!r[0].is_tombstone());
    assert_eq!(r[0].value, Some(&b"1"[..]));
    assert!(r[1].is_tombstone());
    assert_eq!(r[2].key, None);
    assert_eq!((r[3].offset_delta, r[3].timestamp_delta), (3, 3));
}

#[test]
fn rebuilding_keeps_offsets_and_fixes_count_time_and_crc() {
    for compressed in [false, true] {
        let b = if compressed {
            reversed(&sample())
        } else {
            sample()
        };
        let h = parse_checked(&b).unwrap();
        let body = records_bytes(&b, &h, &Reverse, 1 << 20).unwrap();
        let r = parse_records(&body, h.records_count).unwrap();
        let kept = [r[0], r[1]];
        let out = rebuild_batch(&b, &h, &kept, &Reverse).unwrap();
        let h2 = parse_checked(&out).unwrap();
        assert_eq!(h2.base_offset, 100);
        assert_eq!(h2.last_offset(), 103, "the last offset stays");
        assert_eq!(h2.records_count, 2);
        assert_eq!(h2.max_timestamp, 1_001);
        assert_eq!(h2.base_timestamp, 1_000);
        assert_eq!(h2.compression(), h.compression());
        let body2 = records_bytes(&out, &h2, &Reverse, 1 << 20).unwrap();
        let r2 = parse_records(&body2, h2.records_count).unwrap();
        assert_eq!(r2[0].key, Some(&b"a"[..]));
        assert_eq!(r2[1].offset_delta, 1);
        assert!(r2[1].is_tombstone());
    }
}

#[test]
fn decompression_beyond_the_limit_is_an_error() {
    let b = reversed(&sample());
    let h = parse_checked(&b).unwrap();
    assert!(records_bytes(&b, &h, &Reverse, 3).is_err());
}

#[test]
fn malformed_records_are_errors_never_panics() {
    let b = sample();
    let h = parse_checked(&b).unwrap();
    let body = b[BATCH_HEADER_BYTES..].to_vec();
    for cut in 0..body.len() {
        assert!(
            parse_records(&body[..cut], h.records_count).is_err(),
            "cut {cut}"
        );
    }
    let mut longer = body.clone();
    longer.push(0);
    assert!(parse_records(&longer, h.records_count).is_err());
    assert!(parse_records(&body, h.records_count + 1).is_err());
    assert!(parse_records(&body, h.records_count - 1).is_err());
    let mut rng = Rng::new(7);
    for _ in 0..20_000 {
        let m = rng.mutate(&body, 4);
        let _ = parse_records(&m, h.records_count);
        let _ = parse_records(&m, (rng.next_u64() % 8) as i32 - 1);
    }
}
