//! ACLs (`--authorizer standard`): a matrix of principal × operation × resource in which every
//! denial is denied (with Kafka's error code) and every grant works, through a raw Kafka client
//! authenticated with SASL/PLAIN; the bindings are made with `sluice acl` as a super user;
//! Metadata hides what a principal may not describe; librdkafka consumes as an allowed user
//! and is refused as a denied one.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::raw::Raw;
use common::{Broker, WAIT};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, FetchRequest, FetchResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

const USERS: [&str; 4] = ["admin", "alice", "bob", "carol"];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A broker with the authorizer on, `User:admin` a super user, every user of [`USERS`] with
/// password `NAME-pw`; the SASL listener's address.
fn start() -> (Broker, String) {
    let sasl = common::address_outside_ephemeral_range();
    let listeners = format!("PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://{sasl}");
    let scram: Vec<String> = USERS
        .iter()
        .map(|u| format!("SCRAM-SHA-256=[name={u},password={u}-pw]"))
        .collect();
    let scram = scram.join(";");
    let broker = Broker::start(&[
        "--listeners",
        &listeners,
        "--add-scram",
        &scram,
        "--authorizer",
        "standard",
        "--super-users",
        "User:admin",
    ]);
    let deadline = Instant::now() + WAIT;
    while login(&sasl, "carol").is_none() {
        assert!(Instant::now() < deadline, "the users never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, sasl)
}

/// A raw connection authenticated as `user` (SASL/PLAIN), if the credentials work.
fn login(addr: &str, user: &str) -> Option<Raw> {
    let mut raw = Raw::connect(addr);
    let (_, code) = raw.sasl_plain(user, &format!("{user}-pw"));
    (code == 0).then_some(raw)
}

/// `sluice ARGS` as admin over the SASL listener; panics unless it succeeds.
fn admin_cli(sasl: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--bootstrap", sasl, "--timeout-ms", "10000"])
        .args(["--sasl-username", "admin", "--sasl-password", "admin-pw"])
        .env_remove("SLUICE_BOOTSTRAP")
        .output()
        .expect("run sluice");
    assert!(out.status.success(), "sluice {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn produce(raw: &mut Raw, topic: &str) -> i16 {
    raw.produce(
        topic,
        0,
        common::raw::plain_batch(&[b"v".to_vec()], false, false),
    )
    .0
}

fn fetch(raw: &mut Raw, topic: &str) -> i16 {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = raw.call(ApiKey::Fetch, 12, &req);
    r.responses[0].partitions[0].error_code
}

fn metadata(raw: &mut Raw, topics: Option<&[&str]>) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))))
                .collect()
        }));
    raw.call(ApiKey::Metadata, 12, &req)
}

fn describe(raw: &mut Raw, topic: &str) -> i16 {
    metadata(raw, Some(&[topic])).topics[0].error_code
}

fn describe_configs(raw: &mut Raw, topic: &str) -> i16 {
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))]);
    let r: DescribeConfigsResponse = raw.call(ApiKey::DescribeConfigs, 4, &req);
    r.results[0].error_code
}

fn alter_configs(raw: &mut Raw, topic: &str) -> i16 {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configs(vec![AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(s("3600000")))]),
    ]);
    let r: IncrementalAlterConfigsResponse = raw.call(ApiKey::IncrementalAlterConfigs, 1, &req);
    r.responses[0].error_code
}

fn create(raw: &mut Raw, topic: &str) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let r: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &req);
    r.topics[0].error_code
}

fn create_acl(raw: &mut Raw) -> i16 {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    let req = CreateAclsRequest::default().with_creations(vec![AclCreation::default()
        .with_resource_type(3)
        .with_resource_name(s("nobodys-group"))
        .with_resource_pattern_type(3)
        .with_principal(s("User:nobody"))
        .with_host(s("*"))
        .with_operation(3)
        .with_permission_type(3)]);
    let r: CreateAclsResponse = raw.call(ApiKey::CreateAcls, 3, &req);
    r.results[0].error_code
}

#[test]
fn every_denial_is_denied_and_every_grant_works() {
    let (broker, sasl) = start();
    for t in ["orders", "public", "secret"] {
        admin_cli(&sasl, &["topic", "create", t, "--partitions", "1"]);
    }
    // alice reads orders with groups app-*; bob writes ord* and manages orders' configs but
    // may not read orders; bob creates new-*; everybody describes public but carol.
    let acls: [&[&str]; 7] = [
        &[
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "orders",
        ],
        &[
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--group",
            "app-",
            "--resource-pattern-type",
            "prefixed",
        ],
        &[
            "--allow-principal",
            "User:bob",
            "--operation",
            "Write",
            "--topic",
            "ord",
            "--resource-pattern-type",
            "prefixed",
        ],
        &[
            "--allow-principal",
            "User:bob",
            "--operation",
            "AlterConfigs",
            "--topic",
            "orders",
        ],
        &[
            "--deny-principal",
            "User:bob",
            "--operation",
            "Read",
            "--topic",
            "orders",
        ],
        &[
            "--allow-principal",
            "User:bob",
            "--operation",
            "Create",
            "--topic",
            "new-",
            "--resource-pattern-type",
            "prefixed",
        ],
        &[
            "--allow-principal",
            "User:*",
            "--deny-principal",
            "User:carol",
            "--operation",
            "Describe",
            "--topic",
            "public",
        ],
    ];
    for a in acls {
        let mut args = vec!["acl", "add"];
        args.extend_from_slice(a);
        admin_cli(&sasl, &args);
    }
    let listed = admin_cli(&sasl, &["acl", "list"]);
    assert_eq!(listed.lines().count(), 1 + 8, "{listed}");

    // The group coordinator loads __consumer_offsets first (bounded wait, as admin).
    let mut admin = login(&sasl, "admin").expect("login");
    let deadline = Instant::now() + WAIT;
    while admin.commit_offset("app-1", "orders", 0) != 0 {
        assert!(
            Instant::now() < deadline,
            "the group coordinator never loaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // (user, operation, resource, expected code): 0 is a grant.
    let t = TOPIC_AUTHORIZATION_FAILED;
    let matrix: Vec<(&str, &str, &str, i16)> = vec![
        ("alice", "produce", "orders", t),
        ("alice", "fetch", "orders", 0),
        ("alice", "describe", "orders", 0), // READ implies DESCRIBE
        ("alice", "describe", "public", 0),
        ("alice", "describe", "secret", t),
        ("alice", "commit:app-1", "orders", 0),
        (
            "alice",
            "commit:other",
            "orders",
            GROUP_AUTHORIZATION_FAILED,
        ),
        ("alice", "describe_configs", "orders", t),
        ("alice", "alter_configs", "orders", t),
        ("alice", "create", "new-a", t),
        ("alice", "create_acl", "", CLUSTER_AUTHORIZATION_FAILED),
        ("bob", "produce", "orders", 0),
        ("bob", "fetch", "orders", t),            // deny wins
        ("bob", "describe", "orders", 0),         // WRITE implies DESCRIBE
        ("bob", "describe_configs", "orders", 0), // ALTER_CONFIGS implies DESCRIBE_CONFIGS
        ("bob", "alter_configs", "orders", 0),
        ("bob", "produce", "secret", t),
        ("bob", "create", "new-b", 0),
        ("bob", "create", "other-b", t),
        ("carol", "describe", "public", t), // deny wins over User:*
        ("carol", "produce", "orders", t),
        ("carol", "fetch", "orders", t),
        (
            "carol",
            "commit:app-1",
            "orders",
            GROUP_AUTHORIZATION_FAILED,
        ),
        ("admin", "produce", "secret", 0),
        ("admin", "fetch", "secret", 0),
        ("admin", "alter_configs", "secret", 0),
        ("admin", "create", "new-admin", 0),
        ("admin", "create_acl", "", 0),
    ];
    let mut wrong = Vec::new();
    for (user, op, resource, want) in &matrix {
        let mut raw = login(&sasl, user).expect("login");
        let got = match *op {
            "produce" => produce(&mut raw, resource),
            "fetch" => fetch(&mut raw, resource),
            "describe" => describe(&mut raw, resource),
            "describe_configs" => describe_configs(&mut raw, resource),
            "alter_configs" => alter_configs(&mut raw, resource),
            "create" => create(&mut raw, resource),
            "create_acl" => create_acl(&mut raw),
            c => {
                let group = c
                    .strip_prefix("commit:")
                    .expect("an operation of the table");
                raw.commit_offset(group, resource, 0)
            }
        };
        if got != *want {
            wrong.push(format!("{user} {op} {resource}: got {got}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A full Metadata listing shows only what the principal may describe.
    let names = |user: &str| -> Vec<String> {
        let mut raw = login(&sasl, user).expect("login");
        let mut n: Vec<String> = metadata(&mut raw, None)
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        n.sort();
        n
    };
    assert_eq!(names("alice"), ["orders", "public"]);
    assert_eq!(names("carol"), Vec::<String>::new());
    assert!(names("admin").contains(&"secret".to_owned()));
    // The PLAINTEXT listener's User:ANONYMOUS has no binding of its own: it sees only what
    // User:* may describe.
    let mut anon = Raw::connect(&broker.addr);
    let seen: Vec<String> = metadata(&mut anon, None)
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    assert_eq!(seen, ["public"]);
    assert_eq!(produce(&mut anon, "orders"), t);

    // Removing alice's binding takes her read away.
    admin_cli(
        &sasl,
        &[
            "acl",
            "remove",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "orders",
        ],
    );
    let mut raw = login(&sasl, "alice").expect("login");
    assert_eq!(fetch(&mut raw, "orders"), t);

    let denials = broker.metric("sluice_authorization_denials_total");
    assert!(denials >= 15, "{denials} denials counted");
}

#[test]
fn librdkafka_consumes_as_an_allowed_user_and_is_refused_as_another() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let (broker, sasl) = start();
    admin_cli(&sasl, &["topic", "create", "events", "--partitions", "1"]);
    admin_cli(
        &sasl,
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
            "events",
        ],
    );
    admin_cli(
        &sasl,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--group",
            "readers",
        ],
    );
    let conf = |user: &str| {
        let pw = format!("{user}-pw");
        let mut c = broker.client_config();
        c.set("bootstrap.servers", &sasl)
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", user)
            .set("sasl.password", &pw);
        c
    };
    let producer: rdkafka::producer::BaseProducer = conf("alice").create().expect("producer");
    for i in 0..10 {
        let v = format!("e{i}");
        producer
            .send(rdkafka::producer::BaseRecord::<(), str>::to("events").payload(&v))
            .expect("enqueue");
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("flush");

    let consumer: BaseConsumer = conf("alice")
        .set("group.id", "readers")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["events"]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 10 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(got, (0..10).map(|i| format!("e{i}")).collect::<Vec<_>>());

    // bob has no binding: his consumer gets an authorization error, never a record.
    let consumer: BaseConsumer = conf("bob")
        .set("group.id", "readers")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["events"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut error = None;
    while error.is_none() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => panic!("bob read {:?}", m.payload()),
            Some(Err(e)) => error = Some(e.to_string()),
            None => {}
        }
    }
    let error = error.expect("bob's consumer reported no error");
    assert!(error.to_lowercase().contains("authoriz"), "{error}");
}

#[test]
fn bindings_survive_a_restart_and_need_the_authorizer() {
    let (mut broker, sasl) = start();
    admin_cli(
        &sasl,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "kept",
        ],
    );
    assert_eq!(broker.stop(), Some(0));
    broker.restart();
    let deadline = Instant::now() + WAIT;
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["acl", "list", "--topic", "kept", "--bootstrap", &sasl])
            .args(["--sasl-username", "admin", "--sasl-password", "admin-pw"])
            .output()
            .expect("run sluice");
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("User:alice") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the binding did not survive: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Without --authorizer the ACL APIs answer SECURITY_DISABLED, and nothing is checked.
    let open = Broker::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["acl", "list", "--bootstrap", &open.addr])
        .output()
        .expect("run sluice");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SECURITY_DISABLED"),
        "{out:?}"
    );
}
