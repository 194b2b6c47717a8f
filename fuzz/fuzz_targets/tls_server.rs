//! The server side of a TLS connection fed hostile bytes: split into chunks at fuzzer-chosen
//! points and pushed through `security::tls::feed` as the connection's reader does, with what
//! rustls wants to send drained after each chunk. Every input is consumed or refused with an
//! error; none panics or loops (close_notify, truncated and oversized records, garbage).
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sluice::security::tls::{feed, ListenerClientAuth, TlsContext};

fn context() -> &'static TlsContext {
    static CTX: OnceLock<TlsContext> = OnceLock::new();
    CTX.get_or_init(|| {
        // A self-signed ECDSA P-256 certificate and key made for this target.
        let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz_targets/tls_server.pem");
        TlsContext::load(std::path::Path::new(pem), None, ListenerClientAuth::NONE).expect("fuzz keystore")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut tls =
        rustls::ServerConnection::new(Arc::clone(&context().config(false))).expect("connection");
    let mut plain = bytes::BytesMut::new();
    let step = usize::from(split).max(1) * 16;
    for chunk in rest.chunks(step) {
        if feed(&mut tls, chunk, &mut plain).is_err() {
            break;
        }
        let mut out = Vec::new();
        while tls.wants_write() && out.len() < 1 << 20 {
            if tls.write_tls(&mut out).is_err() {
                break;
            }
        }
    }
});
