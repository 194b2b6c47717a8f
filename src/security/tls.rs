//! TLS for SSL and SASL_SSL listeners: rustls on ring, certificates and keys from PEM files,
//! reloaded on SIGHUP, client certificates verified against a PEM trust store and mapped to a
//! principal as Kafka's default `ssl.principal.mapping.rules` does (`User:` + the subject's
//! distinguished name in RFC 2253 form, e.g. `User:CN=alice,O=Sluice`).
//!
//! This module holds the configuration and the pure byte pumping (`feed`); the connection
//! (src/kafka/transport.rs) does the I/O. See docs/architecture.md, "Security".

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ConnectionCommon, RootCertStore, ServerConfig};

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// A certificate is asked for; a client without one is still served (as `User:ANONYMOUS`).
    Requested,
    /// A client without a certificate the trust store verifies is refused.
    Required,
}

/// What each TLS listener asks of its clients: Kafka's `ssl.client.auth` for the SSL listener
/// and `listener.name.sasl_ssl.ssl.client.auth` for the SASL_SSL one (KIP-684: the broker-wide
/// setting does not reach a SASL_SSL listener, whose clients log in with SASL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerClientAuth {
    pub ssl: ClientAuth,
    pub sasl_ssl: ClientAuth,
}

impl ListenerClientAuth {
    /// No client certificate asked for on either listener (the defaults).
    pub const NONE: ListenerClientAuth = ListenerClientAuth {
        ssl: ClientAuth::None,
        sasl_ssl: ClientAuth::None,
    };
}

/// What the TLS listeners serve, and what this broker presents and trusts when it connects to
/// another broker's TLS listener (replication): the files named at start and the
/// configurations built from them, which SIGHUP rebuilds (a connection keeps the one it
/// started with).
pub struct TlsContext {
    keystore: PathBuf,
    truststore: Option<PathBuf>,
    client_auth: ListenerClientAuth,
    current: RwLock<Configs>,
}

#[derive(Clone)]
struct Configs {
    /// The SSL listener's and the SASL_SSL listener's (the same one when they ask the same).
    ssl: Arc<ServerConfig>,
    sasl_ssl: Arc<ServerConfig>,
    /// Only with a trust store: a broker verifies the brokers it connects to.
    client: Option<Arc<ClientConfig>>,
    /// Only with a trust store: what the controller endpoint serves (a client certificate
    /// the trust store verifies is required).
    nodes: Option<Arc<ServerConfig>>,
    /// The keystore certificate's principal (what other nodes see of this one).
    principal: Option<String>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("keystore", &self.keystore)
            .field("truststore", &self.truststore)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Reads the files and builds the first configuration.
    pub fn load(
        keystore: &Path,
        truststore: Option<&Path>,
        client_auth: ListenerClientAuth,
    ) -> Result<TlsContext, String> {
        let configs = build(keystore, truststore, client_auth)?;
        Ok(TlsContext {
            keystore: keystore.to_owned(),
            truststore: truststore.map(Path::to_owned),
            client_auth,
            current: RwLock::new(configs),
        })
    }

    /// Reads the files again; new connections use what they hold now. On an error the old
    /// configuration stays.
    pub fn reload(&self) -> Result<(), String> {
        let configs = build(&self.keystore, self.truststore.as_deref(), self.client_auth)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = configs;
        Ok(())
    }

    /// The configuration a new connection starts with: the SASL_SSL listener's when `sasl`,
    /// else the SSL listener's.
    pub fn config(&self, sasl: bool) -> Arc<ServerConfig> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        if sasl {
            current.sasl_ssl.clone()
        } else {
            current.ssl.clone()
        }
    }

    /// What a connection to another broker's TLS listener uses: the trust store's CAs verify
    /// the broker's certificate against the host it was reached at (Kafka's default
    /// `ssl.endpoint.identification.algorithm=https`), and the keystore's certificate is
    /// presented if that broker asks for one. `None` without a trust store.
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .client
            .clone()
    }
}

impl TlsContext {
    /// What the controller endpoint serves under `--controller-security-protocol SSL`: TLS
    /// with a client certificate required. `None` without a trust store.
    pub fn node_server_config(&self) -> Option<Arc<ServerConfig>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .nodes
            .clone()
    }

    /// `User:` + the subject of this node's own certificate (the keystore's first).
    pub fn own_principal(&self) -> Option<String> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .principal
            .clone()
    }
}

fn read_roots(ts: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(ts)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", ts.display()))?;
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| format!("{}: {e}", ts.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CERTIFICATE in it", ts.display()));
    }
    Ok(Arc::new(roots))
}

fn build(
    keystore: &Path,
    truststore: Option<&Path>,
    client_auth: ListenerClientAuth,
) -> Result<Configs, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ks = keystore.display();
    let certs = CertificateDer::pem_file_iter(keystore)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{ks}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{ks}: no CERTIFICATE in it"));
    }
    let key = PrivateKeyDer::from_pem_file(keystore)
        .map_err(|e| format!("{ks}: no usable PRIVATE KEY in it ({e})"))?;
    let server_with = |client_auth: ClientAuth| -> Result<Arc<ServerConfig>, String> {
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Requested | ClientAuth::Required => {
                let Some(ts) = truststore else {
                    return Err(
                        "a listener's ssl.client.auth needs --ssl-truststore-location".into(),
                    );
                };
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(read_roots(ts)?, provider.clone());
                let verifier = if client_auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
            }
        };
        let mut server = builder
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| format!("{ks}: {e}"))?;
        // No TLS 1.3 session tickets: they arrive after the client's handshake is done,
        // unasked, and kafka-python closes a connection that turns readable with no request
        // in flight. Kafka clients keep their connections rather than resume sessions.
        server.send_tls13_tickets = 0;
        Ok(Arc::new(server))
    };
    let ssl = server_with(client_auth.ssl)?;
    let sasl_ssl = if client_auth.sasl_ssl == client_auth.ssl {
        ssl.clone()
    } else {
        server_with(client_auth.sasl_ssl)?
    };
    let (client, nodes) = match truststore {
        None => (None, None),
        Some(ts) => (
            Some(Arc::new(
                ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(read_roots(ts)?)
                    .with_client_auth_cert(certs.clone(), key.clone_key())
                    .map_err(|e| format!("{ks}: {e}"))?,
            )),
            Some(server_with(ClientAuth::Required)?),
        ),
    };
    let principal = certs.first().and_then(principal_of);
    Ok(Configs {
        ssl,
        sasl_ssl,
        client,
        nodes,
        principal,
    })
}

/// Feeds received ciphertext to `tls` (a server's or a client's session) and appends the
/// plaintext it yields to `plain`; true once the peer has closed (close_notify). An error is
/// the peer's (a bad record, a failed handshake): rustls has queued the alert to send.
pub fn feed<D>(
    tls: &mut ConnectionCommon<D>,
    mut cipher: &[u8],
    plain: &mut bytes::BytesMut,
) -> std::io::Result<bool> {
    let mut closed = false;
    while !cipher.is_empty() {
        let n = tls.read_tls(&mut cipher)?;
        let state = tls
            .process_new_packets()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        closed = state.peer_has_closed();
        let mut ready = state.plaintext_bytes_to_read();
        let mut reader = tls.reader();
        while ready > 0 {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len().min(ready);
            plain.extend_from_slice(&chunk[..n]);
            reader.consume(n);
            ready -= n;
        }
        if n == 0 {
            break; // close_notify received: nothing more is read
        }
    }
    Ok(closed)
}

/// The principal of a verified client certificate: `User:` + its subject in RFC 2253 form (the
/// most specific attribute first, as Java's `X500Principal.getName()` gives it).
pub fn principal_of(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let mut rdns = Vec::new();
    for rdn in parsed
        .subject()
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            // The keywords RFC 2253 (and Java) name; any other attribute by its OID.
            let name = x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry())
                .ok()
                .filter(|k| RFC2253_KEYWORDS.contains(k))
                .map_or_else(|| oid.to_id_string(), str::to_owned);
            let value = attr.as_str().ok()?;
            parts.push(format!("{name}={}", escape_rfc2253(value)));
        }
        rdns.push(parts.join("+"));
    }
    Some(format!("User:{}", rdns.join(",")))
}

const RFC2253_KEYWORDS: [&str; 8] = ["CN", "C", "L", "ST", "O", "OU", "STREET", "DC"];

/// RFC 2253 §2.4 escaping of an attribute value.
fn escape_rfc2253(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (
        rcgen::Certificate,
        rcgen::KeyPair,
        rcgen::Issuer<'static, rcgen::KeyPair>,
    ) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let issuer_key = rcgen::KeyPair::from_pem(&key.serialize_pem()).unwrap();
        (cert, key, rcgen::Issuer::new(params, issuer_key))
    }

    #[test]
    fn a_subject_maps_to_kafkas_default_principal() {
        let (_, _, issuer) = ca();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new(); // rcgen starts with a CN
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Sluice, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        assert_eq!(
            principal_of(cert.der()).as_deref(),
            Some("User:CN=alice,O=Sluice\\, Inc")
        );
        assert_eq!(principal_of(&CertificateDer::from(vec![0x30, 0x03])), None);
    }

    #[test]
    fn a_keystore_without_a_key_or_a_certificate_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = ca();
        let only_cert = dir.path().join("cert.pem");
        std::fs::write(&only_cert, cert.pem()).unwrap();
        let none = ListenerClientAuth::NONE;
        let err = TlsContext::load(&only_cert, None, none).unwrap_err();
        assert!(err.contains("PRIVATE KEY"), "{err}");
        let only_key = dir.path().join("key.pem");
        std::fs::write(&only_key, key.serialize_pem()).unwrap();
        let err = TlsContext::load(&only_key, None, none).unwrap_err();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        let both = dir.path().join("both.pem");
        std::fs::write(&both, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
        let ctx = TlsContext::load(&both, None, none).unwrap();
        let sasl_ssl_required = ListenerClientAuth {
            sasl_ssl: ClientAuth::Required,
            ..none
        };
        let err = TlsContext::load(&both, None, sasl_ssl_required).unwrap_err();
        assert!(err.contains("truststore"), "{err}");
        // A reload that fails keeps the configuration in use.
        let before = ctx.config(false);
        std::fs::write(&both, "garbage").unwrap();
        assert!(ctx.reload().is_err());
        assert!(Arc::ptr_eq(&before, &ctx.config(false)));
    }
}
