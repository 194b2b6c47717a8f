//! Fuzz target: `Reader` never panics on any input and any sequence of reads, a failed read
//! consumes nothing, and the producer-state snapshot decoder (its main user) never panics.
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
        let ok = match op % 11 {
            0 => r.u8().is_some(),
            1 => r.u16().is_some(),
            2 => r.i16().is_some(),
            3 => r.u32().is_some(),
            4 => r.i32().is_some(),
            5 => r.u64().is_some(),
            6 => r.i64().is_some(),
            7 => r.opt_string().is_some(),
            8 => r.string().is_some(),
            9 => r.bytes().is_some(),
            _ => r.take(op as usize / 11).is_some(),
        };
        assert!(r.remaining() <= before);
        assert!(ok || r.remaining() == before);
    }
    let _ = ProducerStates::decode(input);
});
