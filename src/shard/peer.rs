//! A connection from this broker to another broker's inter-broker listener (a follower's
//! fetches from its leader): TCP, then the TLS handshake if the listener is SSL or SASL_SSL
//! (the trust store verifies the leader's certificate for the host it was reached at; the
//! keystore's certificate goes back if asked for), then SaslHandshake and SaslAuthenticate if
//! it is SASL_PLAINTEXT or SASL_SSL (PLAIN, or SCRAM with the PBKDF2 on a blocking thread).
//! After that it carries one request and its answer at a time. See docs/architecture.md,
//! "Security".

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls::ClientConfig;

use crate::config::{Config, InterBrokerSasl, SecurityProtocol};
use crate::runtime::secure::Stream;
use crate::security::sasl::SaslMechanism;
use crate::security::scram::{self, ScramClient, MESSAGE_MAX};

/// SaslHandshake and SaslAuthenticate versions spoken (Kafka's clients use the same).
const HANDSHAKE_VERSION: i16 = 1;
const AUTHENTICATE_VERSION: i16 = 2;
/// Largest answer accepted during the login.
const LOGIN_FRAME_MAX: usize = 64 * 1024;
/// The TLS handshake and the SASL exchange together must finish within this.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the other brokers: what the inter-broker listener asks of a client.
#[derive(Clone)]
pub struct PeerSecurity {
    tls: Option<Arc<ClientConfig>>,
    sasl: Option<InterBrokerSasl>,
}

impl PeerSecurity {
    /// From the configuration; an error if the inter-broker listener asks for what this broker
    /// was not given (the configuration's checks make that a start-up error in a cluster).
    pub fn of(config: &Config) -> io::Result<PeerSecurity> {
        let protocol = config.listeners[config.inter_broker].protocol;
        let tls = match protocol {
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl => Some(
                config
                    .tls
                    .as_ref()
                    .and_then(|t| t.client_config())
                    .ok_or_else(|| {
                        io::Error::other("TLS to other brokers needs --ssl-truststore-location")
                    })?,
            ),
            _ => None,
        };
        let sasl = match protocol {
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => {
                Some(config.inter_broker_sasl.clone().ok_or_else(|| {
                    io::Error::other("SASL to other brokers needs --inter-broker-sasl-username")
                })?)
            }
            _ => None,
        };
        Ok(PeerSecurity { tls, sasl })
    }
}

/// An open connection to another broker.
pub struct PeerConn {
    stream: Stream,
    /// The last correlation id sent by [`PeerConn::call`].
    correlation: i32,
}

/// A connection to broker `broker`'s inter-broker listener (its registered address), logged in
/// as that listener asks.
pub async fn connect_to(
    shard: &super::Shard,
    broker: i32,
    connect_timeout: Duration,
) -> io::Result<PeerConn> {
    let (host, port) = shard
        .metadata()
        .brokers
        .get(&broker)
        .map(|b| (b.record.host.clone(), b.record.port))
        .ok_or_else(|| io::Error::other(format!("broker {broker} is not registered")))?;
    let security = PeerSecurity::of(&shard.config)?;
    let addr = crate::util::resolve(&host, port).await?;
    PeerConn::open(&host, addr, &security, connect_timeout).await
}

impl PeerConn {
    /// Connects to `host:port` (resolved as `addr`) and logs in as `security` says.
    pub async fn open(
        host: &str,
        addr: SocketAddr,
        security: &PeerSecurity,
        connect_timeout: Duration,
    ) -> io::Result<PeerConn> {
        let sock = crate::runtime::net::connect(addr, connect_timeout).await?;
        crate::runtime::timeout(LOGIN_TIMEOUT, async {
            let stream = match &security.tls {
                None => Stream::Plain(sock),
                Some(config) => Stream::tls_client(sock, host, config.clone()).await?,
            };
            let mut conn = PeerConn {
                stream,
                correlation: 0,
            };
            if let Some(sasl) = &security.sasl {
                login(&mut conn, sasl).await?;
            }
            Ok(conn)
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "login to the broker timed out"))?
    }

    /// Sends one whole frame.
    pub async fn send(&mut self, frame: Vec<u8>) -> io::Result<()> {
        self.stream.send(frame).await
    }

    /// Reads one frame (after its size); a size over `max` is an error.
    pub async fn read_frame(&mut self, max: usize) -> io::Result<Bytes> {
        self.stream.read_frame(max).await
    }

    /// One request and its answer, at most `max` bytes (request/response only: nothing else
    /// may be in flight).
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
        max: usize,
    ) -> io::Result<Resp> {
        self.correlation = self.correlation.wrapping_add(1);
        let correlation = self.correlation;
        self.send(encode(key, version, correlation, request)?)
            .await?;
        let body = self.read_frame(max).await?;
        decode_answer(body, key, version, correlation)
    }
}

/// Another broker's answer (the frame after its size) to request `correlation` of `key` at
/// `version`: an error for anything malformed or trailing, never a panic.
pub fn decode_answer<Resp: Decodable>(
    mut body: Bytes,
    key: ApiKey,
    version: i16,
    correlation: i32,
) -> io::Result<Resp> {
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
        .map_err(|e| bad(e.to_string()))?;
    if header.correlation_id != correlation {
        return Err(bad(format!(
            "answer to request {} while waiting for {correlation}",
            header.correlation_id
        )));
    }
    let resp = Resp::decode(&mut body, version).map_err(|e| bad(e.to_string()))?;
    if body.has_remaining() {
        return Err(bad(format!("trailing bytes after the {key:?} answer")));
    }
    Ok(resp)
}

/// A request frame: size, header (client id `sluice-broker`), body.
pub fn encode<Req: Encodable>(
    key: ApiKey,
    version: i16,
    correlation: i32,
    request: &Req,
) -> io::Result<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("sluice-broker")));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(&mut buf, key.request_header_version(version))
        .map_err(io::Error::other)?;
    request
        .encode(&mut buf, version)
        .map_err(io::Error::other)?;
    let size = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.to_vec())
}

/// Why the other broker refused a SASL step.
fn refused(what: &str, code: i16, message: Option<StrBytes>) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "SASL {what} refused by the broker (error {code}{})",
            message.map_or(String::new(), |m| format!(": {}", m.as_str()))
        ),
    )
}

/// One SaslAuthenticate round: the token sent, the broker's answer.
async fn authenticate(conn: &mut PeerConn, token: Vec<u8>) -> io::Result<Bytes> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let r: SaslAuthenticateResponse = conn
        .call(
            ApiKey::SaslAuthenticate,
            AUTHENTICATE_VERSION,
            &request,
            LOGIN_FRAME_MAX,
        )
        .await?;
    if r.error_code != 0 {
        return Err(refused("authentication", r.error_code, r.error_message));
    }
    if r.auth_bytes.len() > MESSAGE_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "oversized SASL answer",
        ));
    }
    Ok(r.auth_bytes)
}

/// SaslHandshake, then SaslAuthenticate until the mechanism is done; an error names why the
/// other broker refused.
async fn login(conn: &mut PeerConn, sasl: &InterBrokerSasl) -> io::Result<()> {
    let hs: SaslHandshakeResponse = conn
        .call(
            ApiKey::SaslHandshake,
            HANDSHAKE_VERSION,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name())),
            LOGIN_FRAME_MAX,
        )
        .await?;
    if hs.error_code != 0 {
        return Err(refused("handshake", hs.error_code, None));
    }
    match sasl.mechanism {
        SaslMechanism::Plain => {
            authenticate(conn, scram::plain_message(&sasl.user, &sasl.password)).await?;
        }
        SaslMechanism::Scram(m) => {
            let bad = |e: scram::AuthError| io::Error::new(io::ErrorKind::InvalidData, e);
            let (client, first) = ScramClient::new(m, &sasl.user).map_err(bad)?;
            let server_first = client
                .server_first(&authenticate(conn, first).await?)
                .map_err(bad)?;
            let (password, salt, iterations) = (
                sasl.password.clone(),
                server_first.salt.clone(),
                server_first.iterations,
            );
            let salted = crate::runtime::spawn_blocking(move || {
                m.salted_password(password.as_bytes(), &salt, iterations)
            })
            .await
            .ok_or_else(|| io::Error::other("the PBKDF2 thread failed"))?;
            let fin = client.client_final(&server_first, &salted);
            let server_final = authenticate(conn, fin.message.clone()).await?;
            fin.verify(&server_final).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("the broker's SCRAM signature does not verify: {e}"),
                )
            })?;
        }
    }
    Ok(())
}
