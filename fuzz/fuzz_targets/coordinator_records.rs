//! Records of `__consumer_offsets` and `__transaction_state` as the coordinators read them back
//! from their logs (bytes from disk, or from another node through replication): the record
//! decoders and the batch decoders never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::coordinator::{group, txn};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (key, value) = rest.split_at((split as usize).min(rest.len()));
    let _ = group::records::StoredRecord::decode(key, Some(value));
    let _ = group::records::StoredRecord::decode(key, None);
    let _ = txn::records::TxnRecord::decode(key, Some(value));
    let _ = txn::records::TxnRecord::decode(key, None);
    let _ = group::records::decode_batches(bytes::Bytes::copy_from_slice(rest));
    let _ = txn::records::decode_batches(bytes::Bytes::copy_from_slice(rest));
});
