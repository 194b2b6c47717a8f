//! A leader's Fetch answer as a follower decodes it (bytes from another node).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::shard::replication::decode_fetch_answer(bytes::Bytes::copy_from_slice(data), 1);
});
