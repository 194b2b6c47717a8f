//! Fuzz target: frame splitting + request header/body decoding never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_net::fuzzing::frames_and_requests(data));
