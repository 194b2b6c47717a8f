//! SaslHandshake and SaslAuthenticate: a connection's SASL exchange
//! ([`crate::security::sasl::Session`]). Dispatch runs them in the connection's read order and
//! changes the session before the next request is read, so they are not in the handler table.
//! Credentials come from this shard's metadata image; a PLAIN password's PBKDF2 runs on a
//! blocking thread while the connection waits (the reader reads nothing meanwhile).

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use sluice_net::ResponseKind;
use tracing::info;

use crate::kafka::dispatch::Dispatched;
use crate::metrics::ShardMetrics;
use crate::security::sasl::{PlainVerdict, Refusal, Session};
use crate::shard::Shard;
use crate::util::sb;

pub fn handshake(
    shard: &Shard,
    session: &mut Session,
    req: SaslHandshakeRequest,
    version: i16,
) -> ResponseKind {
    let enabled = &shard.config.sasl_mechanisms;
    let error_code = match session.handshake(req.mechanism.as_str(), enabled, version) {
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

/// A PLAIN login's password check, run on a blocking thread when it needs a PBKDF2 (a few
/// milliseconds the reactor would otherwise stall every connection of the shard for); `None`
/// when there is none to run.
pub async fn check_plain(shard: &Shard, session: &Session, message: &[u8]) -> Option<PlainVerdict> {
    let image = shard.metadata();
    let check = session.plain_check(message, |user, m| image.scram_credential(user, m).cloned())?;
    crate::runtime::spawn_blocking(move || check.run()).await
}

/// One step of the exchange against this shard's credentials, counted in the metrics: the
/// server's answer, and the session's lifetime in milliseconds once the login completed
/// (`--connections-max-reauth-ms`; 0: none, or not complete yet).
fn step(
    shard: &Shard,
    session: &mut Session,
    message: &[u8],
    checked: Option<PlainVerdict>,
) -> Result<(Vec<u8>, i64), Refusal> {
    let image = shard.metadata();
    let before = session.authenticated();
    let renewal = session.reauthenticating();
    let result = session.authenticate_checked(
        message,
        |user, m| image.scram_credential(user, m).cloned(),
        checked,
    );
    match result {
        Ok(reply) if !before && session.authenticated() => {
            ShardMetrics::add(&shard.metrics.sasl_authentications, 1);
            if renewal {
                ShardMetrics::add(&shard.metrics.sasl_reauthentications, 1);
            }
            let max = shard.config.args.connections_max_reauth_ms;
            let max = (max > 0).then(|| std::time::Duration::from_millis(max));
            Ok((reply, session.start_session(crate::runtime::now(), max)))
        }
        Ok(reply) => Ok((reply, 0)),
        Err(r) => {
            info!(reason = %r.message, "SASL authentication failed");
            ShardMetrics::add(&shard.metrics.sasl_authentication_failures, 1);
            Err(r)
        }
    }
}

/// One raw SASL token after SaslHandshake v0: the server's token in a bare frame, or close.
pub async fn raw_token(shard: &Shard, session: &mut Session, token: &[u8]) -> Dispatched {
    let checked = check_plain(shard, session, token).await;
    match step(shard, session, token, checked) {
        Ok((reply, _)) => {
            let mut frame = Vec::with_capacity(4 + reply.len());
            frame.extend_from_slice(&(reply.len() as u32).to_be_bytes());
            frame.extend_from_slice(&reply);
            Dispatched::Respond(Box::pin(async move { Some(vec![Bytes::from(frame)]) }))
        }
        Err(r) => Dispatched::Close(format!("SASL authentication failed: {}", r.message)),
    }
}

pub async fn authenticate(
    shard: &Shard,
    session: &mut Session,
    req: SaslAuthenticateRequest,
    version: i16,
) -> ResponseKind {
    session.saw_authenticate_version(version);
    let checked = check_plain(shard, session, &req.auth_bytes).await;
    let response = match step(shard, session, &req.auth_bytes, checked) {
        Ok((reply, lifetime_ms)) => SaslAuthenticateResponse::default()
            .with_auth_bytes(Bytes::from(reply))
            .with_session_lifetime_ms(lifetime_ms),
        Err(r) => SaslAuthenticateResponse::default()
            .with_error_code(r.code)
            .with_error_message(Some(sb(r.message))),
    };
    ResponseKind::SaslAuthenticate(response)
}
