//! The controller endpoint's decoders (bytes from other nodes) on any bytes: Raft and
//! application frames, and the application calls they carry.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::quorum::network::decode_request(data);
    let _ = sluice::shard::cluster::decode_app_request(data);
});
