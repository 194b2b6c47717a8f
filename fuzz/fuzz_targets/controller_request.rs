//! The controller endpoint's request decoder (bytes from other nodes) on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::quorum::network::decode_request(data);
});
