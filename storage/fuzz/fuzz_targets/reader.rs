//! Fuzz target: `Reader` never panics on any input and any sequence of reads, a failed read
//! consumes nothing, and the producer-state snapshot and transaction index decoders (its main
//! users) never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_storage::producer::ProducerStates;
use sluice_storage::Reader;

fuzz_target!(|data: &[u8]| {
    // First byte: how many of the following bytes choose the operations; the rest is input.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (ops, input) = rest.split_at((n as usize).min(rest.len()));
    let mut r = Reader::new(input);
    for &op in ops {
        let before = r.remaining();
        let ok = r.read_op(op, op as usize / 11);
        assert!(r.remaining() <= before);
        assert!(ok || r.remaining() == before);
    }
    let _ = ProducerStates::decode(input);
    let _ = sluice_storage::txnindex::decode(input);
});
