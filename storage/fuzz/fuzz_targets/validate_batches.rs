//! Fuzz target: `validate_batches` must never panic, and whatever it accepts must re-scan cleanly;
//! the transaction marker reader (`txn::parse_marker`) must never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(headers) = sluice_storage::validate_batches(data) {
        let total: usize = headers.iter().map(|h| h.total_size()).sum();
        assert_eq!(total, data.len());
    }
    let _ = sluice_storage::txn::parse_marker(data);
});
