//! One connection's authentication state (KIP-43 SaslHandshake, KIP-152 SaslAuthenticate).
//!
//! ```text
//! SASL listener:  Start --SaslHandshake(mech)--> Chosen --SaslAuthenticate…--> Authenticated
//!                   any failure (bad mechanism, bad message, wrong password) --> Failed
//! re-authentication (KIP-368): Authenticated --SaslHandshake v1+--> Chosen --…--> Authenticated
//! ```
//!
//! Until authenticated, a SASL listener serves only ApiVersions, SaslHandshake and
//! SaslAuthenticate; any other request closes the connection, as Kafka does. A failed
//! authentication is answered (SASL_AUTHENTICATION_FAILED) and then the connection closes.
//! A plaintext listener's connections are `User:ANONYMOUS` and refuse SaslHandshake
//! (ILLEGAL_SASL_STATE).
//!
//! Re-authentication (KIP-368): with `--connections-max-reauth-ms` set, a login's session
//! lasts that long (`session_lifetime_ms` in the SaslAuthenticate answer); a client that sent
//! SaslAuthenticate v1+ may log in again on the same connection, with the same mechanism and
//! as the same principal (else SASL_AUTHENTICATION_FAILED and the connection closes); a
//! request after the session expired, other than that new SaslHandshake, closes the connection.
//!
//! SaslHandshake v0 (which aiokafka still sends first) is followed by raw SASL tokens: each
//! frame's body is the client's token and the answer is a frame holding only the server's
//! token (empty for PLAIN's success); a failure just closes the connection.

use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

use super::scram::{self, AuthError, Mechanism, ScramCredential, ScramServer, Step};

/// A SASL mechanism this broker can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            n => Mechanism::from_name(n).map(SaslMechanism::Scram),
        }
    }
}

enum State {
    /// A plaintext listener: nothing to do.
    NotRequired,
    Start,
    Chosen(SaslMechanism),
    Scram(ScramServer),
    /// A re-authentication asked for another mechanism than the session's: Kafka answers the
    /// handshake and refuses the SaslAuthenticate that follows.
    BadReauthMechanism {
        asked: SaslMechanism,
        had: SaslMechanism,
    },
    Authenticated,
    Failed,
}

/// A refused SASL step: the error code, the message for the client, and whether the
/// connection closes after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i16,
    pub message: String,
    pub close: bool,
}

/// One connection's authentication.
pub struct Session {
    state: State,
    /// SaslHandshake v0 chose raw tokens for the exchange.
    raw_tokens: bool,
    /// `User:NAME` once authenticated; `User:ANONYMOUS` on a plaintext listener.
    principal: std::rc::Rc<str>,
    /// The mechanism the connection authenticated with (a re-authentication must use it).
    mechanism: Option<SaslMechanism>,
    /// The client sent SaslAuthenticate v1+, so it can re-authenticate (Kafka's rule).
    reauthenticates: bool,
    /// While re-authenticating: the principal the new login must name.
    reauth_of: Option<std::rc::Rc<str>>,
    /// When the session expires (KIP-368), if `--connections-max-reauth-ms` is set.
    expires: Option<Instant>,
}

impl Session {
    /// A connection on a listener that does (`sasl`) or does not require SASL.
    pub fn new(sasl: bool) -> Session {
        Session {
            state: if sasl {
                State::Start
            } else {
                State::NotRequired
            },
            raw_tokens: false,
            principal: std::rc::Rc::from("User:ANONYMOUS"),
            mechanism: None,
            reauthenticates: false,
            reauth_of: None,
            expires: None,
        }
    }

    /// An SSL listener's client presented `principal`'s verified certificate (mTLS). On a
    /// SASL_SSL listener the SASL exchange names the principal instead.
    pub fn set_certificate_principal(&mut self, principal: String) {
        if matches!(self.state, State::NotRequired) {
            self.principal = std::rc::Rc::from(principal);
        }
    }

    /// Kafka's principal for this connection (`User:ANONYMOUS` until authenticated).
    pub fn principal(&self) -> &std::rc::Rc<str> {
        &self.principal
    }

    /// Whether a request of `api` may be served now.
    pub fn allows(&self, api: ApiKey) -> bool {
        match self.state {
            State::NotRequired | State::Authenticated => true,
            State::Failed => false,
            State::Start
            | State::Chosen(_)
            | State::Scram(_)
            | State::BadReauthMechanism { .. } => matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            ),
        }
    }

    /// Whether the next frame is a raw SASL token (after SaslHandshake v0) rather than a
    /// Kafka request.
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens && matches!(self.state, State::Chosen(_) | State::Scram(_))
    }

    /// A SaslAuthenticate of `version` came: from v1 on, the client can re-authenticate.
    pub fn saw_authenticate_version(&mut self, version: i16) {
        self.reauthenticates |= version >= 1;
    }

    /// Starts the session that a login just completed: it lasts `max` (none: for ever), as
    /// its SaslAuthenticate answer tells the client in milliseconds.
    pub fn start_session(&mut self, now: Instant, max: Option<Duration>) -> i64 {
        self.expires = max.map(|d| now + d);
        max.map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
    }

    /// Whether the session is over at `now`: only a re-authentication may follow (KIP-368).
    pub fn expired(&self, now: Instant) -> bool {
        matches!(self.state, State::Authenticated) && self.expires.is_some_and(|e| now >= e)
    }

    /// Whether a SaslHandshake of `version` starts a re-authentication now.
    pub fn may_reauthenticate(&self, version: i16) -> bool {
        matches!(self.state, State::Authenticated)
            && self.reauthenticates
            && !self.raw_tokens
            && version >= 1
    }

    /// Whether a re-authentication is under way (KIP-368).
    pub fn reauthenticating(&self) -> bool {
        self.reauth_of.is_some()
    }

    /// Whether a SASL exchange completed on this connection.
    pub fn authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// Whether the connection must close once its pending answers are sent.
    pub fn failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// SaslHandshake of `version`: chooses `mechanism` if `enabled` has it (v0: raw tokens
    /// follow). On an authenticated connection it starts a re-authentication, if the client
    /// can (see [`Session::may_reauthenticate`]).
    pub fn handshake(
        &mut self,
        mechanism: &str,
        enabled: &[SaslMechanism],
        version: i16,
    ) -> Result<(), Refusal> {
        let reauth = self.may_reauthenticate(version);
        match self.state {
            State::Start => {}
            State::Authenticated if reauth => {}
            _ => {
                return Err(Refusal {
                    code: ResponseError::IllegalSaslState.code(),
                    message: "SaslHandshake is not expected now".to_owned(),
                    close: !matches!(self.state, State::NotRequired | State::Authenticated),
                })
            }
        }
        match SaslMechanism::from_name(mechanism).filter(|m| enabled.contains(m)) {
            Some(m) => {
                self.raw_tokens = version == 0;
                self.state = match self.mechanism.filter(|_| reauth) {
                    Some(had) if had != m => State::BadReauthMechanism { asked: m, had },
                    _ => State::Chosen(m),
                };
                if reauth {
                    self.reauth_of = Some(self.principal.clone());
                }
                Ok(())
            }
            None => {
                self.state = State::Failed;
                Err(Refusal {
                    code: ResponseError::UnsupportedSaslMechanism.code(),
                    message: format!("unsupported SASL mechanism {mechanism}"),
                    close: true,
                })
            }
        }
    }

    /// SaslAuthenticate: one client message in, the server's answer out. `lookup` finds a
    /// user's stored credential for a mechanism.
    pub fn authenticate(
        &mut self,
        message: &[u8],
        lookup: impl Fn(&str, Mechanism) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, Refusal> {
        self.authenticate_checked(message, lookup, None)
    }

    /// For a PLAIN SaslAuthenticate whose password is not remembered: the PBKDF2 that checks
    /// it, to run off the reactor ([`PlainCheck::run`]) before [`Session::authenticate_checked`].
    pub fn plain_check(
        &self,
        message: &[u8],
        lookup: impl Fn(&str, Mechanism) -> Option<ScramCredential>,
    ) -> Option<PlainCheck> {
        if !matches!(self.state, State::Chosen(SaslMechanism::Plain)) {
            return None;
        }
        let (user, password) = scram::parse_plain(message).ok()?;
        let (mechanism, credential) = stored_for_plain(&user, &lookup)?;
        if verified::check(&user, &credential.stored_key, &password) {
            return None;
        }
        Some(PlainCheck {
            mechanism,
            credential,
            password,
        })
    }

    /// [`Session::authenticate`] with a PLAIN password's check already run: `checked` is
    /// used when it was made against the credential the lookup still finds.
    pub fn authenticate_checked(
        &mut self,
        message: &[u8],
        lookup: impl Fn(&str, Mechanism) -> Option<ScramCredential>,
        checked: Option<PlainVerdict>,
    ) -> Result<Vec<u8>, Refusal> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (mechanism, step) = match state {
            State::Chosen(SaslMechanism::Plain) => {
                (SaslMechanism::Plain, plain(message, &lookup, checked))
            }
            State::Chosen(SaslMechanism::Scram(m)) => {
                let mut server = ScramServer::new(m);
                let step = server.step(message, |u| lookup(u, m));
                if matches!(step, Ok(Step::Continue(_))) {
                    self.state = State::Scram(server);
                }
                (SaslMechanism::Scram(m), step)
            }
            State::Scram(mut server) => {
                let step = server.step(message, |_| None);
                (SaslMechanism::Scram(server.mechanism()), step)
            }
            State::BadReauthMechanism { asked, had } => {
                return Err(Refusal {
                    code: ResponseError::SaslAuthenticationFailed.code(),
                    message: format!(
                        "SASL mechanism {} is not supported for re-authentication of mechanism {}",
                        asked.name(),
                        had.name()
                    ),
                    close: true,
                });
            }
            other => {
                let close = !matches!(other, State::NotRequired | State::Authenticated);
                if !close {
                    self.state = other;
                }
                return Err(Refusal {
                    code: ResponseError::IllegalSaslState.code(),
                    message: "SaslAuthenticate is not expected now".to_owned(),
                    close,
                });
            }
        };
        match step {
            Ok(Step::Continue(reply)) => Ok(reply),
            Ok(Step::Done { user, reply }) => {
                let principal = format!("User:{user}");
                if let Some(before) = self.reauth_of.take() {
                    if *before != *principal {
                        return Err(Refusal {
                            code: ResponseError::SaslAuthenticationFailed.code(),
                            message: format!(
                                "Cannot change principals during re-authentication from {before}: {principal}"
                            ),
                            close: true,
                        });
                    }
                }
                self.state = State::Authenticated;
                self.mechanism = Some(mechanism);
                self.principal = std::rc::Rc::from(principal);
                Ok(reply)
            }
            Err(e) => {
                self.state = State::Failed;
                Err(Refusal {
                    code: ResponseError::SaslAuthenticationFailed.code(),
                    message: failure_message(&e, mechanism),
                    close: true,
                })
            }
        }
    }
}

/// Kafka's wording for bad credentials; the reason itself for malformed exchanges.
fn failure_message(e: &AuthError, mechanism: SaslMechanism) -> String {
    match e {
        AuthError::InvalidCredentials => {
            let name = match mechanism {
                SaslMechanism::Plain => "PLAIN",
                SaslMechanism::Scram(_) => "SCRAM",
            };
            format!("Authentication failed: invalid credentials with SASL mechanism {name}")
        }
        other => format!("Authentication failed: {other}"),
    }
}

/// A PLAIN password's PBKDF2 against a stored credential, to run on a blocking thread.
pub struct PlainCheck {
    mechanism: Mechanism,
    credential: ScramCredential,
    password: Vec<u8>,
}

/// What a [`PlainCheck`] found, and for which credential (its StoredKey).
#[derive(Debug, Clone)]
pub struct PlainVerdict {
    pub stored_key: Vec<u8>,
    pub matches: bool,
}

impl PlainCheck {
    pub fn run(self) -> PlainVerdict {
        PlainVerdict {
            matches: self
                .credential
                .matches_password(self.mechanism, &self.password),
            stored_key: self.credential.stored_key,
        }
    }
}

/// The credential PLAIN checks a user's password against: SHA-256's if the user has one (its
/// PBKDF2 takes a quarter of SHA-512's: `cargo bench --bench security`), else SHA-512's.
fn stored_for_plain(
    user: &str,
    lookup: &impl Fn(&str, Mechanism) -> Option<ScramCredential>,
) -> Option<(Mechanism, ScramCredential)> {
    [Mechanism::Sha256, Mechanism::Sha512]
        .into_iter()
        .find_map(|m| lookup(user, m).map(|c| (m, c)))
}

/// PLAIN against the stored SCRAM credential. A password verified once is remembered (see
/// [`verified`]), so a client that reconnects does not pay the PBKDF2 again; the first check
/// comes in `checked` when the connection ran it off the reactor, else it runs here.
fn plain(
    message: &[u8],
    lookup: &impl Fn(&str, Mechanism) -> Option<ScramCredential>,
    checked: Option<PlainVerdict>,
) -> Result<Step, AuthError> {
    let (user, password) = scram::parse_plain(message)?;
    let Some((m, c)) = stored_for_plain(&user, lookup) else {
        return Err(AuthError::InvalidCredentials);
    };
    let matches = || match checked.filter(|v| v.stored_key == c.stored_key) {
        Some(v) => v.matches,
        None => c.matches_password(m, &password),
    };
    if verified::check(&user, &c.stored_key, &password) || matches() {
        verified::remember(&user, &c.stored_key, &password);
        Ok(Step::Done {
            user,
            reply: Vec::new(),
        })
    } else {
        Err(AuthError::InvalidCredentials)
    }
}

/// PLAIN passwords this shard verified, per user and credential: an HMAC of the password under
/// a key drawn at start (never the password, and not reusable by another process), so a
/// repeated login costs one HMAC instead of a PBKDF2 on the reactor. A changed credential has
/// another StoredKey and misses. Bounded: emptied when full.
mod verified {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use subtle::ConstantTimeEq;

    use super::scram::Mechanism;

    /// Remembered logins per shard.
    const ENTRIES_MAX: usize = 4096;

    /// (user, StoredKey) → HMAC of the verified password.
    type Seen = HashMap<(String, Vec<u8>), Vec<u8>>;

    thread_local! {
        static KEY: Vec<u8> = super::scram::random_bytes(32);
        static SEEN: RefCell<Seen> = RefCell::new(HashMap::new());
    }

    fn tag(password: &[u8]) -> Vec<u8> {
        KEY.with(|k| Mechanism::Sha256.hmac(k, password))
    }

    pub fn check(user: &str, stored_key: &[u8], password: &[u8]) -> bool {
        let t = tag(password);
        SEEN.with(|s| {
            s.borrow()
                .get(&(user.to_owned(), stored_key.to_vec()))
                .is_some_and(|known| bool::from(known.ct_eq(&t)))
        })
    }

    pub fn remember(user: &str, stored_key: &[u8], password: &[u8]) {
        let t = tag(password);
        SEEN.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() >= ENTRIES_MAX {
                s.clear();
            }
            s.insert((user.to_owned(), stored_key.to_vec()), t);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> impl Fn(&str, Mechanism) -> Option<ScramCredential> {
        let c = ScramCredential::from_password(Mechanism::Sha256, "pw", scram::ITERATIONS_MIN);
        move |u, m| (u == "alice" && m == Mechanism::Sha256).then(|| c.clone())
    }

    #[test]
    fn a_sasl_listener_serves_nothing_else_before_authentication() {
        let s = Session::new(true);
        assert!(s.allows(ApiKey::ApiVersions) && s.allows(ApiKey::SaslHandshake));
        assert!(!s.allows(ApiKey::Metadata) && !s.allows(ApiKey::Produce));
        let p = Session::new(false);
        assert!(p.allows(ApiKey::Produce));
        assert_eq!(&**p.principal(), "User:ANONYMOUS");
    }

    #[test]
    fn a_plain_check_run_elsewhere_decides_only_for_the_credential_it_checked() {
        let c = ScramCredential::from_password(Mechanism::Sha256, "pw", scram::ITERATIONS_MIN);
        let lookup = move |u: &str, m| (u == "dora" && m == Mechanism::Sha256).then(|| c.clone());
        let enabled = [SaslMechanism::Plain];
        let session = |s: &mut Session| s.handshake("PLAIN", &enabled, 1).unwrap();
        // The check the connection runs off the reactor, and its verdict used.
        let mut s = Session::new(true);
        session(&mut s);
        let check = s
            .plain_check(b"\0dora\0pw", &lookup)
            .expect("a PBKDF2 to run");
        let verdict = check.run();
        assert!(verdict.matches);
        assert_eq!(
            s.authenticate_checked(b"\0dora\0pw", &lookup, Some(verdict)),
            Ok(Vec::new())
        );
        // Remembered now: no second PBKDF2 for this password.
        let mut again = Session::new(true);
        session(&mut again);
        assert!(again.plain_check(b"\0dora\0pw", &lookup).is_none());
        // A verdict for another credential (changed meanwhile) is not trusted: checked here.
        let mut stale = Session::new(true);
        session(&mut stale);
        let forged = PlainVerdict {
            stored_key: vec![0; 32],
            matches: true,
        };
        let r = stale.authenticate_checked(b"\0dora\0wrong", &lookup, Some(forged));
        assert_eq!(
            r.unwrap_err().code,
            ResponseError::SaslAuthenticationFailed.code()
        );
        // A failing verdict refuses.
        let mut bad = Session::new(true);
        session(&mut bad);
        let verdict = bad
            .plain_check(b"\0dora\0nope", &lookup)
            .expect("unknown password")
            .run();
        assert!(!verdict.matches);
        assert!(bad
            .authenticate_checked(b"\0dora\0nope", &lookup, Some(verdict))
            .is_err());
        // Not PLAIN, or not chosen yet: nothing to run.
        assert!(Session::new(true)
            .plain_check(b"\0dora\0pw", &lookup)
            .is_none());
    }

    #[test]
    fn plain_authenticates_against_the_scram_credential() {
        let enabled = [SaslMechanism::Plain];
        let mut s = Session::new(true);
        s.handshake("PLAIN", &enabled, 1).unwrap();
        assert_eq!(s.authenticate(b"\0alice\0pw", creds()), Ok(Vec::new()));
        assert!(s.allows(ApiKey::Produce));
        assert_eq!(&**s.principal(), "User:alice");
        // No second handshake on an authenticated connection whose client never said it can
        // re-authenticate (SaslAuthenticate v1+); it stays open.
        let again = s.handshake("PLAIN", &enabled, 1).unwrap_err();
        assert_eq!(again.code, ResponseError::IllegalSaslState.code());
        assert!(!again.close);

        let mut wrong = Session::new(true);
        wrong.handshake("PLAIN", &enabled, 1).unwrap();
        let r = wrong.authenticate(b"\0alice\0nope", creds()).unwrap_err();
        assert_eq!(r.code, ResponseError::SaslAuthenticationFailed.code());
        assert!(r.close && wrong.failed() && !wrong.allows(ApiKey::ApiVersions));
    }

    #[test]
    fn a_remembered_plain_login_still_refuses_other_passwords_and_changed_credentials() {
        let enabled = [SaslMechanism::Plain];
        let login = |pw: &[u8], creds: &dyn Fn(&str, Mechanism) -> Option<ScramCredential>| {
            let mut s = Session::new(true);
            s.handshake("PLAIN", &enabled, 1).unwrap();
            let mut msg = b"\0alice\0".to_vec();
            msg.extend_from_slice(pw);
            s.authenticate(&msg, creds).is_ok()
        };
        let old = creds();
        assert!(login(b"pw", &old));
        assert!(login(b"pw", &old), "remembered");
        assert!(!login(b"pw2", &old));
        // The password changed: the old one no longer works even though it was remembered.
        let c = ScramCredential::from_password(Mechanism::Sha256, "pw2", scram::ITERATIONS_MIN);
        let new = move |u: &str, m: Mechanism| {
            (u == "alice" && m == Mechanism::Sha256).then(|| c.clone())
        };
        assert!(!login(b"pw", &new));
        assert!(login(b"pw2", &new));
    }

    #[test]
    fn handshake_refuses_disabled_mechanisms_and_authenticate_before_it() {
        let mut s = Session::new(true);
        let r = s
            .handshake("SCRAM-SHA-512", &[SaslMechanism::Plain], 1)
            .unwrap_err();
        assert_eq!(r.code, ResponseError::UnsupportedSaslMechanism.code());
        let mut early = Session::new(true);
        let r = early.authenticate(b"\0alice\0pw", creds()).unwrap_err();
        assert_eq!(r.code, ResponseError::IllegalSaslState.code());
        assert!(r.close);
        let mut plaintext = Session::new(false);
        let r = plaintext
            .handshake("PLAIN", &[SaslMechanism::Plain], 1)
            .unwrap_err();
        assert_eq!(r.code, ResponseError::IllegalSaslState.code());
        assert!(!r.close);
    }

    #[test]
    fn a_session_expires_and_the_same_principal_logs_in_again_on_the_connection() {
        let enabled = [
            SaslMechanism::Plain,
            SaslMechanism::Scram(Mechanism::Sha256),
        ];
        let max = Some(Duration::from_secs(10));
        let t0 = Instant::now();
        let login = |s: &mut Session, mechanism: &str, message: &[u8]| {
            s.handshake(mechanism, &enabled, 1)?;
            s.saw_authenticate_version(2);
            s.authenticate(message, creds())
        };
        let mut s = Session::new(true);
        assert!(login(&mut s, "PLAIN", b"\0alice\0pw").is_ok());
        assert_eq!(s.start_session(t0, max), 10_000);
        assert!(!s.expired(t0 + Duration::from_secs(9)));
        assert!(s.expired(t0 + Duration::from_secs(10)));
        // Re-authentication: same mechanism, same principal; the new session starts then.
        assert!(s.may_reauthenticate(1) && !s.may_reauthenticate(0));
        assert!(login(&mut s, "PLAIN", b"\0alice\0pw").is_ok());
        assert_eq!(&**s.principal(), "User:alice");
        s.start_session(t0 + Duration::from_secs(10), max);
        assert!(!s.expired(t0 + Duration::from_secs(19)));
        // Another principal: refused, and the connection closes.
        let other = ScramCredential::from_password(Mechanism::Sha256, "pw", scram::ITERATIONS_MIN);
        s.handshake("PLAIN", &enabled, 1).unwrap();
        let r = s
            .authenticate(b"\0bob\0pw", |u, _| (u == "bob").then(|| other.clone()))
            .unwrap_err();
        assert_eq!(r.code, ResponseError::SaslAuthenticationFailed.code());
        assert!(
            r.message.contains("Cannot change principals"),
            "{}",
            r.message
        );
        assert!(r.close && s.failed());
        // Another mechanism: the handshake is answered, the SaslAuthenticate refused.
        let mut s = Session::new(true);
        assert!(login(&mut s, "PLAIN", b"\0alice\0pw").is_ok());
        s.handshake("SCRAM-SHA-256", &enabled, 1).unwrap();
        let r = s.authenticate(b"n,,n=alice,r=abc", creds()).unwrap_err();
        assert!(
            r.close && r.message.contains("re-authentication"),
            "{}",
            r.message
        );
        // A client that only sent SaslAuthenticate v0 cannot re-authenticate.
        let mut old = Session::new(true);
        old.handshake("PLAIN", &enabled, 1).unwrap();
        old.saw_authenticate_version(0);
        old.authenticate(b"\0alice\0pw", creds()).unwrap();
        assert!(!old.may_reauthenticate(1));
        assert_eq!(
            old.handshake("PLAIN", &enabled, 1).unwrap_err().code,
            ResponseError::IllegalSaslState.code()
        );
        // Without a maximum the session never expires.
        assert_eq!(old.start_session(t0, None), 0);
        assert!(!old.expired(t0 + Duration::from_secs(1 << 20)));
    }
}
