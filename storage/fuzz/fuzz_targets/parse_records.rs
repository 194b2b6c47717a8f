//! Fuzz target: the record framing the cleaner and the compacted-topic key check read
//! (`records::parse_records`) must never panic; what it accepts spans the input exactly, and
//! a batch rebuilt from any subset of those records is a valid batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_storage::records::{parse_records, rebuild_batch, Codecs};

struct NoCodecs;

impl Codecs for NoCodecs {
    fn decompress(&self, _: u8, _: &[u8], _: usize) -> Result<Vec<u8>, String> {
        Err("none".into())
    }
    fn compress(&self, _: u8, _: &[u8]) -> Result<Vec<u8>, String> {
        Err("none".into())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&count, body)) = data.split_first() else {
        return;
    };
    let Ok(records) = parse_records(body, i32::from(count % 16)) else {
        return;
    };
    let total: usize = records.iter().map(|r| r.raw.len()).sum();
    assert_eq!(total, body.len());
    if records.is_empty() {
        return;
    }
    // Wrap the records in a batch header and rebuild it with every other record.
    let mut batch = sluice_storage::test_util::build_keyed_batch(0, 0, &[(None, None)]);
    batch.truncate(61);
    batch.extend_from_slice(body);
    batch[23..27].copy_from_slice(&(i32::from(count % 16) - 1).max(0).to_be_bytes());
    batch[57..61].copy_from_slice(&i32::from(count % 16).to_be_bytes());
    let len = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    sluice_storage::test_util::set_crc(&mut batch);
    let Ok(h) = sluice_storage::batch::parse_checked(&batch) else {
        return;
    };
    let kept: Vec<_> = records.iter().step_by(2).copied().collect();
    let rebuilt = rebuild_batch(&batch, &h, &kept, &NoCodecs).expect("uncompressed rebuild");
    sluice_storage::batch::parse_checked(&rebuilt).expect("a rebuilt batch is valid");
});
