//! Fuzz target: `scan_segment` must never panic and its valid prefix must be self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = sluice_storage::scan_segment(data);
    assert!(r.valid_len as usize <= data.len());
    let again = sluice_storage::scan_segment(&data[..r.valid_len as usize]);
    assert_eq!(again.batches.len(), r.batches.len());
});
