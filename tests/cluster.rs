//! Clusters (part 1): three real `sluice` processes on loopback ports form a cluster under a
//! Raft controller quorum. Topics made through any node appear on all; the active controller
//! can crash (SIGKILL) and a new one takes over; a restarted node rejoins; the metadata survives
//! a restart of every node; a controller cut off from the others (TCP proxies on every link)
//! makes no metadata change, and after healing there is one history. Clients are librdkafka
//! (rdkafka) and a raw Kafka client for Metadata. Times are printed, never asserted.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{topics, Cluster};
use common::{consume_n, produce_all, Broker, Out};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::TopicPartitionList;

fn create_topic(cluster: &Cluster, via: usize, name: &str, partitions: i32) {
    let admin = cluster.nodes[via].admin();
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let res = futures_executor::block_on(admin.create_topics([&t], &opts)).expect("create_topics");
    for r in res {
        r.unwrap_or_else(|e| panic!("creating {name} through node {via}: {e:?}"));
    }
}

/// A topic name for raw requests.
fn wire_topic(name: &'static str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_static_str(name))
}

fn records(n: usize) -> Vec<Out> {
    (0..n)
        .map(|i| Out {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            ..Out::default()
        })
        .collect()
}

/// Every value of `topic`, read from all partitions through any node, sorted.
fn read_all(cluster: &Cluster, topic: &str, partitions: i32, n: usize) -> Vec<String> {
    let boot = cluster.bootstrap();
    let consumer = cluster.nodes[0].consumer(&[("bootstrap.servers", boot.as_str())]);
    let mut values: Vec<String> = consume_n(&consumer, topic, partitions, n)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap_or_default())
        .collect();
    values.sort();
    values
}

/// One cluster at a time: each is three or four processes, and on a two-core CI machine
/// several at once starve their heartbeats (a fenced broker would only slow a test down, but
/// the waits are bounded).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn expected(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
    v.sort();
    v
}

#[test]
fn three_nodes_form_a_cluster_survive_a_controller_crash_and_restarts() {
    let _serial = serial();
    let mut cluster = Cluster::start(3, false, &[]);
    let controller = cluster.wait_settled(&[0, 1, 2]);
    println!("cluster formed; active controller {controller}");

    // A topic made through node 1 shows on every node, spread over the three brokers.
    let started = Instant::now();
    create_topic(&cluster, 1, "spread", 6);
    let created = started.elapsed();
    let visible = cluster.wait_for("'spread' on every node", || {
        (0..3).all(|i| {
            topics(&cluster.nodes[i].addr)
                .is_some_and(|t| t.iter().any(|(n, _, p)| n == "spread" && *p == 6))
        })
    });
    println!("topic created in {created:?}, on all nodes {visible:?} later");
    let md = common::cluster::metadata(&cluster.nodes[2].addr).expect("metadata");
    let spread = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "spread"))
        .expect("spread");
    let mut leaders: Vec<i32> = spread.partitions.iter().map(|p| p.leader_id.0).collect();
    leaders.sort();
    leaders.dedup();
    assert_eq!(leaders, [0, 1, 2], "partitions led by every broker");
    for p in &spread.partitions {
        assert_eq!(p.isr_nodes, p.replica_nodes, "RF 1: the leader is the ISR");
    }

    // KIP-951: producing to a broker that does not lead the partition answers
    // NOT_LEADER_OR_FOLLOWER with the leader, its epoch and its address.
    let (p, leader) = spread
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .find(|(_, l)| *l != 0)
        .expect("a partition node 0 does not lead");
    {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("spread")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(common::raw::plain_batch(
                        &[b"x".to_vec()],
                        false,
                        false,
                    )))])]);
        let mut raw = common::raw::Raw::connect(&cluster.nodes[0].addr);
        let resp: ProduceResponse = raw.call(ApiKey::Produce, 10, &req);
        let part = &resp.responses[0].partition_responses[0];
        assert_eq!(part.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(part.current_leader.leader_id.0, leader);
        let endpoint = resp
            .node_endpoints
            .iter()
            .find(|e| e.node_id.0 == leader)
            .expect("the leader's endpoint");
        assert_eq!(
            format!("{}:{}", endpoint.host.as_str(), endpoint.port),
            cluster.nodes[leader as usize].addr
        );

        // The same for Fetch (v16: the leader per partition, endpoints in the response).
        use kafka_protocol::messages::{fetch_request, FetchRequest, FetchResponse};
        let fetch = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic_id(spread.topic_id)
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(p)
                    .with_partition_max_bytes(1 << 20)])]);
        let resp: FetchResponse = raw.call(ApiKey::Fetch, 16, &fetch);
        let part = &resp.responses[0].partitions[0];
        assert_eq!(part.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(part.current_leader.leader_id.0, leader);
        assert!(resp.node_endpoints.iter().any(|e| e.node_id.0 == leader));
    }

    // A manual replica assignment is honoured, for new topics and new partitions.
    let admin = cluster.nodes[2].admin();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let manual = NewTopic::new("manual", 2, TopicReplication::Variable(&[&[2], &[0]]));
    for r in futures_executor::block_on(admin.create_topics([&manual], &opts)).expect("create") {
        r.expect("manual assignment accepted");
    }
    let grow = rdkafka::admin::NewPartitions::new("manual", 3).assign(&[&[1]]);
    for r in futures_executor::block_on(admin.create_partitions([&grow], &opts)).expect("grow") {
        r.expect("partition assignment accepted");
    }
    cluster.wait_for("'manual' with its assigned leaders on node 0", || {
        common::cluster::metadata(&cluster.nodes[0].addr).is_some_and(|m| {
            m.topics.iter().any(|t| {
                t.name.as_ref().is_some_and(|n| n.0.as_str() == "manual")
                    && t.partitions.len() == 3
                    && {
                        let mut leaders: Vec<(i32, i32)> = t
                            .partitions
                            .iter()
                            .map(|p| (p.partition_index, p.leader_id.0))
                            .collect();
                        leaders.sort();
                        leaders == [(0, 2), (1, 0), (2, 1)]
                    }
            })
        })
    });

    // RF 3: every live replica starts in sync, so a topic that needs two in-sync replicas
    // takes acks=all at once.
    let admin = cluster.nodes[0].admin();
    let strict =
        NewTopic::new("strict", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    for r in futures_executor::block_on(admin.create_topics([&strict], &opts)).expect("create") {
        r.expect("RF 3 accepted");
    }
    let mut md = None;
    cluster.wait_for("node 0 to know 'strict'", || {
        md = common::cluster::metadata(&cluster.nodes[0].addr).filter(|m| {
            m.topics
                .iter()
                .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "strict"))
        });
        md.is_some()
    });
    let md = md.expect("metadata");
    let p = &md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "strict"))
        .expect("strict")
        .partitions[0];
    assert_eq!(p.replica_nodes.len(), 3);
    let mut isr = p.isr_nodes.clone();
    let mut replicas = p.replica_nodes.clone();
    isr.sort();
    replicas.sort();
    assert_eq!(isr, replicas, "every live replica starts in sync");
    let boot = cluster.bootstrap();
    let all = cluster.nodes[0].producer(&[
        ("bootstrap.servers", boot.as_str()),
        ("acks", "all"),
        ("message.timeout.ms", "10000"),
    ]);
    produce_all(&all, "strict", &records(1))[0]
        .clone()
        .expect("acks=all is taken with three in-sync replicas");

    // Produce through all nodes (acks=all), read back through all.
    let producer =
        cluster.nodes[0].producer(&[("bootstrap.servers", boot.as_str()), ("acks", "all")]);
    for d in produce_all(&producer, "spread", &records(300)) {
        d.expect("delivered");
    }
    assert_eq!(read_all(&cluster, "spread", 6, 300), expected(300));

    // A consumer group commits through its coordinator (the leader of its offsets partition).
    let group: BaseConsumer = cluster.nodes[0].consumer(&[
        ("bootstrap.servers", boot.as_str()),
        ("group.id", "g-cluster"),
    ]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("spread", 0, rdkafka::Offset::Offset(7))
        .expect("tpl");
    cluster.wait_for("a group commit to succeed", || {
        group.commit(&tpl, CommitMode::Sync).is_ok()
    });

    // A topic with a partition on every node, deleted while one of them is down (below).
    create_topic(&cluster, 0, "doomed", 3);
    let data_dirs: Vec<std::path::PathBuf> =
        cluster.nodes.iter().map(|n| n.data_dir.clone()).collect();
    let doomed_dirs = |i: usize| {
        std::fs::read_dir(&data_dirs[i])
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("doomed-"))
                    .count()
            })
            .unwrap_or(0)
    };

    // SIGKILL the active controller: the other two elect a new one and admin works again.
    let old = controller as usize;
    cluster.wait_for("the doomed topic's partition on the controller", || {
        doomed_dirs(old) == 1
    });
    cluster.nodes[old].kill9();
    let started = Instant::now();
    let alive: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new = cluster.wait_settled(&alive);
    println!(
        "controller {old} killed; {new} active and {old} fenced after {:?}",
        started.elapsed()
    );
    assert_ne!(new as usize, old);
    create_topic(&cluster, alive[0], "after-failover", 2);
    let admin = cluster.nodes[alive[0]].admin();
    for r in futures_executor::block_on(admin.delete_topics(&["doomed"], &opts)).expect("delete") {
        r.expect("deleted while a replica's node is down");
    }

    // The killed node restarts, rejoins, and serves its partitions' data again.
    cluster.nodes[old].restart();
    cluster.wait_settled(&[0, 1, 2]);
    cluster.wait_for("the restarted node to know 'after-failover'", || {
        topics(&cluster.nodes[old].addr)
            .is_some_and(|t| t.iter().any(|(n, _, _)| n == "after-failover"))
    });
    // Its partitions' leader epochs moved on while it was away and back (fenced, then
    // unfenced): OffsetForLeaderEpoch with the epoch Metadata names is answered, not refused as
    // UNKNOWN_LEADER_EPOCH (which KIP-320 consumers would retry for ever).
    {
        use kafka_protocol::messages::offset_for_leader_epoch_request::{
            OffsetForLeaderPartition, OffsetForLeaderTopic,
        };
        use kafka_protocol::messages::{
            ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
        };
        let mut led = None;
        cluster.wait_for(
            "the restarted node to lead a partition of 'spread' again",
            || {
                led = common::cluster::metadata(&cluster.nodes[old].addr).and_then(|m| {
                    m.topics
                        .iter()
                        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "spread"))
                        .and_then(|t| {
                            t.partitions
                                .iter()
                                .find(|p| p.leader_id.0 == old as i32)
                                .map(|p| (p.partition_index, p.leader_epoch))
                        })
                });
                led.is_some()
            },
        );
        let (p, epoch) = led.expect("led");
        assert!(epoch >= 2, "fenced and unfenced: epoch {epoch}");
        let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(wire_topic("spread"))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(p)
                    .with_current_leader_epoch(epoch)
                    .with_leader_epoch(epoch)]),
        ]);
        let mut raw = common::raw::Raw::connect(&cluster.nodes[old].addr);
        // Metadata may name the node a moment before its replica took the role (a retriable
        // NOT_LEADER_OR_FOLLOWER, as clients treat it).
        let mut code = -1;
        cluster.wait_for("the restarted node to serve as leader", || {
            let r: OffsetForLeaderEpochResponse = raw.call(ApiKey::OffsetForLeaderEpoch, 4, &req);
            code = r.topics[0].partitions[0].error_code;
            code != 6
        });
        assert_eq!(code, 0, "the current epoch is known");
    }

    // Once caught up, it removed the directory of the topic deleted while it was away.
    cluster.wait_for("the deleted topic's directory to be swept", || {
        doomed_dirs(old) == 0
    });
    assert_eq!(read_all(&cluster, "spread", 6, 300), expected(300));

    // Every node restarts (SIGTERM: controlled shutdown); the metadata survives.
    let before = topics(&cluster.nodes[0].addr).expect("topics");
    for n in &mut cluster.nodes {
        assert_eq!(n.stop(), Some(0), "clean exit");
    }
    for n in &mut cluster.nodes {
        n.restart();
    }
    cluster.wait_settled(&[0, 1, 2]);
    for i in 0..3 {
        cluster.wait_for("the metadata after a full restart", || {
            topics(&cluster.nodes[i].addr).as_ref() == Some(&before)
        });
    }
    assert_eq!(read_all(&cluster, "spread", 6, 300), expected(300));
    let group: BaseConsumer = cluster.nodes[0].consumer(&[
        ("bootstrap.servers", boot.as_str()),
        ("group.id", "g-cluster"),
    ]);
    let mut committed = None;
    cluster.wait_for("the group's committed offset after a full restart", || {
        committed = group
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .ok()
            .and_then(|c| c.find_partition("spread", 0).map(|p| p.offset()));
        committed.is_some()
    });
    assert_eq!(committed, Some(rdkafka::Offset::Offset(7)));
}

#[test]
fn an_isolated_controller_makes_no_change_and_healing_leaves_one_history() {
    let _serial = serial();
    let cluster = Cluster::start(3, true, &[]);
    let controller = cluster.wait_settled(&[0, 1, 2]) as usize;
    create_topic(&cluster, 0, "before-cut", 1);

    cluster.isolate(controller, true);
    let majority: Vec<usize> = (0..3).filter(|i| *i != controller).collect();
    let started = Instant::now();
    cluster.wait_for("the majority to elect another controller", || {
        majority.iter().all(|i| {
            common::cluster::metadata(&cluster.nodes[*i].addr)
                .is_some_and(|m| m.controller_id.0 >= 0 && m.controller_id.0 as usize != controller)
        })
    });
    println!(
        "controller {controller} cut off; the majority elected another in {:?}",
        started.elapsed()
    );

    // The isolated side accepts no change: its CreateTopics fails (times out or is refused).
    let admin = cluster.nodes[controller].admin();
    let t = NewTopic::new("minority", 1, TopicReplication::Fixed(1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(8)));
    let res = futures_executor::block_on(admin.create_topics([&t], &opts));
    let refused = match &res {
        Err(_) => true,
        Ok(rs) => rs.iter().all(Result::is_err),
    };
    assert!(refused, "the isolated node created a topic: {res:?}");
    // The majority does.
    create_topic(&cluster, majority[0], "majority", 1);

    cluster.isolate(controller, false);
    cluster.wait_settled(&[0, 1, 2]);
    let mut views = Vec::new();
    cluster.wait_for("every node to hold the same topics", || {
        views = (0..3).map(|i| topics(&cluster.nodes[i].addr)).collect();
        views.iter().all(|v| v.is_some() && *v == views[0])
    });
    let names: Vec<String> = views[0]
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert!(names.contains(&"majority".to_owned()), "{names:?}");
    assert!(names.contains(&"before-cut".to_owned()), "{names:?}");
    assert!(
        !names.contains(&"minority".to_owned()),
        "the cut-off change survived: {names:?}"
    );
}

#[test]
fn a_broker_only_node_follows_the_quorum_and_serves_its_partitions() {
    let _serial = serial();
    let mut cluster = Cluster::start(3, false, &[]);
    let b = cluster.add_broker();
    let controller = cluster.wait_settled(&[0, 1, 2, 3]);

    // Admin through the broker-only node is forwarded; it leads some partitions.
    create_topic(&cluster, b, "via-broker", 8);
    let md = common::cluster::metadata(&cluster.nodes[b].addr).expect("metadata");
    let t = md
        .topics
        .iter()
        .find(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| n.0.as_str() == "via-broker")
        })
        .expect("the broker-only node knows the topic it created");
    assert!(
        t.partitions.iter().any(|p| p.leader_id.0 == b as i32),
        "it leads some partitions"
    );

    // Clients bootstrapped only from the broker-only node produce and consume everything.
    let only = cluster.nodes[b].addr.clone();
    let producer =
        cluster.nodes[b].producer(&[("bootstrap.servers", only.as_str()), ("acks", "all")]);
    for d in produce_all(&producer, "via-broker", &records(200)) {
        d.expect("delivered");
    }
    let consumer = cluster.nodes[b].consumer(&[("bootstrap.servers", only.as_str())]);
    assert_eq!(consume_n(&consumer, "via-broker", 8, 200).len(), 200);

    // It follows a new active controller.
    cluster.nodes[controller as usize].kill9();
    let alive: Vec<usize> = (0..4).filter(|i| *i != controller as usize).collect();
    cluster.wait_settled(&alive);
    create_topic(&cluster, b, "after-failover", 1);
}

#[test]
fn a_restart_does_not_replay_a_deleted_topic_over_its_successor() {
    let _serial = serial();
    let mut cluster = Cluster::start(3, false, &[]);
    cluster.wait_settled(&[0, 1, 2]);
    // Both incarnations place partition p on node p, so their directories collide.
    let admin = cluster.nodes[0].admin();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let placed = NewTopic::new("reborn", 3, TopicReplication::Variable(&[&[0], &[1], &[2]]));
    for r in futures_executor::block_on(admin.create_topics([&placed], &opts)).expect("create") {
        r.expect("created");
    }
    for r in futures_executor::block_on(admin.delete_topics(&["reborn"], &opts)).expect("delete") {
        r.expect("deleted");
    }
    for r in futures_executor::block_on(admin.create_topics([&placed], &opts)).expect("create") {
        r.expect("created again");
    }
    let boot = cluster.bootstrap();
    let producer =
        cluster.nodes[0].producer(&[("bootstrap.servers", boot.as_str()), ("acks", "all")]);
    for d in produce_all(&producer, "reborn", &records(90)) {
        d.expect("delivered");
    }
    drop(producer);
    // Every node restarts and replays its metadata log from the start (no snapshot yet): the
    // first "reborn" must not be opened over the second one's data.
    for n in &mut cluster.nodes {
        n.kill9();
    }
    for n in &mut cluster.nodes {
        n.restart();
    }
    cluster.wait_settled(&[0, 1, 2]);
    assert_eq!(read_all(&cluster, "reborn", 3, 90), expected(90));
}

/// A voter reached at a wrong address refuses Raft, and says so; one whose controller port is
/// taken does not start. Node 0's `--controller-quorum-voters` swaps nodes 1 and 2: were
/// requests not addressed, node 2 would vote and take entries as node 1 and count twice.
#[test]
fn a_voter_at_a_wrong_address_refuses_raft_and_a_taken_port_stops_the_start() {
    let _serial = serial();
    let addr = || common::address_outside_ephemeral_range();
    let kafka: Vec<String> = (0..3).map(|_| addr()).collect();
    let ctl: Vec<String> = (0..3).map(|_| addr()).collect();
    let right = format!("0@{},1@{},2@{}", ctl[0], ctl[1], ctl[2]);
    let swapped = format!("0@{},1@{},2@{}", ctl[0], ctl[2], ctl[1]);
    let cluster = Cluster {
        nodes: (0..3)
            .map(|i| {
                let voters = if i == 0 { &swapped } else { &right };
                let id = i.to_string();
                let args = [
                    "--node-id",
                    id.as_str(),
                    "--controller-listen",
                    ctl[i].as_str(),
                    "--controller-quorum-voters",
                    voters.as_str(),
                    "--cores",
                    "1",
                ];
                Broker::start_at(&kafka[i], &args)
            })
            .collect(),
        voters: right.clone(),
        links: Default::default(),
    };
    // Nodes 1 and 2 form the quorum and serve; node 0, which cannot reach the controller
    // where it thinks it is, does not join as a broker.
    cluster.wait_settled(&[1, 2]);
    cluster.wait_for("node 1 or 2 to log node 0's misaddressed requests", || {
        cluster.nodes[1..].iter().any(|n| {
            n.log()
                .contains("check every node's --controller-quorum-voters")
        })
    });

    // A fourth voter configured on node 1's controller port exits with the reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--listen", &addr(), "--node-id", "1"])
        .args(["--controller-listen", ctl[1].as_str()])
        .args(["--controller-quorum-voters", right.as_str(), "--cores", "1"])
        .arg("--data-dir")
        .arg(tempfile::tempdir().expect("tempdir").path().join("d"))
        .output()
        .expect("run sluice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a taken port: {stderr}");
    assert!(stderr.contains(ctl[1].as_str()), "{stderr}");
}
