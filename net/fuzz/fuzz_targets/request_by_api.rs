//! Fuzz target: every served request decoder at every served version never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_net::fuzzing::request_by_api(data));
