//! Security in a cluster: three nodes, each with a PLAINTEXT and a SASL_PLAINTEXT listener and
//! the authorizer on. Metadata through any node's SASL listener names every broker's SASL
//! address; ACL bindings made through one node hold on all (they travel with the metadata
//! quorum); followers replicate as `User:ANONYMOUS` over the PLAINTEXT inter-broker listener
//! once that principal has ClusterAction, so acks=all with min.insync.replicas=2 works for a
//! client that may write. librdkafka (SASL/PLAIN) produces and consumes; a raw client checks
//! Metadata and a denial on another node.
//!
//! And brokers that reach each other over a SASL_SSL inter-broker listener and a controller
//! endpoint under mutual TLS (only a super user's certificate is served; a plaintext client
//! and a user's certificate from the same CA are refused): followers verify
//! their leader's certificate and log in with SCRAM-SHA-512 as a super user, while
//! `User:ANONYMOUS` (the PLAINTEXT listener) has no ClusterAction — so acks=all with
//! min.insync.replicas=2, full ISRs and a failover after SIGKILL of a leader prove that
//! replication ran over SASL_SSL; a node restarted with a wrong inter-broker password says so
//! and never rejoins an ISR.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::pki::Pki;
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

/// A partition's (leader, replicas, ISR).
type Placement = (i32, Vec<i32>, Vec<i32>);

/// Metadata of `topic` through `addr` (SASL_SSL, as the super user `admin`), by partition.
fn partitions_over_tls(addr: &str, pki: &Pki, topic: &str) -> Option<Vec<Placement>> {
    let config = pki.client_config(None);
    let md = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut raw = Raw::connect_tls(addr, config);
        let (_, code) = raw.sasl_plain("admin", "admin-pw");
        assert_eq!(code, 0);
        raw.call::<_, MetadataResponse>(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
    }))
    .ok()?;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
    let mut parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.leader_id.0,
                p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
            )
        })
        .collect();
    parts.sort();
    Some(parts.into_iter().map(|(_, l, r, i)| (l, r, i)).collect())
}

#[test]
fn brokers_replicate_over_sasl_ssl_with_scram_and_a_wrong_password_keeps_a_follower_out() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "inter-broker");
    let scram = "SCRAM-SHA-512=[name=broker,password=broker-pw];SCRAM-SHA-512=[name=admin,password=admin-pw]";
    let mut cluster = Cluster::start(
        3,
        false,
        &[
            // PLAINTEXT first: the harness's own Metadata probes use it (as User:ANONYMOUS,
            // who may do nothing here).
            "--listeners",
            "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
            "--inter-broker-listener-name",
            "SASL_SSL",
            "--ssl-keystore-location",
            pki.server.to_str().unwrap(),
            "--ssl-truststore-location",
            pki.ca.to_str().unwrap(),
            "--sasl-mechanism-inter-broker-protocol",
            "SCRAM-SHA-512",
            "--inter-broker-sasl-username",
            "broker",
            "--inter-broker-sasl-password",
            "broker-pw",
            "--add-scram",
            scram,
            "--authorizer",
            "standard",
            "--super-users",
            "User:broker;User:admin;User:CN=broker,O=Sluice",
            "--min-insync-replicas",
            "2",
            // Raft and forwarded commands under mutual TLS, between super users only.
            "--controller-security-protocol",
            "SSL",
        ],
    );
    cluster.wait_settled(&[0, 1, 2]);

    // The controller endpoint answers a node's certificate, and nothing else: not plaintext,
    // not a certificate the same CA gave a user.
    let controller = cluster
        .voters
        .split(',')
        .find_map(|v| v.strip_prefix("0@"))
        .expect("node 0's controller endpoint")
        .to_owned();
    let hello = br#"{"Hello":{"to":0}}"#;
    let mut as_node = Raw::connect_tls(
        &controller,
        pki.client_config(Some(&pki.server_as_client())),
    );
    as_node.send_frame(hello);
    assert_eq!(
        as_node.recv_frame().as_deref(),
        Some(&br#""Hello""#[..]),
        "a node's certificate is served"
    );
    let alice = pki.client("alice");
    let mut as_user = Raw::connect_tls(&controller, pki.client_config(Some(&alice)));
    as_user.send_frame(hello);
    assert!(
        as_user.recv_frame().is_none(),
        "a user's certificate reached Raft"
    );
    let mut plain = Raw::connect(&controller);
    plain.send_frame(hello);
    assert!(plain.recv_frame().is_none(), "plaintext reached Raft");
    cluster.wait_for("node 0 to log the refused user", || {
        cluster.nodes[0]
            .log()
            .contains("refusing a peer: User:CN=alice,O=Sluice is not one of the --super-users")
    });
    let sasl_ssl = |c: &Cluster| -> Vec<String> {
        c.nodes
            .iter()
            .map(|n| n.listeners["SASL_SSL"].clone())
            .collect()
    };
    let addrs = sasl_ssl(&cluster);
    let ca = pki.ca.to_str().unwrap().to_owned();
    let bootstrap = addrs.join(",");
    let auth = [
        ("bootstrap.servers", bootstrap.as_str()),
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "admin"),
        ("sasl.password", "admin-pw"),
    ];

    // The topic, created through librdkafka's admin client over SASL_SSL.
    let mut admin_cfg = rdkafka::ClientConfig::new();
    for (k, v) in auth {
        admin_cfg.set(k, v);
    }
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        admin_cfg.create().expect("admin client");
    let topic = rdkafka::admin::NewTopic::new("ib", 3, rdkafka::admin::TopicReplication::Fixed(3));
    let deadline = Instant::now() + WAIT;
    loop {
        let r = futures_executor::block_on(
            admin.create_topics([&topic], &rdkafka::admin::AdminOptions::new()),
        );
        match r.as_ref().map(|v| v.first().map(|t| t.is_ok())) {
            Ok(Some(true)) => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            _ => panic!("create topic ib: {r:?}"),
        }
    }

    // Every ISR fills: the followers fetch, and they can only do so over SASL_SSL.
    cluster.wait_for("full ISRs (replication over SASL_SSL)", || {
        partitions_over_tls(&addrs[0], &pki, "ib").is_some_and(|ps| {
            ps.len() == 3 && ps.iter().all(|(_, r, i)| r.len() == 3 && i.len() == 3)
        })
    });

    let mut producer_cfg = auth.to_vec();
    producer_cfg.push(("acks", "all"));
    producer_cfg.push(("enable.idempotence", "true"));
    let batch = |from: usize| -> Vec<Out> {
        (from..from + 300)
            .map(|i| Out {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(format!("v{i}").into_bytes()),
                ..Default::default()
            })
            .collect()
    };
    {
        let producer = cluster.nodes[0].producer(&producer_cfg);
        for d in common::produce_all(&producer, "ib", &batch(0)) {
            d.expect("acks=all with min.insync.replicas=2 over SASL_SSL replication");
        }
    }

    // SIGKILL the leader of partition 0; a follower that copied it over SASL_SSL takes over
    // and nothing acknowledged is lost.
    let parts = partitions_over_tls(&addrs[1], &pki, "ib").expect("metadata");
    let victim = parts[0].0 as usize;
    cluster.nodes[victim].kill9();
    let alive: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let survivor = addrs[alive[0]].clone();
    cluster.wait_for("every partition led by a live broker", || {
        partitions_over_tls(&survivor, &pki, "ib")
            .is_some_and(|ps| ps.iter().all(|(l, _, _)| *l >= 0 && *l as usize != victim))
    });
    {
        let mut cfg = producer_cfg.clone();
        let live: Vec<String> = alive.iter().map(|i| addrs[*i].clone()).collect();
        let live = live.join(",");
        cfg[0] = ("bootstrap.servers", live.as_str());
        let producer = cluster.nodes[alive[0]].producer(&cfg);
        for d in common::produce_all(&producer, "ib", &batch(300)) {
            d.expect("acks=all after the failover");
        }
        let mut consumer_cfg = cfg.clone();
        consumer_cfg.push(("group.id", "ib-readers"));
        let consumer = cluster.nodes[alive[0]].consumer(&consumer_cfg);
        let got = common::consume_n(&consumer, "ib", 3, 600);
        let mut values: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect();
        values.sort();
        let mut want: Vec<String> = (0..600).map(|i| format!("v{i}")).collect();
        want.sort();
        assert_eq!(values, want, "every acknowledged record, once");
    }

    // The killed node back with a wrong inter-broker password: its logins are refused, it
    // says so, and it stays out of every ISR.
    let node = &mut cluster.nodes[victim];
    let at = node
        .args
        .iter()
        .position(|a| a == "--inter-broker-sasl-password")
        .expect("password flag");
    node.args[at + 1] = "wrong-pw".into();
    node.restart();
    cluster.wait_settled(&[0, 1, 2]);
    cluster.wait_for("the refused login in the restarted node's log", || {
        let log = cluster.nodes[victim].log();
        log.contains("cannot log in to the leader") && log.contains("SASL authentication refused")
    });
    std::thread::sleep(Duration::from_secs(3));
    let ps = partitions_over_tls(&survivor, &pki, "ib").expect("metadata");
    assert!(
        ps.iter().all(|(_, _, isr)| !isr.contains(&(victim as i32))),
        "a follower that cannot log in is in an ISR: {ps:?}"
    );
}
