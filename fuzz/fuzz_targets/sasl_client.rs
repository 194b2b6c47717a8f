//! The client side of SCRAM (how a broker logs in to another) fed a hostile server: a
//! server-first as sent and one that extends the client's real nonce (so the salt and the
//! iteration count are reached), then, when accepted, a hostile server-final. Every message is
//! accepted or refused; none panics, and no iteration count outside 4096–16384 is accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::security::scram::{Mechanism, ScramClient};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (first, second) = rest.split_at(((pick as usize) >> 1).min(rest.len()));
    let m = if pick & 1 == 0 {
        Mechanism::Sha256
    } else {
        Mechanism::Sha512
    };
    let Ok((client, client_first)) = ScramClient::new(m, "broker") else {
        return;
    };
    let _ = client.server_first(first);
    let text = String::from_utf8_lossy(&client_first).into_owned();
    let nonce = text.rsplit(",r=").next().unwrap_or_default();
    let mut extended = format!("r={nonce}").into_bytes();
    extended.extend_from_slice(first);
    if let Ok(sf) = client.server_first(&extended) {
        assert!((4096..=16384).contains(&sf.iterations));
        // A fixed salted password: the PBKDF2 is not what is under test.
        let fin = client.client_final(&sf, &[7u8; 64]);
        let _ = fin.verify(second);
    }
});
