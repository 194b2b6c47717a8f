//! SaslHandshake and SaslAuthenticate: a connection's SASL exchange
//! ([`crate::security::sasl::Session`]). Dispatch runs them in the connection's read order and
//! changes the session before the next request is read, so they are not in the handler table.
//! Credentials come from this shard's metadata image.

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use sluice_net::ResponseKind;
use tracing::info;

use crate::metrics::ShardMetrics;
use crate::security::sasl::Session;
use crate::shard::Shard;
use crate::util::sb;

pub fn handshake(shard: &Shard, session: &mut Session, req: SaslHandshakeRequest) -> ResponseKind {
    let enabled = &shard.config.sasl_mechanisms;
    let error_code = match session.handshake(req.mechanism.as_str(), enabled) {
        Ok(()) => 0,
        Err(r) => {
            info!(mechanism = %req.mechanism.as_str(), reason = %r.message, "SASL handshake refused");
            ShardMetrics::add(&shard.metrics.sasl_authentication_failures, 1);
            r.code
        }
    };
    ResponseKind::SaslHandshake(
        SaslHandshakeResponse::default()
            .with_error_code(error_code)
            .with_mechanisms(enabled.iter().map(|m| sb(m.name())).collect()),
    )
}

pub fn authenticate(
    shard: &Shard,
    session: &mut Session,
    req: SaslAuthenticateRequest,
) -> ResponseKind {
    let image = shard.metadata();
    let before = session.authenticated();
    let result = session.authenticate(&req.auth_bytes, |user, m| {
        image.scram_credential(user, m).cloned()
    });
    let response = match result {
        Ok(reply) => {
            if !before && session.authenticated() {
                ShardMetrics::add(&shard.metrics.sasl_authentications, 1);
            }
            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply))
        }
        Err(r) => {
            info!(reason = %r.message, "SASL authentication failed");
            ShardMetrics::add(&shard.metrics.sasl_authentication_failures, 1);
            SaslAuthenticateResponse::default()
                .with_error_code(r.code)
                .with_error_message(Some(sb(r.message)))
        }
    };
    ResponseKind::SaslAuthenticate(response.with_session_lifetime_ms(0))
}
