//! Security (part 1): a SASL_PLAINTEXT listener beside the PLAINTEXT one. librdkafka (rdkafka,
//! SASL/PLAIN: this build of librdkafka has no OpenSSL, which its SCRAM needs; SCRAM runs
//! through the Python, Java and Node clients in the client matrix) and a raw Kafka client check
//! what a Kafka user expects: credentials from `--add-scram` and from `sluice user`, a wrong
//! password answered SASL_AUTHENTICATION_FAILED and the connection closed, a request before
//! authentication closing the connection, Metadata naming the listener's own address, and
//! the metrics counting both outcomes; re-authentication (KIP-368) under
//! `--connections-max-reauth-ms`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::raw::Raw;
use common::{Broker, Out, WAIT};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer;

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const ILLEGAL_SASL_STATE: i16 = 34;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// A broker with a PLAINTEXT and a SASL_PLAINTEXT listener, `alice` created at start; the
/// SASL listener's address.
fn start() -> (Broker, String) {
    let sasl = common::address_outside_ephemeral_range();
    let listeners = format!("PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://{sasl}");
    let broker = Broker::start(&[
        "--listeners",
        &listeners,
        "--add-scram",
        "SCRAM-SHA-512=[name=alice,password=alice-secret]",
    ]);
    (broker, sasl)
}

fn cli(addr: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--bootstrap", addr, "--timeout-ms", "10000"])
        .env_remove("SLUICE_BOOTSTRAP")
        .env_remove("SLUICE_USER_PASSWORD")
        .output()
        .expect("run sluice cli")
}

/// Waits (bounded) until `sluice user list` shows `user`.
fn wait_user(addr: &str, user: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = cli(addr, &["user", "list", "--format", "json"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(user) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "user {user} never appeared: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SaslHandshake + SaslAuthenticate with PLAIN on a fresh connection; the error code and the
/// connection (to see what the broker does next).
fn plain(addr: &str, user: &str, password: &str) -> (i16, Raw) {
    let mut raw = Raw::connect(addr);
    let (mechanisms, code) = raw.sasl_plain(user, password);
    assert!(mechanisms.iter().any(|m| m == "SCRAM-SHA-512"));
    (code, raw)
}

/// [`plain`] until it answers `want` (bounded): a credential change reaches every shard of the
/// broker a moment after the request that made it is answered, as it reaches Kafka's brokers.
fn plain_eventually(addr: &str, user: &str, password: &str, want: i16) -> Raw {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, raw) = plain(addr, user, password);
        if code == want {
            return raw;
        }
        assert!(
            Instant::now() < deadline,
            "{user}'s login kept answering {code}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metadata(raw: &mut Raw) -> MetadataResponse {
    raw.call(ApiKey::Metadata, 12, &MetadataRequest::default())
}

#[test]
fn a_sasl_listener_authenticates_and_refuses_bad_or_missing_credentials() {
    let (broker, sasl) = start();
    wait_user(&broker.addr, "alice");

    // PLAIN against alice's SCRAM credential; Metadata names the SASL listener's address.
    let mut raw = plain_eventually(&sasl, "alice", "alice-secret", 0);
    let md = metadata(&mut raw);
    let port: i32 = sasl.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(
        md.brokers[0].port, port,
        "Metadata must name the SASL listener"
    );
    // A second handshake v0 on an authenticated connection is refused and the connection
    // stays (v1 would start a re-authentication, KIP-368).
    let again: SaslHandshakeResponse = raw.call(
        ApiKey::SaslHandshake,
        0,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    assert_eq!(again.error_code, ILLEGAL_SASL_STATE);
    metadata(&mut raw);

    // A wrong password: SASL_AUTHENTICATION_FAILED, then the broker closes the connection.
    let (code, mut raw) = plain(&sasl, "alice", "wrong");
    assert_eq!(code, SASL_AUTHENTICATION_FAILED);
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(raw.recv_frame().is_none(), "the connection must close");
    // An unknown user fails the same way.
    assert_eq!(
        plain(&sasl, "mallory", "alice-secret").0,
        SASL_AUTHENTICATION_FAILED
    );

    // A request before authentication closes the connection unanswered.
    let mut raw = Raw::connect(&sasl);
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(
        raw.recv_frame().is_none(),
        "unauthenticated Metadata answered"
    );

    // An unknown mechanism is refused with the list of enabled ones.
    let mut raw = Raw::connect(&sasl);
    let hs: SaslHandshakeResponse = raw.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI")),
    );
    assert_eq!(hs.error_code, UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(hs.mechanisms.len(), 3);

    // The PLAINTEXT listener needs nothing and refuses a handshake; its Metadata names it.
    let mut raw = Raw::connect(&broker.addr);
    let hs: SaslHandshakeResponse = raw.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    assert_eq!(hs.error_code, ILLEGAL_SASL_STATE);
    let md = metadata(&mut raw);
    assert_eq!(
        format!("{}:{}", md.brokers[0].host.as_str(), md.brokers[0].port),
        broker.addr
    );

    assert!(broker.metric("sluice_sasl_authentications_total") >= 1);
    assert!(broker.metric("sluice_sasl_authentication_failures_total") >= 3);
}

#[test]
fn librdkafka_produces_and_consumes_over_sasl_plain() {
    let (broker, sasl) = start();
    wait_user(&broker.addr, "alice");
    plain_eventually(&sasl, "alice", "alice-secret", 0);
    let auth = [
        ("bootstrap.servers", sasl.as_str()),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "alice"),
        ("sasl.password", "alice-secret"),
    ];
    broker.create_topic("secured", 2, &[]);
    let producer = broker.producer(&auth);
    let records: Vec<Out> = (0..20)
        .map(|i| Out {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for d in common::produce_all(&producer, "secured", &records) {
        d.expect("delivered over SASL");
    }
    let mut consumer_cfg = auth.to_vec();
    consumer_cfg.push(("group.id", "secured-readers"));
    let consumer = broker.consumer(&consumer_cfg);
    consumer.subscribe(&["secured"]).expect("subscribe");
    let got = common::consume_n(&consumer, "secured", 2, 20);
    let mut values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    values.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(values, want);

    // A wrong password never gets Metadata: the producer reports an authentication error.
    let bad = [
        ("bootstrap.servers", sasl.as_str()),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "alice"),
        ("sasl.password", "nope"),
    ];
    let consumer = broker.consumer(&bad);
    let md = consumer.fetch_metadata(None, Duration::from_secs(5));
    assert!(
        md.is_err(),
        "metadata with a wrong password: {:?}",
        md.map(|m| m.brokers().len())
    );
}

/// KIP-368: under `--connections-max-reauth-ms` a login lasts that long; librdkafka logs in
/// again on its open connections and keeps producing, a client that does not is closed at its
/// first request after the session, and a new login as someone else is refused.
#[test]
fn sessions_expire_and_clients_log_in_again_on_their_connections() {
    const LIFETIME_MS: u64 = 3_000;
    let sasl = common::address_outside_ephemeral_range();
    let listeners = format!("PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://{sasl}");
    let lifetime = LIFETIME_MS.to_string();
    let broker = Broker::start(&[
        "--listeners",
        &listeners,
        "--add-scram",
        "SCRAM-SHA-512=[name=alice,password=alice-secret];SCRAM-SHA-512=[name=bob,password=bob-secret]",
        "--connections-max-reauth-ms",
        &lifetime,
    ]);
    wait_user(&broker.addr, "bob");
    plain_eventually(&sasl, "alice", "alice-secret", 0);
    plain_eventually(&sasl, "bob", "bob-secret", 0);

    // The session's lifetime is in the answer; a new login on the connection starts another.
    let mut raw = Raw::connect(&sasl);
    let (_, auth) = raw.sasl_plain_answer("alice", "alice-secret");
    assert_eq!(
        (auth.error_code, auth.session_lifetime_ms),
        (0, LIFETIME_MS as i64)
    );
    assert!(metadata(&mut raw).brokers.len() == 1);
    let (_, again) = raw.sasl_plain_answer("alice", "alice-secret");
    assert_eq!(
        (again.error_code, again.session_lifetime_ms),
        (0, LIFETIME_MS as i64)
    );
    // After it, a request closes the connection.
    std::thread::sleep(Duration::from_millis(LIFETIME_MS + 300));
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(
        raw.recv_frame().is_none(),
        "answered after the session expired"
    );
    assert_eq!(broker.metric("sluice_sasl_sessions_expired_total"), 1);

    // Logging in again as another principal is refused, and the connection closes.
    let (_, mut raw) = plain(&sasl, "alice", "alice-secret");
    let (_, bob) = raw.sasl_plain_answer("bob", "bob-secret");
    assert_eq!(bob.error_code, SASL_AUTHENTICATION_FAILED);
    let message = bob.error_message.map(|m| m.to_string()).unwrap_or_default();
    assert!(message.contains("Cannot change principals"), "{message}");
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(
        raw.recv_frame().is_none(),
        "served after a refused re-login"
    );

    // librdkafka (KIP-368 since 2.2) logs in again on its connections before each session
    // ends: a producer sending for over three lifetimes has every record delivered and none
    // of its connections closed.
    broker.create_topic("reauth", 1, &[]);
    let producer = broker.producer(&[
        ("bootstrap.servers", sasl.as_str()),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "alice"),
        ("sasl.password", "alice-secret"),
    ]);
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(LIFETIME_MS * 3 + 1_000) {
        let record = Out {
            value: Some(format!("r{sent}").into_bytes()),
            ..Default::default()
        };
        for d in common::produce_all(&producer, "reauth", &[record]) {
            d.expect("delivered across re-authentications");
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // The raw client's one renewal, and at least three on the producer's connection.
    let renewals = broker.metric("sluice_sasl_reauthentications_total");
    assert!(renewals > 3, "{renewals} renewals in {sent} sends");
    assert_eq!(
        broker.metric("sluice_sasl_sessions_expired_total"),
        1,
        "a librdkafka connection outlived its session"
    );
}

#[test]
fn users_are_created_listed_and_deleted_with_the_cli() {
    let (broker, sasl) = start();
    wait_user(&broker.addr, "alice");
    plain_eventually(&sasl, "alice", "alice-secret", 0);
    let out = cli(
        &broker.addr,
        &[
            "user",
            "create",
            "bob",
            "--password",
            "bob-pw",
            "--mechanism",
            "SCRAM-SHA-256",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let list = cli(&broker.addr, &["user", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("bob") && text.contains("SCRAM-SHA-256"),
        "{text}"
    );
    assert!(
        text.contains("alice") && text.contains("SCRAM-SHA-512"),
        "{text}"
    );
    plain_eventually(&sasl, "bob", "bob-pw", 0);

    // The CLI itself logs in with SCRAM (or PLAIN) on the SASL listener; the broker's final
    // message is checked, and a wrong password is Kafka's error.
    let as_user = |mechanism: &str, user: &str, password: &str| {
        cli(
            &sasl,
            &[
                "user",
                "list",
                "--sasl-mechanism",
                mechanism,
                "--sasl-username",
                user,
                "--sasl-password",
                password,
            ],
        )
    };
    for (mechanism, user, password) in [
        ("SCRAM-SHA-256", "bob", "bob-pw"),
        ("SCRAM-SHA-512", "alice", "alice-secret"),
        ("PLAIN", "alice", "alice-secret"),
    ] {
        let out = as_user(mechanism, user, password);
        assert!(out.status.success(), "{mechanism} as {user}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("bob"));
    }
    let out = as_user("SCRAM-SHA-256", "bob", "wrong");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SASL_AUTHENTICATION_FAILED"),
        "{out:?}"
    );
    // bob has no SCRAM-SHA-512 credential.
    assert!(!as_user("SCRAM-SHA-512", "bob", "bob-pw").status.success());
    let out = as_user("SCRAM-SHA-1", "bob", "bob-pw");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--sasl-mechanism"),
        "{out:?}"
    );

    // A new password replaces the old one.
    let out = cli(
        &broker.addr,
        &[
            "user",
            "create",
            "bob",
            "--password",
            "bob-pw2",
            "--mechanism",
            "SCRAM-SHA-256",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    plain_eventually(&sasl, "bob", "bob-pw2", 0);
    assert_eq!(plain(&sasl, "bob", "bob-pw").0, SASL_AUTHENTICATION_FAILED);

    // Bad input gets Kafka's codes.
    let out = cli(
        &broker.addr,
        &[
            "user",
            "create",
            "carol",
            "--password",
            "x",
            "--iterations",
            "100",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UNACCEPTABLE_CREDENTIAL"),
        "{out:?}"
    );
    let out = cli(
        &broker.addr,
        &["user", "delete", "carol", "--mechanism", "SCRAM-SHA-512"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RESOURCE_NOT_FOUND"),
        "{out:?}"
    );

    let out = cli(&broker.addr, &["user", "delete", "bob"]);
    assert!(out.status.success(), "{out:?}");
    plain_eventually(&sasl, "bob", "bob-pw2", SASL_AUTHENTICATION_FAILED);
    let list = cli(&broker.addr, &["user", "list"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains("bob"));
}

#[test]
fn credentials_survive_a_restart_and_add_scram_keeps_a_changed_password() {
    let (mut broker, sasl) = start();
    wait_user(&broker.addr, "alice");
    plain_eventually(&sasl, "alice", "alice-secret", 0);
    let out = cli(
        &broker.addr,
        &[
            "user",
            "create",
            "alice",
            "--password",
            "changed",
            "--mechanism",
            "SCRAM-SHA-512",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(broker.stop(), Some(0));
    broker.restart();
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, _) = plain(&sasl, "alice", "changed");
        if code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's changed password never worked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        plain(&sasl, "alice", "alice-secret").0,
        SASL_AUTHENTICATION_FAILED,
        "--add-scram reset a changed password"
    );
}

#[test]
fn hostile_sasl_input_is_refused_and_hurts_nobody() {
    let (broker, sasl) = start();
    wait_user(&broker.addr, "alice");
    plain_eventually(&sasl, "alice", "alice-secret", 0);
    let handshake = |raw: &mut Raw, version: i16, mechanism: &'static str| {
        let hs: SaslHandshakeResponse = raw.call(
            ApiKey::SaslHandshake,
            version,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
        );
        assert_eq!(hs.error_code, 0);
    };

    // An oversized token: refused and closed.
    let mut raw = Raw::connect(&sasl);
    handshake(&mut raw, 1, "SCRAM-SHA-512");
    let auth: SaslAuthenticateResponse = raw.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(vec![b'n'; 100_000].into()),
    );
    assert_eq!(auth.error_code, SASL_AUTHENTICATION_FAILED);
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(raw.recv_frame().is_none());

    // A SCRAM exchange cut in the middle: the client-first, then half a frame, then gone.
    let mut raw = Raw::connect(&sasl);
    handshake(&mut raw, 1, "SCRAM-SHA-512");
    let first: SaslAuthenticateResponse = raw.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(b"n,,n=alice,r=abcdefgh"[..].into()),
    );
    assert_eq!(first.error_code, 0);
    use std::io::Write;
    raw.stream
        .write_all(&[0, 0, 0, 50, 0, 36, 0])
        .expect("partial frame");
    drop(raw);

    // After SaslHandshake v0 the tokens are bare frames: garbage closes the connection.
    let mut raw = Raw::connect(&sasl);
    handshake(&mut raw, 0, "SCRAM-SHA-256");
    raw.send_frame(b"\xff\xfegarbage");
    assert!(
        raw.recv_frame().is_none(),
        "a bad raw token is not answered"
    );

    // A SaslAuthenticate that is no SASL message at all, and one before any handshake.
    let mut raw = Raw::connect(&sasl);
    let auth: SaslAuthenticateResponse = raw.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(b"\0alice\0alice-secret"[..].into()),
    );
    assert_eq!(auth.error_code, ILLEGAL_SASL_STATE);
    assert!(raw.recv_frame().is_none());

    // Nobody else was hurt: a proper login still works, and so does the PLAINTEXT listener.
    assert_eq!(plain(&sasl, "alice", "alice-secret").0, 0);
    let mut raw = Raw::connect(&broker.addr);
    assert_eq!(metadata(&mut raw).brokers.len(), 1);
}
