//! Client matrix: runs each third-party client's scenario script (scripts/client-matrix/) against
//! a real broker, one #[test] per client so a failure names the client; the script's own output
//! names the scenario. Clients come from scripts/install-test-deps.sh (CI runs it first); a missing
//! client fails its test with the reason rather than passing silently.
//!
//! Tests take a lock and run one at a time: each starts its own broker, and the clients are heavy
//! enough that running them all at once on a small machine would only make timeouts likelier.
//! Every script is killed (with its whole process group) after `script_timeout()`.
//!
//! The broker is started and stopped with the shared harness in tests/common.

mod common;

use common::Broker;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One client at a time (see the module doc).
static SERIAL: Mutex<()> = Mutex::new(());

/// Upper bound on one client's whole script, `default_s` unless MATRIX_TEST_TIMEOUT_S says.
fn script_timeout(default_s: u64) -> Duration {
    let secs = std::env::var("MATRIX_TEST_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_s);
    Duration::from_secs(secs)
}

/// The bound of most clients' scripts.
const SCRIPT_TIMEOUT_S: u64 = 180;

/// Partition count the broker gives auto-created topics; kcat relies on it (it cannot create topics).
const AUTO_CREATE_PARTITIONS: &str = "3";

fn run_client(client: &str) {
    run_client_within(client, SCRIPT_TIMEOUT_S);
}

fn run_client_within(client: &str, default_timeout_s: u64) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let broker = Broker::start(&["--num-partitions", AUTO_CREATE_PARTITIONS]);
    let addr = broker.addr.clone();
    run_script(client, broker, &addr, default_timeout_s, &[], |_| {});
}

/// A SASL client's scenario: the broker has a SASL_PLAINTEXT listener, which the script gets
/// as its bootstrap, and the user alice (password alice-secret) with both SCRAM credentials.
fn run_sasl_client(client: &str, reauth: Reauth) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let sasl = common::address_outside_ephemeral_range();
    let listeners = format!("PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://{sasl}");
    let reauth_ms = REAUTH_MS.to_string();
    let mut args = vec![
        "--num-partitions",
        AUTO_CREATE_PARTITIONS,
        "--listeners",
        &listeners,
        "--add-scram",
        "SCRAM-SHA-512=[name=alice,password=alice-secret];SCRAM-SHA-256=[name=alice,password=alice-secret]",
    ];
    if reauth == Reauth::Renewed {
        args.extend(["--connections-max-reauth-ms", reauth_ms.as_str()]);
    }
    let broker = Broker::start(&args);
    // The credentials are created just after start: wait (bounded) until alice can log in.
    let deadline = Instant::now() + common::WAIT;
    while !alice_can_log_in(&sasl) {
        assert!(
            Instant::now() < deadline,
            "alice's credentials never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The Java scenario keeps one producer for several sessions (the others' clients renew
    // theirs within the scenario already).
    let env = [("MATRIX_LONG_SESSION_MS", (3 * REAUTH_MS).to_string())];
    run_script(client, broker, &sasl, SCRIPT_TIMEOUT_S, &env, |broker| {
        if reauth == Reauth::Renewed {
            // KIP-368: the client logged in again on its connections before each session
            // ended; none was closed for outliving its session.
            let renewals = broker.metric("sluice_sasl_reauthentications_total");
            assert!(renewals > 0, "{client} never re-authenticated");
            assert_eq!(
                broker.metric("sluice_sasl_sessions_expired_total"),
                0,
                "a {client} connection outlived its SASL session"
            );
        }
    });
}

/// Whether a SASL scenario runs with sessions that end (`--connections-max-reauth-ms`):
/// for the clients that re-authenticate (KIP-368); kafka-python and aiokafka do not.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Reauth {
    Never,
    Renewed,
}

/// Short enough that the scenarios' clients renew their sessions.
const REAUTH_MS: u64 = 2000;

/// A TLS client's scenario: the broker has a SASL_SSL listener (the script's bootstrap, alice
/// as for SASL) and an SSL listener asking for client certificates, with a CA, server and client
/// certificate made for the run. Topics, groups and transactional ids starting with "mtls" are
/// granted to the client certificate's principal `User:CN=matrix,O=Sluice` only, so the mTLS
/// scenarios (which use those names) pass only if the broker maps the certificate to it.
fn run_tls_client(client: &str) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = common::pki::Pki::new(dir.path(), "matrix");
    let cert = pki.client("matrix");
    let broker = Broker::start(&[
        "--num-partitions",
        AUTO_CREATE_PARTITIONS,
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0",
        "--ssl-keystore-location",
        pki.server.to_str().expect("utf-8 path"),
        "--ssl-truststore-location",
        pki.ca.to_str().expect("utf-8 path"),
        "--ssl-client-auth",
        "requested",
        "--add-scram",
        "SCRAM-SHA-512=[name=alice,password=alice-secret];SCRAM-SHA-256=[name=alice,password=alice-secret]",
        "--authorizer",
        "standard",
        "--allow-everyone-if-no-acl-found",
    ]);
    for resource in ["--topic", "--group", "--transactional-id"] {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "acl",
                "add",
                resource,
                "mtls",
                "--resource-pattern-type",
                "prefixed",
            ])
            .args([
                "--allow-principal",
                "User:CN=matrix,O=Sluice",
                "--operation",
                "All",
            ])
            .args(["--bootstrap", &broker.addr, "--timeout-ms", "10000"])
            .env_remove("SLUICE_BOOTSTRAP")
            .output()
            .expect("run sluice acl");
        assert!(out.status.success(), "sluice acl add: {out:?}");
    }
    let sasl_ssl = broker.listeners["SASL_SSL"].clone();
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let env = [
        ("MATRIX_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
        ("MATRIX_SSL_CA", path(&pki.ca)),
        ("MATRIX_MTLS_BOOTSTRAP", broker.listeners["SSL"].clone()),
        ("MATRIX_SSL_CERT", path(&cert.cert)),
        ("MATRIX_SSL_KEY", path(&cert.key)),
        ("MATRIX_SSL_KEYSTORE", path(&cert.both)),
    ];
    run_script(client, broker, &sasl_ssl, SCRIPT_TIMEOUT_S, &env, |_| {});
}

/// SASL/PLAIN as alice on a raw connection: whether it authenticates.
fn alice_can_log_in(addr: &str) -> bool {
    common::raw::Raw::connect(addr)
        .sasl_plain("alice", "alice-secret")
        .1
        == 0
}

/// Runs `client`'s scenario against `bootstrap` (an address of `broker`) with `env` added to
/// the script's environment, then stops the broker.
fn run_script(
    client: &str,
    mut broker: Broker,
    bootstrap: &str,
    default_timeout_s: u64,
    env: &[(&str, String)],
    check: impl FnOnce(&Broker),
) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/client-matrix/run.sh");
    let timeout = script_timeout(default_timeout_s);
    let started = Instant::now();
    let (status, output) = common::run_bounded(
        Command::new("bash")
            .arg("-c")
            .arg(r#"exec bash "$0" "$@" 2>&1"#)
            .arg(&script)
            .arg(bootstrap)
            .arg(client)
            .env("MATRIX_KCAT_PARTITIONS", AUTO_CREATE_PARTITIONS)
            .envs(env.iter().map(|(k, v)| (k, v)))
            // run.sh's own bound fires first so that it can still print its summary.
            .env(
                "MATRIX_TIMEOUT_S",
                timeout.as_secs().saturating_sub(15).max(1).to_string(),
            ),
        timeout,
    );
    let elapsed = started.elapsed();
    if status == Some(0) {
        check(&broker);
    }
    let broker_exit = broker.stop();
    match status {
        Some(0) => {
            println!("{output}");
            println!("{client}: passed in {elapsed:.1?}");
        }
        Some(code) => panic!(
            "client matrix for {client} failed (exit {code}) after {elapsed:.1?}\n\
             --- script output ---\n{output}\n--- broker log (tail) ---\n{}",
            tail(&broker.log(), 60)
        ),
        None => panic!(
            "client matrix for {client} killed after the {timeout:?} bound (or by a signal)\n\
             --- script output ---\n{output}\n--- broker log (tail) ---\n{}",
            tail(&broker.log(), 60)
        ),
    }
    assert_eq!(broker_exit, Some(0), "broker exit status after SIGTERM");
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn kafka_python() {
    run_client("kafka-python");
}

#[test]
fn aiokafka() {
    run_client("aiokafka");
}

#[test]
fn kafkajs() {
    run_client("kafkajs");
}

#[test]
fn kcat() {
    run_client("kcat");
}

#[test]
fn kafka_python_groups() {
    run_client("kafka-python-groups");
}

#[test]
fn aiokafka_groups() {
    run_client("aiokafka-groups");
}

#[test]
fn kafkajs_groups() {
    run_client("kafkajs-groups");
}

#[test]
fn java() {
    run_client("java");
}

/// Kafka Streams (scripts/client-matrix/streams): a word count through a repartition topic and a
/// changelogged store, and a windowed count, stopped and restarted mid-stream with an empty state
/// dir; the final counts must be exact (at_least_once).
#[test]
fn kafka_streams() {
    run_client("kafka-streams");
}

/// The same application with processing.guarantee=exactly_once_v2 (Streams' transactions): the
/// outputs, read with read_committed, hold every count update exactly once, in order.
#[test]
fn kafka_streams_eos() {
    run_client("kafka-streams-eos");
}

#[test]
fn go() {
    run_client("go");
}

/// Quix Streams (scripts/client-matrix/quixstreams_test.py): a stateful word count through a
/// repartition topic and a changelogged store, restarted with an empty state dir, and a tumbling
/// window count; the counts must be exact.
#[test]
fn quixstreams() {
    run_client("quixstreams");
}

/// Kafka Connect (scripts/client-matrix/connect_test.py): a distributed worker with Debezium's
/// PostgreSQL source and JDBC sink between two databases of a PostgreSQL server the script starts;
/// the worker is killed with SIGKILL while rows change; the sink table must end equal to the
/// source table and the topic must hold every change in order. Starting a JVM worker twice and
/// PostgreSQL takes most of a minute, hence the longer bound.
#[test]
fn kafka_connect() {
    run_client_within("kafka-connect", 480);
}

#[test]
fn sasl_python_clients() {
    run_sasl_client("sasl", Reauth::Never);
}

#[test]
fn kafkajs_sasl() {
    run_sasl_client("kafkajs-sasl", Reauth::Renewed);
}

#[test]
fn java_sasl() {
    run_sasl_client("java-sasl", Reauth::Renewed);
}

/// confluent-kafka, kafka-python and aiokafka with SCRAM-SHA-512/256 and PLAIN inside TLS, and
/// each over mutual TLS.
#[test]
fn tls_python_clients() {
    run_tls_client("tls");
}

#[test]
fn kafkajs_tls() {
    run_tls_client("kafkajs-tls");
}

/// The Java client's whole scenario (admin, idempotent produce, groups, transactions) over
/// SASL_SSL with SCRAM-SHA-512, then again over SSL with a client certificate.
#[test]
fn java_tls() {
    run_tls_client("java-tls");
}
