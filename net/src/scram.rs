//! The SCRAM-SHA-256/512 (RFC 5802, RFC 7677; Kafka's KIP-84) pieces both ends share — the
//! mechanisms and their hash, HMAC and PBKDF2, message bounds, the client side of an exchange —
//! and SASL/PLAIN's client message. Sans-IO; nothing here panics on any input. The broker's
//! server side (`sluice::security::scram`) builds on these; the `sluice` CLI and a broker
//! logging in to another broker use [`ScramClient`].
//!
//! ```text
//! client-first   n,,n=USER,r=CNONCE
//! server-first   r=CNONCE SNONCE,s=base64(SALT),i=ITERATIONS
//! client-final   c=biws,r=CNONCE SNONCE,p=base64(PROOF)
//! server-final   v=base64(SERVER SIGNATURE)
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's bounds on a SCRAM credential's iteration count (`ScramMechanism`).
pub const ITERATIONS_MIN: i32 = 4096;
pub const ITERATIONS_MAX: i32 = 16384;
/// The longest SCRAM or PLAIN message accepted (Kafka's clients send well under 1 KiB).
pub const MESSAGE_MAX: usize = 4096;
/// Bytes of a nonce and of a generated salt.
pub const NONCE_BYTES: usize = 24;
pub const SALT_BYTES: usize = 32;

/// A SCRAM mechanism, with Kafka's wire numbers (AlterUserScramCredentials' `mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's `ScramMechanism` type: 1 SHA-256, 2 SHA-512 (0 is UNKNOWN).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    /// H(data), the mechanism's hash.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC-H(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
        match self {
            Mechanism::Sha256 => Hmac::<Sha256>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            Mechanism::Sha512 => Hmac::<Sha512>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// PBKDF2 with this mechanism's HMAC ("Hi" in RFC 5802).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let rounds = iterations.max(1) as u32;
        match self {
            Mechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, rounds).to_vec()
            }
            Mechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, rounds).to_vec()
            }
        }
    }
}

/// Why an exchange failed; Kafka answers all of them with SASL_AUTHENTICATION_FAILED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("the exchange is over")]
    Ended,
}

/// `n` random bytes from the operating system (`getrandom`; it does not fail on Linux ≥ 3.17).
pub fn random_bytes(n: usize) -> Result<Vec<u8>, getrandom::Error> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b)?;
    Ok(b)
}

/// A nonce is printable ASCII without ','.
pub fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// The client side of one SCRAM exchange: how a broker logs in to another broker's SASL
/// listener (replication over SASL_PLAINTEXT or SASL_SSL), and how the `sluice` CLI logs in.
/// Sans-IO; the PBKDF2 between server-first and client-final is the caller's to run
/// ([`ServerFirst::salt`] and [`ServerFirst::iterations`] into
/// [`Mechanism::salted_password`]), off a reactor.
pub struct ScramClient {
    mechanism: Mechanism,
    nonce: String,
    client_first_bare: String,
}

/// The server's first message, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    text: String,
    nonce: String,
    pub salt: Vec<u8>,
    pub iterations: i32,
}

/// What the client sends last, and the server signature that must come back.
pub struct ClientFinal {
    pub message: Vec<u8>,
    server_signature: Vec<u8>,
}

impl ScramClient {
    /// An exchange for `user`; its client-first message. Fails only if the operating system
    /// gives no randomness for the nonce.
    pub fn new(mechanism: Mechanism, user: &str) -> Result<(ScramClient, Vec<u8>), AuthError> {
        let nonce = random_bytes(NONCE_BYTES)
            .map_err(|_| AuthError::Unsupported("no randomness from the operating system"))?;
        Ok(ScramClient::with_nonce(mechanism, user, &B64.encode(nonce)))
    }

    /// [`ScramClient::new`] with a chosen nonce (printable, no ','): for tests that replay a
    /// known exchange, such as RFC 7677's.
    pub fn with_nonce(mechanism: Mechanism, user: &str, nonce: &str) -> (ScramClient, Vec<u8>) {
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={name},r={nonce}");
        let first = format!("n,,{client_first_bare}").into_bytes();
        let client = ScramClient {
            mechanism,
            nonce: nonce.to_owned(),
            client_first_bare,
        };
        (client, first)
    }

    /// Checks server-first: the nonce must extend ours, the salt decode, and the iteration
    /// count lie within Kafka's bounds (a server cannot make us run an unbounded PBKDF2).
    pub fn server_first(&self, message: &[u8]) -> Result<ServerFirst, AuthError> {
        let bad = AuthError::Malformed("SCRAM server-first");
        if message.len() > MESSAGE_MAX {
            return Err(bad);
        }
        let text = std::str::from_utf8(message).map_err(|_| bad.clone())?;
        let mut attrs = text.split(',');
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| valid_nonce(n) && n.len() > self.nonce.len() && n.starts_with(&self.nonce))
            .ok_or(bad.clone())?;
        let salt = attrs
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .and_then(|s| B64.decode(s).ok())
            .filter(|s| !s.is_empty())
            .ok_or(bad.clone())?;
        let iterations = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .and_then(|i| i.parse::<i32>().ok())
            .filter(|i| (ITERATIONS_MIN..=ITERATIONS_MAX).contains(i))
            .ok_or(bad)?;
        Ok(ServerFirst {
            text: text.to_owned(),
            nonce: nonce.to_owned(),
            salt,
            iterations,
        })
    }

    /// Client-final for `first`, given the salted password computed from its salt and count.
    pub fn client_final(&self, first: &ServerFirst, salted_password: &[u8]) -> ClientFinal {
        let m = self.mechanism;
        let client_key = m.hmac(salted_password, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={}", first.nonce); // biws: base64("n,,")
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, first.text);
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = m.hmac(salted_password, b"Server Key");
        ClientFinal {
            message: format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
            server_signature: m.hmac(&server_key, auth_message.as_bytes()),
        }
    }
}

impl ClientFinal {
    /// Checks server-final: the server proves it holds the credential (`v=`), or says why
    /// it refused (`e=`).
    pub fn verify(&self, message: &[u8]) -> Result<(), AuthError> {
        let bad = AuthError::Malformed("SCRAM server-final");
        let text = std::str::from_utf8(message).map_err(|_| bad.clone())?;
        let signature = text
            .split(',')
            .next()
            .and_then(|a| a.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok())
            .ok_or(bad)?;
        if bool::from(signature.ct_eq(&self.server_signature)) {
            Ok(())
        } else {
            Err(AuthError::InvalidCredentials)
        }
    }
}

/// SASL/PLAIN's one message from a client: `NUL user NUL password`.
pub fn plain_message(user: &str, password: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(user.len() + password.len() + 2);
    m.push(0);
    m.extend_from_slice(user.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    m
}
