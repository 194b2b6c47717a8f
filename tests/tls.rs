//! TLS listeners (SSL, SASL_SSL): Kafka requests over TLS through a raw client on rustls,
//! responses larger than one TLS send buffer, SASL inside TLS, mTLS principals enforced by the
//! ACLs, `--ssl-client-auth required` refusing a client without a trusted certificate (per
//! listener, as KIP-684 has it for SASL_SSL), SIGHUP
//! reloading the keystore while open connections keep theirs, and hostile bytes on a TLS port
//! (garbage, a handshake cut short, an oversized record) closing only their own connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pki::{client_config, Pki};
use common::raw::Raw;
use common::{Broker, WAIT};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateAclsRequest, CreateAclsResponse,
    CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn api_versions<S: Read + Write>(raw: &mut Raw<S>) -> i16 {
    let r: ApiVersionsResponse = raw.call(
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(s("tls-test"))
            .with_client_software_version(s("1")),
    );
    r.error_code
}

/// Whether a TLS client with `config` gets an ApiVersions answer from `addr`: false when the
/// handshake or the connection fails (on either side).
fn tls_works(addr: &str, config: Arc<rustls::ClientConfig>) -> bool {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // ApiVersions v0, correlation 7: header only.
    let mut req = vec![0, 0, 0, 0, 0, 18, 0, 0, 0, 0, 0, 7, 0, 1, b'x'];
    let len = (req.len() - 4) as u32;
    req[..4].copy_from_slice(&len.to_be_bytes());
    if tls.write_all(&req).and_then(|()| tls.flush()).is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    tls.read_exact(&mut head).is_ok() && head[4..8] == [0, 0, 0, 7]
}

fn create_topic<S: Read + Write>(raw: &mut Raw<S>, topic: &str) -> i16 {
    let r: CreateTopicsResponse = raw.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(s(topic)))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
    );
    r.topics[0].error_code
}

/// Fetch v12 of partition 0 from offset 0 with a large limit: the record bytes.
fn fetch_all<S: Read + Write>(raw: &mut Raw<S>, topic: &str) -> Bytes {
    let req = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_max_bytes(64 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(64 << 20)])]);
    let r: FetchResponse = raw.call(ApiKey::Fetch, 12, &req);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.records.clone().unwrap_or_default()
}

#[test]
fn ssl_and_sasl_ssl_listeners_serve_kafka_requests_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "one");
    let broker = Broker::start(&[
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        "--ssl-keystore-location",
        pki.server.to_str().unwrap(),
        "--add-scram",
        "SCRAM-SHA-256=[name=alice,password=alice-secret]",
    ]);
    let ssl = broker.listeners["SSL"].clone();
    let sasl_ssl = broker.listeners["SASL_SSL"].clone();

    // SSL: requests and a response several times the TLS send buffer (256 KiB), byte-exact.
    let mut raw = Raw::connect_tls(&ssl, pki.client_config(None));
    assert_eq!(api_versions(&mut raw), 0);
    assert_eq!(create_topic(&mut raw, "over-tls"), 0);
    let mut sent = Vec::new();
    for i in 0..24u8 {
        let values: Vec<Vec<u8>> = (0..64).map(|j| vec![i ^ j; 1024]).collect();
        let batch = common::raw::plain_batch(&values, false, false);
        let (code, _) = raw.produce("over-tls", 0, batch.clone());
        assert_eq!(code, 0, "produce over TLS");
        sent.extend_from_slice(&batch[8 + 4 + 4 + 1 + 4..]); // past the fields the log assigns
    }
    let got = fetch_all(&mut raw, "over-tls");
    assert!(got.len() > 1 << 20, "fetched {} bytes", got.len());
    // The batches' bodies (after base offset, length, leader epoch, magic, CRC) come back as sent.
    let mut bodies = Vec::new();
    let mut rest = &got[..];
    while rest.len() >= 12 {
        let len = u32::from_be_bytes(rest[8..12].try_into().unwrap()) as usize;
        bodies.extend_from_slice(&rest[8 + 4 + 4 + 1 + 4..12 + len]);
        rest = &rest[12 + len..];
    }
    assert_eq!(bodies.len(), sent.len());
    assert!(bodies == sent, "records changed on the way through TLS");

    // SASL_SSL: SASL inside TLS; without it nothing but the handshake is served.
    let mut raw = Raw::connect_tls(&sasl_ssl, pki.client_config(None));
    let (mechanisms, code) = raw.sasl_plain("alice", "alice-secret");
    assert!(mechanisms.iter().any(|m| m == "SCRAM-SHA-512"));
    assert_eq!(code, 0);
    assert_eq!(api_versions(&mut raw), 0);
    assert_eq!(fetch_all(&mut raw, "over-tls").len(), got.len());

    // A client that does not trust the broker's CA, and a plaintext client, get nothing.
    let other = Pki::new(dir.path(), "other");
    assert!(!tls_works(&ssl, other.client_config(None)));
    let mut plain = Raw::connect(&ssl);
    plain.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert!(
        plain.recv_frame().is_none(),
        "a plaintext request on a TLS port was answered"
    );
    assert!(broker.metric("sluice_tls_handshake_failures_total") >= 2);
    // The listener still serves.
    assert!(tls_works(&ssl, pki.client_config(None)));
}

#[test]
fn mtls_certificates_are_principals_and_required_client_auth_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "one");
    let admin = pki.client("admin");
    let alice = pki.client("alice");
    let broker = Broker::start(&[
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "--ssl-keystore-location",
        pki.server.to_str().unwrap(),
        "--ssl-truststore-location",
        pki.ca.to_str().unwrap(),
        "--ssl-client-auth",
        "required",
        "--authorizer",
        "standard",
        "--super-users",
        "User:CN=admin,O=Sluice",
    ]);
    let ssl = broker.listeners["SSL"].clone();

    // No certificate, or one from another CA: refused at the handshake.
    assert!(!tls_works(&ssl, pki.client_config(None)));
    let other = Pki::new(dir.path(), "other");
    let stranger = other.client("alice");
    assert!(!tls_works(&ssl, client_config(&pki.ca, Some(&stranger))));

    // alice's certificate makes her User:CN=alice,O=Sluice: denied until an ACL names her.
    let mut as_alice = Raw::connect_tls(&ssl, pki.client_config(Some(&alice)));
    assert_eq!(
        create_topic(&mut as_alice, "mtls"),
        TOPIC_AUTHORIZATION_FAILED
    );
    let mut as_admin = Raw::connect_tls(&ssl, pki.client_config(Some(&admin)));
    assert_eq!(create_topic(&mut as_admin, "mtls"), 0);
    let values = vec![b"v".to_vec()];
    let batch = common::raw::plain_batch(&values, false, false);
    assert_eq!(
        as_alice.produce("mtls", 0, batch.clone()).0,
        TOPIC_AUTHORIZATION_FAILED
    );
    use kafka_protocol::messages::create_acls_request::AclCreation;
    let grant: CreateAclsResponse = as_admin.call(
        ApiKey::CreateAcls,
        2,
        &CreateAclsRequest::default().with_creations(vec![AclCreation::default()
            .with_resource_type(2) // topic
            .with_resource_name(s("mtls"))
            .with_resource_pattern_type(3) // literal
            .with_principal(s("User:CN=alice,O=Sluice"))
            .with_host(s("*"))
            .with_operation(4) // write
            .with_permission_type(3)]), // allow
    );
    assert_eq!(grant.results[0].error_code, 0);
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, _) = as_alice.produce("mtls", 0, batch.clone());
        if code == 0 {
            break;
        }
        assert_eq!(code, TOPIC_AUTHORIZATION_FAILED);
        assert!(Instant::now() < deadline, "alice's grant never took effect");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// KIP-684: `--ssl-client-auth` is the SSL listener's; a SASL_SSL listener asks for a client
/// certificate only when named (`listener.name.sasl_ssl.ssl.client.auth`), and its principal
/// is still the SASL login's.
#[test]
fn client_auth_is_per_listener_and_sasl_ssl_logins_name_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "one");
    let admin = pki.client("admin");
    let args = |sasl_ssl: &'static str| -> Vec<String> {
        [
            "--listeners",
            "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
            "--ssl-keystore-location",
            pki.server.to_str().unwrap(),
            "--ssl-truststore-location",
            pki.ca.to_str().unwrap(),
            "--ssl-client-auth",
            "required",
            "--listener-ssl-client-auth",
            sasl_ssl,
            "--add-scram",
            "SCRAM-SHA-256=[name=alice,password=alice-secret]",
            "--authorizer",
            "standard",
            "--super-users",
            "User:CN=admin,O=Sluice",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let start = |sasl_ssl: &'static str| {
        let args = args(sasl_ssl);
        Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // The broker-wide setting does not reach SASL_SSL: a client without a certificate logs in.
    let broker = start("SSL=required");
    let (ssl, sasl_ssl) = (&broker.listeners["SSL"], &broker.listeners["SASL_SSL"]);
    assert!(!tls_works(ssl, pki.client_config(None)));
    assert!(tls_works(sasl_ssl, pki.client_config(None)));
    let mut raw = Raw::connect_tls(sasl_ssl, pki.client_config(None));
    assert_eq!(raw.sasl_plain("alice", "alice-secret").1, 0);
    drop((raw, broker));

    // Named, SASL_SSL refuses a client without a trusted certificate; with one, the principal
    // is still the SASL login's: the super user's certificate grants alice nothing.
    let broker = start("SASL_SSL=required");
    let (ssl, sasl_ssl) = (&broker.listeners["SSL"], &broker.listeners["SASL_SSL"]);
    assert!(!tls_works(sasl_ssl, pki.client_config(None)));
    let mut as_admin = Raw::connect_tls(ssl, pki.client_config(Some(&admin)));
    assert_eq!(create_topic(&mut as_admin, "kip684"), 0);
    let mut raw = Raw::connect_tls(sasl_ssl, pki.client_config(Some(&admin)));
    assert_eq!(raw.sasl_plain("alice", "alice-secret").1, 0);
    assert_eq!(
        create_topic(&mut raw, "kip684-alice"),
        TOPIC_AUTHORIZATION_FAILED
    );
    let values = vec![b"v".to_vec()];
    let batch = common::raw::plain_batch(&values, false, false);
    assert_eq!(
        raw.produce("kip684", 0, batch).0,
        TOPIC_AUTHORIZATION_FAILED
    );
}

#[test]
fn sighup_reloads_the_keystore_and_open_connections_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let one = Pki::new(dir.path(), "one");
    let two = Pki::new(dir.path(), "two");
    let keystore = dir.path().join("keystore.pem");
    std::fs::copy(&one.server, &keystore).unwrap();
    let broker = Broker::start(&[
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "--ssl-keystore-location",
        keystore.to_str().unwrap(),
    ]);
    let ssl = broker.listeners["SSL"].clone();
    let mut open = Raw::connect_tls(&ssl, one.client_config(None));
    assert_eq!(api_versions(&mut open), 0);
    assert!(!tls_works(&ssl, two.client_config(None)));

    // A keystore that cannot be read leaves the old one serving.
    std::fs::write(&keystore, "not a PEM file").unwrap();
    broker.signal(libc::SIGHUP);
    std::fs::copy(&two.server, &keystore).unwrap();
    broker.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while !tls_works(&ssl, two.client_config(None)) {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!tls_works(&ssl, one.client_config(None)));
    assert_eq!(
        api_versions(&mut open),
        0,
        "the open connection kept its session"
    );
    let log = broker.log();
    assert!(log.contains("TLS reload failed"), "{log}");
    assert!(
        log.contains("TLS keystore and truststore reloaded"),
        "{log}"
    );
}

#[test]
fn hostile_bytes_on_a_tls_port_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "one");
    let broker = Broker::start(&[
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "--ssl-keystore-location",
        pki.server.to_str().unwrap(),
        "--connections-max-idle-ms",
        "1000",
    ]);
    let ssl = broker.listeners["SSL"].clone();
    let closed = |bytes: &[u8]| {
        let mut c = TcpStream::connect(&ssl).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = c.write_all(bytes);
        let mut buf = [0u8; 4096];
        let started = Instant::now();
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => assert!(started.elapsed() < Duration::from_secs(30)), // an alert
            }
        }
    };
    // Garbage; a handshake record announcing 64 KiB then silence (closed when the handshake
    // time runs out); a record over TLS's 16 KiB + 2 KiB limit; a truncated ClientHello.
    let mut oversized = vec![0x16, 0x03, 0x03, 0xff, 0xff];
    oversized.extend(std::iter::repeat_n(0u8, 1 << 16));
    for bytes in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01][..],
        &oversized[..],
        &[
            0x16, 0x03, 0x01, 0x00, 0x30, 0x01, 0x00, 0x00, 0x2c, 0x03, 0x03,
        ][..],
        &[][..],
    ] {
        closed(bytes);
    }
    assert!(tls_works(&ssl, pki.client_config(None)));
    assert!(broker.metric("sluice_tls_handshake_failures_total") >= 4);
}
