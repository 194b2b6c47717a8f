//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka runs them (KIP-84), and
//! SASL/PLAIN (RFC 4616) checked against the same stored credentials. Sans-IO: a server
//! exchange is a value fed the client's messages; it never panics on any input.
//!
//! ```text
//! client-first   n,[a=AUTHZID],n=USER,r=CNONCE[,EXT=…]        gs2 header "n,," or "y,,"
//! server-first   r=CNONCE SNONCE,s=base64(SALT),i=ITERATIONS
//! client-final   c=base64(GS2 HEADER),r=CNONCE SNONCE[,EXT=…],p=base64(PROOF)
//! server-final   v=base64(SERVER SIGNATURE)
//!
//! SaltedPassword  = PBKDF2-HMAC-H(password, salt, iterations)
//! StoredKey       = H(HMAC(SaltedPassword, "Client Key"))      kept
//! ServerKey       = HMAC(SaltedPassword, "Server Key")         kept
//! AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
//! ClientProof     = HMAC(SaltedPassword, "Client Key") XOR HMAC(StoredKey, AuthMessage)
//! ```
//!
//! Only the salt, StoredKey, ServerKey and the iteration count are stored: never a password.
//! An unknown user gets a made-up salt and fails only at the proof, like a wrong password, so
//! the exchange does not tell which users exist.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub use sluice_net::scram::{
    plain_message, valid_nonce, AuthError, ClientFinal, Mechanism, ScramClient, ServerFirst,
    ITERATIONS_MAX, ITERATIONS_MIN, MESSAGE_MAX, NONCE_BYTES, SALT_BYTES,
};

/// What is stored of a user's SCRAM credential for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl ScramCredential {
    /// From a salted password, as AlterUserScramCredentials carries it.
    pub fn from_salted_password(
        mechanism: Mechanism,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: i32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// From a password, with a fresh random salt.
    pub fn from_password(mechanism: Mechanism, password: &str, iterations: i32) -> ScramCredential {
        let salt = random_bytes(SALT_BYTES);
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        ScramCredential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// Whether `password` is this credential's (for SASL/PLAIN): one PBKDF2, compared in
    /// constant time.
    pub fn matches_password(&self, mechanism: Mechanism, password: &[u8]) -> bool {
        let salted = mechanism.salted_password(password, &self.salt, self.iterations);
        let derived =
            ScramCredential::from_salted_password(mechanism, &salted, Vec::new(), self.iterations);
        bool::from(derived.stored_key.ct_eq(&self.stored_key))
    }
}

/// `n` random bytes from the operating system. A failing `getrandom` (never on Linux ≥ 3.17)
/// leaves zeros, which only weakens nonces and salts: it is logged.
pub fn random_bytes(n: usize) -> Vec<u8> {
    sluice_net::scram::random_bytes(n).unwrap_or_else(|e| {
        tracing::error!(error = %e, "no randomness from the OS; SCRAM nonces and salts are weak");
        vec![0; n]
    })
}

/// The next step of a server-side exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this to the client and wait for its next message.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send `reply` (may be empty).
    Done { user: String, reply: Vec<u8> },
}

/// What the server keeps between client-first and client-final.
struct Pending {
    user: String,
    credential: ScramCredential,
    known: bool,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

enum State {
    First,
    Final(Box<Pending>),
    Ended,
}

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mechanism: Mechanism,
    state: State,
    /// Tests fix the server's nonce to check RFC 7677's exchange; otherwise random.
    server_nonce: Option<String>,
}

impl ScramServer {
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    pub fn new(mechanism: Mechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::First,
            server_nonce: None,
        }
    }

    /// Feeds the client's next message; `lookup` finds a user's stored credential.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Step, AuthError> {
        let state = std::mem::replace(&mut self.state, State::Ended);
        if message.len() > MESSAGE_MAX {
            return Err(AuthError::Malformed("oversized SCRAM"));
        }
        let text = std::str::from_utf8(message).map_err(|_| AuthError::Malformed("SCRAM"))?;
        match state {
            State::First => self.client_first(text, lookup),
            State::Final(pending) => {
                let Pending {
                    user,
                    credential,
                    known,
                    gs2_header,
                    nonce,
                    client_first_bare,
                    server_first,
                } = *pending;
                let (final_without_proof, proof) = parse_client_final(text, &gs2_header, &nonce)?;
                let auth_message =
                    format!("{client_first_bare},{server_first},{final_without_proof}");
                let m = self.mechanism;
                let signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() || !known {
                    return Err(AuthError::InvalidCredentials);
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
                if !bool::from(m.hash(&client_key).ct_eq(&credential.stored_key)) {
                    return Err(AuthError::InvalidCredentials);
                }
                let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
                let reply = format!("v={}", B64.encode(server_signature)).into_bytes();
                Ok(Step::Done { user, reply })
            }
            State::Ended => Err(AuthError::Ended),
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Step, AuthError> {
        let first = parse_client_first(text)?;
        let (credential, known) = match lookup(&first.user) {
            Some(c) => (c, true),
            None => (decoy(self.mechanism, &first.user), false),
        };
        let server_nonce = self
            .server_nonce
            .take()
            .unwrap_or_else(|| B64.encode(random_bytes(NONCE_BYTES)));
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = State::Final(Box::new(Pending {
            user: first.user,
            credential,
            known,
            gs2_header: first.gs2_header,
            nonce,
            client_first_bare: first.bare,
            server_first,
        }));
        Ok(Step::Continue(reply))
    }
}

/// A made-up credential for an unknown user: a salt that is the same at every attempt for
/// that name within this process, so retries do not reveal that the user does not exist.
fn decoy(mechanism: Mechanism, user: &str) -> ScramCredential {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| random_bytes(32));
    let salt = mechanism.hmac(key, user.as_bytes());
    ScramCredential {
        salt,
        stored_key: random_bytes(32),
        server_key: random_bytes(32),
        iterations: ITERATIONS_MIN,
    }
}

struct ClientFirst {
    gs2_header: String,
    bare: String,
    user: String,
    nonce: String,
}

fn parse_client_first(text: &str) -> Result<ClientFirst, AuthError> {
    let bad = AuthError::Malformed("SCRAM client-first");
    // gs2-header: cbind-flag "," [authzid] ","
    let mut parts = text.splitn(3, ',');
    let (flag, authzid, bare) = match (parts.next(), parts.next(), parts.next()) {
        (Some(f), Some(a), Some(b)) => (f, a, b),
        _ => return Err(bad),
    };
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(AuthError::Unsupported(
                "SCRAM channel binding is not supported",
            ))
        }
        _ => return Err(bad),
    }
    let authzid = match authzid {
        "" => None,
        a => Some(decode_name(a.strip_prefix("a=").ok_or(bad.clone())?).ok_or(bad.clone())?),
    };
    let mut attrs = bare.split(',');
    let user = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .and_then(decode_name)
        .filter(|u| !u.is_empty())
        .ok_or(bad.clone())?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| valid_nonce(n))
        .ok_or(bad.clone())?
        .to_owned();
    for ext in attrs {
        match ext.split_once('=') {
            Some(("tokenauth", "true")) => {
                return Err(AuthError::Unsupported(
                    "delegation tokens are not supported",
                ))
            }
            Some((k, _)) if k.starts_with('m') && k.len() == 1 => {
                return Err(AuthError::Unsupported("a mandatory SCRAM extension"))
            }
            Some((k, _)) if !k.is_empty() => {}
            _ => return Err(bad),
        }
    }
    if authzid.as_ref().is_some_and(|a| *a != user) {
        return Err(AuthError::Unsupported(
            "an authorization id other than the user",
        ));
    }
    let header_len = flag.len() + 1 + text[flag.len() + 1..].find(',').unwrap_or(0) + 1;
    Ok(ClientFirst {
        gs2_header: text[..header_len].to_owned(),
        bare: bare.to_owned(),
        user,
        nonce,
    })
}

/// Checks client-final; (client-final-without-proof, proof).
fn parse_client_final<'a>(
    text: &'a str,
    gs2_header: &str,
    nonce: &str,
) -> Result<(&'a str, Vec<u8>), AuthError> {
    let bad = AuthError::Malformed("SCRAM client-final");
    let (without_proof, proof) = text.rsplit_once(",p=").ok_or(bad.clone())?;
    let mut attrs = without_proof.split(',');
    let binding = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .and_then(|c| B64.decode(c).ok())
        .ok_or(bad.clone())?;
    if binding != gs2_header.as_bytes() {
        return Err(bad);
    }
    let got_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(bad.clone())?;
    if got_nonce != nonce {
        return Err(AuthError::InvalidCredentials);
    }
    let proof = B64.decode(proof).map_err(|_| bad)?;
    Ok((without_proof, proof))
}

/// RFC 5802 saslname: `=2C` is ',', `=3D` is '='; any other '=' is malformed.
fn decode_name(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// SASL/PLAIN's one message: `[authzid] NUL authcid NUL password`; (user, password).
pub fn parse_plain(message: &[u8]) -> Result<(String, Vec<u8>), AuthError> {
    let bad = AuthError::Malformed("PLAIN");
    if message.len() > MESSAGE_MAX {
        return Err(bad);
    }
    let mut parts = message.splitn(3, |b| *b == 0);
    let (authzid, user, password) = match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(u), Some(p)) => (a, u, p),
        _ => return Err(bad),
    };
    let user = std::str::from_utf8(user).map_err(|_| bad.clone())?;
    if user.is_empty() || password.is_empty() {
        return Err(bad);
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(AuthError::Unsupported(
            "an authorization id other than the user",
        ));
    }
    Ok((user.to_owned(), password.to_vec()))
}

#[cfg(test)]
mod tests;
