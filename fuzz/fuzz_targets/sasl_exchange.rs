//! A SASL exchange fed hostile client messages: SCRAM's client-first and client-final, PLAIN's
//! message and raw tokens after SaslHandshake v0, split at a fuzzer-chosen point into two
//! steps, and once logged in a re-authentication (KIP-368) with the second part. Every step is
//! answered or refused; none panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::security::sasl::{SaslMechanism, Session};
use sluice::security::scram::{Mechanism, ScramCredential};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (first, second) = rest.split_at((pick as usize >> 2).min(rest.len()));
    let mechanism = match pick & 3 {
        0 => "PLAIN",
        1 => "SCRAM-SHA-256",
        2 => "SCRAM-SHA-512",
        _ => "GSSAPI",
    };
    // A fixed credential (iterations kept at the minimum: PBKDF2 dominates otherwise).
    let stored =
        ScramCredential::from_salted_password(Mechanism::Sha256, b"salted", b"salt".to_vec(), 4096);
    let lookup = |user: &str, _m: Mechanism| (user == "alice").then(|| stored.clone());
    let enabled = [
        SaslMechanism::Plain,
        SaslMechanism::Scram(Mechanism::Sha256),
        SaslMechanism::Scram(Mechanism::Sha512),
    ];
    let mut session = Session::new(true);
    session.saw_authenticate_version(2);
    if session.handshake(mechanism, &enabled, 1).is_ok() {
        let _ = session.authenticate(first, lookup);
        let _ = session.authenticate(second, lookup);
    }
    if session.authenticated() && session.handshake("PLAIN", &enabled, 1).is_ok() {
        let _ = session.authenticate(second, lookup);
    }
});
