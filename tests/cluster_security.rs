//! Security in a cluster: three nodes, each with a PLAINTEXT and a SASL_PLAINTEXT listener and
//! the authorizer on. Metadata through any node's SASL listener names every broker's SASL
//! address; ACL bindings made through one node hold on all (they travel with the metadata
//! quorum); followers replicate as `User:ANONYMOUS` over the PLAINTEXT inter-broker listener
//! once that principal has ClusterAction, so acks=all with min.insync.replicas=2 works for a
//! client that may write. librdkafka (SASL/PLAIN) produces and consumes; a raw client checks
//! Metadata and a denial on another node.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::raw::Raw;
use common::{Out, WAIT};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer;

/// SASL/PLAIN as `user` (password `USER-pw`) on a fresh raw connection.
fn login(addr: &str, user: &str) -> Raw {
    let mut raw = Raw::connect(addr);
    let (_, code) = raw.sasl_plain(user, &format!("{user}-pw"));
    assert_eq!(code, 0, "{user} logs in");
    raw
}

/// `sluice ARGS` as admin through `addr`; its stdout, or `None` if it failed.
fn admin(addr: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--bootstrap", addr, "--timeout-ms", "10000"])
        .args(["--sasl-username", "admin", "--sasl-password", "admin-pw"])
        .env_remove("SLUICE_BOOTSTRAP")
        .output()
        .expect("run sluice");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Retries `admin` (bounded) until it succeeds: the users appear just after start.
fn admin_ok(addr: &str, args: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(out) = admin(addr, args) {
            return out;
        }
        assert!(Instant::now() < deadline, "sluice {args:?} kept failing");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sasl_listeners_and_acls_hold_across_a_cluster_and_replication_still_works() {
    let scram =
        "SCRAM-SHA-256=[name=admin,password=admin-pw];SCRAM-SHA-256=[name=alice,password=alice-pw]";
    let cluster = Cluster::start(
        3,
        false,
        &[
            "--listeners",
            "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "--add-scram",
            scram,
            "--authorizer",
            "standard",
            "--super-users",
            "User:admin",
            "--min-insync-replicas",
            "2",
        ],
    );
    cluster.wait_settled(&[0, 1, 2]);
    let sasl: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.listeners["SASL_PLAINTEXT"].clone())
        .collect();

    // Bindings through node 0.
    for args in [
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:ANONYMOUS",
            "--operation",
            "ClusterAction",
            "--cluster",
        ][..],
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--operation",
            "Write",
            "--topic",
            "secure",
        ],
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--group",
            "secure-readers",
        ],
    ] {
        admin_ok(&sasl[0], args);
    }
    admin_ok(
        &sasl[0],
        &[
            "topic",
            "create",
            "secure",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    // ... hold on node 2.
    cluster.wait_for("node 2 to list the bindings made through node 0", || {
        admin(&sasl[2], &["acl", "list", "--topic", "secure"])
            .is_some_and(|out| out.contains("User:alice"))
    });

    // Metadata through node 1's SASL listener names every broker's SASL address (once node 1
    // has the topic).
    let mut raw = login(&sasl[1], "alice");
    let mut md = MetadataResponse::default();
    cluster.wait_for("node 1 to know the topic", || {
        md = raw.call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        );
        !md.topics.is_empty()
    });
    let mut advertised: Vec<String> = md
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        .collect();
    advertised.sort();
    let mut want = sasl.clone();
    want.sort();
    assert_eq!(advertised, want);
    let names: Vec<String> = md
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    assert_eq!(names, ["secure"], "alice sees only what she may describe");

    // acks=all with min.insync.replicas=2: the followers must be replicating.
    let bootstrap = sasl.join(",");
    let auth = [
        ("bootstrap.servers", bootstrap.as_str()),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "alice"),
        ("sasl.password", "alice-pw"),
    ];
    let mut producer_cfg = auth.to_vec();
    producer_cfg.push(("acks", "all"));
    let producer = cluster.nodes[0].producer(&producer_cfg);
    let records: Vec<Out> = (0..30)
        .map(|i| Out {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for d in common::produce_all(&producer, "secure", &records) {
        d.expect("acks=all delivered over SASL");
    }
    let mut consumer_cfg = auth.to_vec();
    consumer_cfg.push(("group.id", "secure-readers"));
    let consumer = cluster.nodes[0].consumer(&consumer_cfg);
    consumer.subscribe(&["secure"]).expect("subscribe");
    let got = common::consume_n(&consumer, "secure", 3, 30);
    let mut values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    values.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(values, want);

    // A denial on another node: alice may not create topics.
    let mut raw = login(&sasl[2], "alice");
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let r: CreateTopicsResponse = raw.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("alices")))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
    );
    assert_eq!(r.topics[0].error_code, 29, "TOPIC_AUTHORIZATION_FAILED");
}
