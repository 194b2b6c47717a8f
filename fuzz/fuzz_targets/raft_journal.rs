//! The Raft journal decoder (a voter's `__raft/journal`, read at start-up) on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::quorum::journal::decode(data);
});
