//! Criterion micro-benchmarks of authentication: the broker's side of one SCRAM exchange
//! (client-first → server-first, client-final → server-final), which bounds SCRAM handshakes
//! per core, next to one PBKDF2 at the minimum 4096 iterations (what a SASL/PLAIN login costs
//! the broker, and what the client pays once per SCRAM login).
//!
//! ```sh
//! cargo bench --bench security
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use sluice::security::scram::{Mechanism, ScramCredential, ScramServer, Step, ITERATIONS_MIN};

/// The client's final message for `server_first`, from a cached salted password.
fn client_final(m: Mechanism, salted: &[u8], bare: &str, server_first: &str) -> String {
    let nonce = server_first
        .split(',')
        .next()
        .unwrap()
        .strip_prefix("r=")
        .unwrap();
    let without_proof = format!("c=biws,r={nonce}");
    let auth = format!("{bare},{server_first},{without_proof}");
    let client_key = m.hmac(salted, b"Client Key");
    let signature = m.hmac(&m.hash(&client_key), auth.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

fn scram(c: &mut Criterion) {
    let mut g = c.benchmark_group("scram_server_exchange");
    for m in Mechanism::ALL {
        let salt = b"0123456789abcdef0123456789abcdef".to_vec();
        let salted = m.salted_password(b"alice-secret", &salt, ITERATIONS_MIN);
        let stored = ScramCredential::from_salted_password(m, &salted, salt, ITERATIONS_MIN);
        let bare = "n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
        let first = format!("n,,{bare}");
        g.bench_function(m.name(), |b| {
            b.iter(|| {
                let mut server = ScramServer::new(m);
                let Ok(Step::Continue(sf)) =
                    server.step(first.as_bytes(), |_| Some(stored.clone()))
                else {
                    panic!("first step");
                };
                let sf = String::from_utf8(sf).unwrap();
                // The client's share is computed inside the loop too (a few HMACs, no
                // PBKDF2): the figure is an upper bound of the broker's cost.
                let fin = client_final(m, &salted, bare, &sf);
                let done = server.step(fin.as_bytes(), |_| None);
                assert!(matches!(done, Ok(Step::Done { .. })));
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("pbkdf2_4096");
    for m in Mechanism::ALL {
        g.bench_function(m.name(), |b| {
            b.iter(|| m.salted_password(b"alice-secret", b"0123456789abcdef", ITERATIONS_MIN))
        });
    }
    g.finish();
}

criterion_group!(benches, scram);
criterion_main!(benches);
