//! Criterion micro-benchmarks of authentication: the broker's side of one SCRAM exchange
//! (client-first → server-first, client-final → server-final), which bounds SCRAM handshakes
//! per core, next to one PBKDF2 at the minimum 4096 iterations (what a SASL/PLAIN login costs
//! the broker, and what the client pays once per SCRAM login); and one TLS handshake with the
//! broker's configuration (`TlsContext`, an ECDSA P-256 certificate), client and server in
//! memory, what an SSL or SASL_SSL connection costs before its first request.
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

fn tls(c: &mut Criterion) {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::NoCa;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let keystore = dir.path().join("server.pem");
    std::fs::write(&keystore, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
    let ctx = sluice::security::tls::TlsContext::load(
        &keystore,
        None,
        sluice::security::tls::ListenerClientAuth::NONE,
    )
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut g = c.benchmark_group("tls_handshake");
    // Both ends' work: the server's share is about half (one ECDHE and one signature against
    // the client's ECDHE and verification of the signature and certificate).
    g.bench_function("tls13_ecdsa_p256_client_and_server", |b| {
        b.iter(|| {
            let mut client =
                rustls::ClientConnection::new(client_config.clone(), name.clone()).unwrap();
            let mut server = rustls::ServerConnection::new(ctx.config(false)).unwrap();
            let mut plain = bytes::BytesMut::new();
            while client.is_handshaking() || server.is_handshaking() {
                let mut buf = Vec::new();
                while client.wants_write() {
                    client.write_tls(&mut buf).unwrap();
                }
                sluice::security::tls::feed(&mut server, &buf, &mut plain).unwrap();
                buf.clear();
                while server.wants_write() {
                    server.write_tls(&mut buf).unwrap();
                }
                let mut rd = &buf[..];
                while !rd.is_empty() {
                    client.read_tls(&mut rd).unwrap();
                    client.process_new_packets().unwrap();
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, scram, tls);
criterion_main!(benches);
