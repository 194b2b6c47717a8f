//! Consumer groups against the real broker with real clients (rdkafka), plus a raw-protocol
//! member for the one case a real client cannot play: a member that silently stops
//! heartbeating. Every wait is a poll loop with a deadline.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{
    ApiKey, GroupId, JoinGroupRequest, JoinGroupResponse, RequestHeader, ResponseHeader,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const SESSION_MS: &str = "6000";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

fn group_consumer(broker: &Broker, group: &str) -> BaseConsumer {
    broker.consumer(&[
        ("group.id", group),
        ("session.timeout.ms", SESSION_MS),
        ("heartbeat.interval.ms", "300"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
    ])
}

/// 100 records per partition, explicit partitions, values "p<partition>-<i>".
fn produce_per_partition(broker: &Broker, topic: &str, partitions: i32, per_partition: usize) {
    let producer = broker.producer(&[]);
    let records: Vec<Out> = (0..partitions)
        .flat_map(|p| {
            (0..per_partition).map(move |i| Out {
                partition: Some(p),
                value: Some(format!("p{p}-{i}").into_bytes()),
                ..Default::default()
            })
        })
        .collect();
    for r in produce_all(&producer, topic, &records) {
        r.expect("delivered");
    }
}

fn assigned(c: &BaseConsumer) -> Vec<i32> {
    c.assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer until `done` holds or WAIT passes; records consumed (partition,
/// offset) per consumer index.
fn poll_until(
    consumers: &[&BaseConsumer],
    seen: &mut Vec<BTreeSet<(i32, i64)>>,
    what: &str,
    mut done: impl FnMut(&[&BaseConsumer], &[BTreeSet<(i32, i64)>]) -> bool,
) {
    seen.resize(consumers.len(), BTreeSet::new());
    let deadline = Instant::now() + WAIT * 2;
    loop {
        for (i, c) in consumers.iter().enumerate() {
            if let Some(r) = c.poll(Duration::from_millis(20)) {
                let m = r.unwrap_or_else(|e| panic!("consume error: {e}"));
                seen[i].insert((m.partition(), m.offset()));
            }
        }
        if done(consumers, seen) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
    }
}

/// Every partition in 0..n assigned to exactly one of `consumers`.
fn exactly_once(consumers: &[&BaseConsumer], n: i32) -> bool {
    let mut all: Vec<i32> = consumers.iter().flat_map(|c| assigned(c)).collect();
    all.sort();
    all == (0..n).collect::<Vec<_>>()
}

#[test]
fn three_consumers_share_six_partitions_and_take_over_when_one_leaves() {
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("shared", 6, &[]);
    produce_per_partition(&broker, "shared", 6, 50);

    let consumers: Vec<BaseConsumer> = (0..3).map(|_| group_consumer(&broker, "g-share")).collect();
    for c in &consumers {
        c.subscribe(&["shared"]).expect("subscribe");
    }
    let refs: Vec<&BaseConsumer> = consumers.iter().collect();
    let mut seen = Vec::new();
    poll_until(
        &refs,
        &mut seen,
        "each of 6 partitions assigned once over 3 members",
        |cs, _| exactly_once(cs, 6) && cs.iter().all(|c| assigned(c).len() == 2),
    );

    // One member leaves (unsubscribe → LeaveGroup); the other two take over its partitions.
    let mut consumers = consumers;
    let leaving = consumers.pop().expect("three");
    leaving.unsubscribe();
    let deadline = Instant::now() + WAIT;
    while !assigned(&leaving).is_empty() && Instant::now() < deadline {
        let _ = leaving.poll(Duration::from_millis(20));
    }
    drop(leaving);
    let refs: Vec<&BaseConsumer> = consumers.iter().collect();
    let mut seen2 = Vec::new();
    poll_until(
        &refs,
        &mut seen2,
        "the two remaining members own all 6 partitions and read everything",
        |cs, seen| {
            let union: BTreeSet<(i32, i64)> = seen.iter().flatten().copied().collect();
            exactly_once(cs, 6) && union.len() == 300
        },
    );
}

#[test]
fn every_client_assignor_works_range_roundrobin_cooperative_sticky() {
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("assignors", 4, &[]);
    for strategy in ["range", "roundrobin", "cooperative-sticky"] {
        let group = format!("g-{strategy}");
        let make = || {
            broker.consumer(&[
                ("group.id", group.as_str()),
                ("session.timeout.ms", SESSION_MS),
                ("heartbeat.interval.ms", "300"),
                ("partition.assignment.strategy", strategy),
            ])
        };
        let (c1, c2) = (make(), make());
        c1.subscribe(&["assignors"]).expect("subscribe");
        let mut seen = Vec::new();
        poll_until(&[&c1], &mut seen, "one member owns all", |cs, _| {
            exactly_once(cs, 4)
        });
        c2.subscribe(&["assignors"]).expect("subscribe");
        poll_until(
            &[&c1, &c2],
            &mut seen,
            &format!("{strategy}: 2 + 2 partitions"),
            |cs, _| exactly_once(cs, 4) && cs.iter().all(|c| assigned(c).len() == 2),
        );
        let list = c1
            .fetch_group_list(Some(&group), Duration::from_secs(5))
            .expect("describe");
        let g = &list.groups()[0];
        assert!(
            g.state() != "Stable" || g.protocol() == strategy,
            "{} vs {strategy}",
            g.protocol()
        );
    }
    assert_no_broker_errors(&broker);
}

#[test]
fn a_static_member_restarting_within_its_session_keeps_its_partitions() {
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("static", 2, &[]);
    let make = |instance: &str| {
        broker.consumer(&[
            ("group.id", "g-static"),
            ("group.instance.id", instance),
            ("session.timeout.ms", SESSION_MS),
            ("heartbeat.interval.ms", "300"),
        ])
    };
    let a = make("a");
    let b = make("b");
    a.subscribe(&["static"]).expect("subscribe");
    b.subscribe(&["static"]).expect("subscribe");
    let mut seen = Vec::new();
    poll_until(&[&a, &b], &mut seen, "1 + 1 partitions", |cs, _| {
        exactly_once(cs, 2) && cs.iter().all(|c| assigned(c).len() == 1)
    });
    let b_partitions = assigned(&b);
    // A static member closing does not leave the group; its replacement takes its place.
    drop(b);
    let b2 = make("b");
    b2.subscribe(&["static"]).expect("subscribe");
    poll_until(
        &[&a, &b2],
        &mut seen,
        "the restarted static member owns its old partition",
        |cs, _| exactly_once(cs, 2) && assigned(cs[1]) == b_partitions,
    );
    assert_no_broker_errors(&broker);
}

#[test]
fn committed_offsets_survive_group_restart_sigterm_and_kill9() {
    // fdatasync before every ack: a sync commit returns only once its record is on disk.
    let mut broker = Broker::start(&["--cores", "2", "--flush", "always"]);
    broker.create_topic("commits", 2, &[]);
    produce_per_partition(&broker, "commits", 2, 50);

    // First incarnation of the group: read some, commit synchronously, leave.
    let c = group_consumer(&broker, "g-commit");
    c.subscribe(&["commits"]).expect("subscribe");
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    let mut count = 0;
    while count < 30 && Instant::now() < deadline {
        if let Some(r) = c.poll(Duration::from_millis(50)) {
            let m = r.expect("message");
            next.insert(m.partition(), m.offset() + 1);
            count += 1;
        }
    }
    assert_eq!(count, 30);
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &next {
        tpl.add_partition_offset("commits", *p, Offset::Offset(*o))
            .expect("tpl");
    }
    c.commit(&tpl, CommitMode::Sync).expect("sync commit");
    drop(c);

    // The group restarted resumes exactly after the committed offsets.
    let c = group_consumer(&broker, "g-commit");
    c.subscribe(&["commits"]).expect("subscribe");
    let mut first: HashMap<i32, i64> = HashMap::new();
    let mut got = 0;
    let deadline = Instant::now() + WAIT;
    while got < 100 - 30 && Instant::now() < deadline {
        if let Some(r) = c.poll(Duration::from_millis(50)) {
            let m = r.expect("message");
            first.entry(m.partition()).or_insert(m.offset());
            got += 1;
        }
    }
    assert_eq!(got, 70, "exactly the uncommitted records are read again");
    for (p, o) in &next {
        if *o < 50 {
            assert_eq!(
                first.get(p),
                Some(o),
                "partition {p} resumes at its committed offset"
            );
        }
    }
    let mut all = TopicPartitionList::new();
    all.add_partition_offset("commits", 0, Offset::Offset(50))
        .expect("tpl");
    all.add_partition_offset("commits", 1, Offset::Offset(50))
        .expect("tpl");
    c.commit(&all, CommitMode::Sync).expect("commit all");
    drop(c);

    let expect = |broker: &Broker, want: &[(i32, i64)]| {
        let probe = group_consumer(broker, "g-commit");
        let mut tpl = TopicPartitionList::new();
        for (p, _) in want {
            tpl.add_partition("commits", *p);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let got: Vec<(i32, i64)> =
                match probe.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
                    Ok(t) => t
                        .elements()
                        .iter()
                        .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(-1)))
                        .collect(),
                    Err(_) => Vec::new(),
                };
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "committed offsets {got:?}, want {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    expect(&broker, &[(0, 50), (1, 50)]);

    broker.stop();
    broker.restart();
    expect(&broker, &[(0, 50), (1, 50)]);

    // Commit other offsets as a simple consumer (no subscription), then crash.
    let simple = group_consumer(&broker, "g-commit");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("commits", 0, Offset::Offset(40))
        .expect("tpl");
    tpl.add_partition_offset("commits", 1, Offset::Offset(45))
        .expect("tpl");
    simple
        .commit(&tpl, CommitMode::Sync)
        .expect("simple sync commit");
    drop(simple);
    broker.kill9();
    broker.restart();
    expect(&broker, &[(0, 40), (1, 45)]);
    assert_no_broker_errors(&broker);
}

// ---------------------------------------------------------------------------------------------
// A raw-protocol member (joins, syncs, then goes silent)
// ---------------------------------------------------------------------------------------------

fn raw_call<Req: Encodable, Resp: Decodable>(
    s: &mut TcpStream,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Resp {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("raw-member")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    req.encode(&mut buf, version).expect("body");
    s.write_all(&(buf.len() as i32).to_be_bytes())
        .expect("write");
    s.write_all(&buf).expect("write");
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("read size");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).expect("read body");
    let mut b = Bytes::from(body);
    ResponseHeader::decode(&mut b, key.response_header_version(version)).expect("response header");
    Resp::decode(&mut b, version).expect("response body")
}

/// Joins `group` (subscribed to `topic`), syncs, and returns its member id. Then silent.
fn raw_member_joins(addr: &str, group: &str, topic: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT * 2)).expect("timeout");
    // ConsumerProtocolSubscription v0: version, topics, user data.
    let mut sub = Vec::new();
    sub.extend_from_slice(&0i16.to_be_bytes());
    sub.extend_from_slice(&1i32.to_be_bytes());
    sub.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    sub.extend_from_slice(topic.as_bytes());
    sub.extend_from_slice(&(-1i32).to_be_bytes());
    let mut join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(6000)
        .with_member_id(StrBytes::from_static_str(""))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from(sub))]);
    let r: JoinGroupResponse = raw_call(&mut s, ApiKey::JoinGroup, 5, &join);
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED first");
    join.member_id = r.member_id.clone();
    let r: JoinGroupResponse = raw_call(&mut s, ApiKey::JoinGroup, 5, &join);
    assert_eq!(r.error_code, 0, "join");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id(r.generation_id)
        .with_member_id(r.member_id.clone());
    let sr: SyncGroupResponse = raw_call(&mut s, ApiKey::SyncGroup, 3, &sync);
    assert_eq!(sr.error_code, 0, "sync");
    std::mem::forget(s); // keep the connection open, but never heartbeat again
    r.member_id.as_str().to_owned()
}

#[test]
fn a_member_that_stops_heartbeating_is_removed_after_its_session_timeout() {
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("silent", 2, &[]);
    let a = group_consumer(&broker, "g-silent");
    a.subscribe(&["silent"]).expect("subscribe");
    let mut seen = Vec::new();
    poll_until(&[&a], &mut seen, "A owns both partitions", |cs, _| {
        exactly_once(cs, 2)
    });

    let addr = broker.addr.clone();
    let raw = std::thread::spawn(move || raw_member_joins(&addr, "g-silent", "silent"));
    poll_until(
        &[&a],
        &mut seen,
        "the raw member joined and took a partition",
        |cs, _| raw.is_finished() && assigned(cs[0]).len() == 1,
    );
    let raw_id = raw.join().expect("raw member");
    let members = |c: &BaseConsumer| -> Vec<String> {
        c.fetch_group_list(Some("g-silent"), Duration::from_secs(5))
            .map(|l| {
                l.groups()
                    .iter()
                    .flat_map(|g| g.members().iter().map(|m| m.id().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(members(&a).contains(&raw_id));
    // No heartbeat from the raw member: after session.timeout.ms it is gone and A owns all.
    poll_until(
        &[&a],
        &mut seen,
        "the silent member expired and A owns both partitions",
        |cs, _| exactly_once(cs, 2) && !members(cs[0]).contains(&raw_id),
    );
}

#[test]
fn describe_and_list_groups_show_state_protocol_members_and_assignments() {
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("desc", 4, &[]);
    let c1 = group_consumer(&broker, "g-desc");
    let c2 = group_consumer(&broker, "g-desc");
    c1.subscribe(&["desc"]).expect("subscribe");
    c2.subscribe(&["desc"]).expect("subscribe");
    let mut seen = Vec::new();
    poll_until(
        &[&c1, &c2],
        &mut seen,
        "4 partitions over 2 members",
        |cs, _| exactly_once(cs, 4) && cs.iter().all(|c| assigned(c).len() == 2),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let _ = c1.poll(Duration::from_millis(10));
        let _ = c2.poll(Duration::from_millis(10));
        let list = c1
            .fetch_group_list(Some("g-desc"), Duration::from_secs(5))
            .expect("describe");
        let g = &list.groups()[0];
        if g.state() == "Stable" && g.members().len() == 2 {
            assert_eq!(g.name(), "g-desc");
            assert_eq!(g.protocol_type(), "consumer");
            assert!(
                ["range", "roundrobin"].contains(&g.protocol()),
                "{}",
                g.protocol()
            );
            for m in g.members() {
                assert!(
                    m.assignment().is_some_and(|a| !a.is_empty()),
                    "member {} has an assignment",
                    m.id()
                );
                assert!(m.metadata().is_some_and(|a| !a.is_empty()));
                assert!(!m.client_id().is_empty());
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "group never described as Stable with 2 members"
        );
    }
    let all = c1
        .fetch_group_list(None, Duration::from_secs(5))
        .expect("list");
    let names: Vec<&str> = all.groups().iter().map(|g| g.name()).collect();
    assert!(names.contains(&"g-desc"), "{names:?}");
    assert_no_broker_errors(&broker);
}

#[test]
fn deleting_a_group_removes_its_offsets() {
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("del", 1, &[]);
    let c = group_consumer(&broker, "g-del");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("del", 0, Offset::Offset(7))
        .expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    let committed = |c: &BaseConsumer| {
        let mut q = TopicPartitionList::new();
        q.add_partition("del", 0);
        c.committed_offsets(q, Duration::from_secs(5))
            .expect("committed")
            .elements()[0]
            .offset()
    };
    assert_eq!(committed(&c), Offset::Offset(7));
    let admin = broker.admin();
    let res =
        block_on(admin.delete_groups(&["g-del"], &AdminOptions::new())).expect("delete_groups");
    assert!(res[0].is_ok(), "{res:?}");
    assert_eq!(committed(&c), Offset::Invalid);
    let again =
        block_on(admin.delete_groups(&["g-del"], &AdminOptions::new())).expect("delete_groups");
    assert!(again[0].is_err(), "a deleted group is gone");
    assert_no_broker_errors(&broker);
}

#[test]
fn many_superseded_offset_records_replay_to_the_last_commit() {
    // The log cleaner compacts __consumer_offsets (tests/compaction.rs); here its segments
    // never roll, so every load replays every record.
    let mut broker = Broker::start(&["--cores", "2", "--offsets-topic-num-partitions", "1"]);
    broker.create_topic("cmp", 1, &[]);
    let commit_range = |broker: &Broker, range: std::ops::RangeInclusive<i64>| {
        let c = group_consumer(broker, "g-cmp");
        for o in range {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("cmp", 0, Offset::Offset(o))
                .expect("tpl");
            c.commit(&tpl, CommitMode::Sync).expect("commit");
        }
    };
    let committed = |broker: &Broker| -> Offset {
        let c = group_consumer(broker, "g-cmp");
        let deadline = Instant::now() + WAIT;
        loop {
            let mut q = TopicPartitionList::new();
            q.add_partition("cmp", 0);
            if let Ok(t) = c.committed_offsets(q, Duration::from_secs(5)) {
                return t.elements()[0].offset();
            }
            assert!(
                Instant::now() < deadline,
                "committed offsets never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    commit_range(&broker, 1..=300);
    broker.stop();
    broker.restart();
    assert_eq!(committed(&broker), Offset::Offset(300));
    commit_range(&broker, 301..=1400);
    broker.kill9();
    broker.restart();
    assert_eq!(committed(&broker), Offset::Offset(1400));
    assert_no_broker_errors(&broker);
}

/// The broker log holds no encoding failures or panics.
fn assert_no_broker_errors(broker: &Broker) {
    let log = broker.log();
    for bad in ["encoding failed", "panicked", "no handler for"] {
        assert!(!log.contains(bad), "broker log contains {bad:?}:\n{log}");
    }
}

/// Every advertised version of every group API encodes, decodes and answers sensibly
/// (a response that fails to encode would close the connection and fail `raw_call`).
#[test]
fn every_advertised_group_api_version_round_trips() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::*;

    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("raw", 1, &[]);
    let mut s = TcpStream::connect(&broker.addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let sb = |v: &str| StrBytes::from_string(v.to_owned());
    let range = |key: ApiKey| {
        let (min, max) = sluice_net::supported_range(key).expect("advertised");
        min..=max
    };

    for v in range(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![sb("g"), sb("h")])
        } else {
            FindCoordinatorRequest::default().with_key(sb("g"))
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let r: FindCoordinatorResponse = raw_call(&mut s, ApiKey::FindCoordinator, v, &req);
            let (error, port) = if v >= 4 {
                assert_eq!(r.coordinators.len(), 2);
                (r.coordinators[0].error_code, r.coordinators[0].port)
            } else {
                (r.error_code, r.port)
            };
            if error == 0 {
                assert!(port > 0, "v{v}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "FindCoordinator v{v}: error {error}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let mut groups = Vec::new();
    for v in range(ApiKey::JoinGroup) {
        let group = format!("g-raw-v{v}");
        let mut join = JoinGroupRequest::default()
            .with_group_id(GroupId(sb(&group)))
            .with_session_timeout_ms(6000)
            .with_rebalance_timeout_ms(6000)
            .with_protocol_type(sb("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(sb("range"))
                .with_metadata(Bytes::from_static(b"m"))]);
        let mut r: JoinGroupResponse = raw_call(&mut s, ApiKey::JoinGroup, v, &join);
        if v >= 4 {
            assert_eq!(r.error_code, 79, "JoinGroup v{v}: MEMBER_ID_REQUIRED");
            join.member_id = r.member_id.clone();
            r = raw_call(&mut s, ApiKey::JoinGroup, v, &join);
        }
        assert_eq!((r.error_code, r.generation_id), (0, 1), "JoinGroup v{v}");
        assert_eq!(r.leader, r.member_id);
        assert_eq!(r.members.len(), 1);
        groups.push((group, r.member_id.clone(), v));
    }

    for (i, (group, member, _)) in groups.iter().enumerate() {
        let gid = GroupId(sb(group));
        let sv = *range(ApiKey::SyncGroup).end().min(&(i as i16));
        let sync = SyncGroupRequest::default()
            .with_group_id(gid.clone())
            .with_generation_id(1)
            .with_member_id(member.clone())
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(member.clone())
                    .with_assignment(Bytes::from_static(b"a")),
            ]);
        let r: SyncGroupResponse = raw_call(&mut s, ApiKey::SyncGroup, sv, &sync);
        assert_eq!(
            (r.error_code, r.assignment.as_ref()),
            (0, &b"a"[..]),
            "SyncGroup v{sv}"
        );

        let hv = *range(ApiKey::Heartbeat).end().min(&(i as i16));
        let hb = HeartbeatRequest::default()
            .with_group_id(gid.clone())
            .with_generation_id(1)
            .with_member_id(member.clone());
        let r: HeartbeatResponse = raw_call(&mut s, ApiKey::Heartbeat, hv, &hb);
        assert_eq!(r.error_code, 0, "Heartbeat v{hv}");
        let r: HeartbeatResponse = raw_call(
            &mut s,
            ApiKey::Heartbeat,
            hv,
            &hb.clone().with_generation_id(7),
        );
        assert_eq!(r.error_code, 22, "Heartbeat v{hv}: ILLEGAL_GENERATION");

        let cv = *range(ApiKey::OffsetCommit).start().max(&(i as i16));
        let cv = cv.min(*range(ApiKey::OffsetCommit).end());
        let commit = OffsetCommitRequest::default()
            .with_group_id(gid.clone())
            .with_generation_id_or_member_epoch(1)
            .with_member_id(member.clone())
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(sb("raw")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(40 + i as i64)
                    .with_committed_metadata(Some(sb("meta")))])]);
        let r: OffsetCommitResponse = raw_call(&mut s, ApiKey::OffsetCommit, cv, &commit);
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{cv}"
        );
    }

    for v in range(ApiKey::OffsetFetch) {
        let (group, _, _) = &groups[v as usize];
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(sb(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(sb("raw")))
                    .with_partition_indexes(vec![0])]))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(sb(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(sb("raw")))
                    .with_partition_indexes(vec![0])]))
        };
        let r: OffsetFetchResponse = raw_call(&mut s, ApiKey::OffsetFetch, v, &req);
        let (offset, metadata) = if v >= 8 {
            let p = &r.groups[0].topics[0].partitions[0];
            (p.committed_offset, p.metadata.clone())
        } else {
            let p = &r.topics[0].partitions[0];
            (p.committed_offset, p.metadata.clone())
        };
        assert_eq!(offset, 40 + v as i64, "OffsetFetch v{v}");
        assert_eq!(metadata.as_ref().map(|m| m.as_str()), Some("meta"));
    }

    for v in range(ApiKey::DescribeGroups) {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(sb(&groups[0].0)), GroupId(sb("nope"))]);
        let r: DescribeGroupsResponse = raw_call(&mut s, ApiKey::DescribeGroups, v, &req);
        assert_eq!(
            r.groups[0].group_state.as_str(),
            "Stable",
            "DescribeGroups v{v}"
        );
        assert_eq!(r.groups[0].members.len(), 1);
        assert_eq!(r.groups[0].members[0].member_assignment.as_ref(), b"a");
        assert_eq!(r.groups[1].group_state.as_str(), "Dead");
        assert_eq!(
            r.groups[1].error_code,
            if v >= 6 { 69 } else { 0 },
            "GROUP_ID_NOT_FOUND from v6"
        );
    }

    for v in range(ApiKey::ListGroups) {
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req = req.with_states_filter(vec![sb("stable")]);
        }
        let r: ListGroupsResponse = raw_call(&mut s, ApiKey::ListGroups, v, &req);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.groups.len(), groups.len(), "ListGroups v{v}");
    }

    for (i, (group, member, _)) in groups.iter().enumerate() {
        let lv = *range(ApiKey::LeaveGroup).end().min(&(i as i16));
        let mut req = LeaveGroupRequest::default().with_group_id(GroupId(sb(group)));
        if lv >= 3 {
            req = req.with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(member.clone())
            ]);
        } else {
            req = req.with_member_id(member.clone());
        }
        let r: LeaveGroupResponse = raw_call(&mut s, ApiKey::LeaveGroup, lv, &req);
        assert_eq!(r.error_code, 0, "LeaveGroup v{lv}");
        if lv >= 3 {
            assert_eq!(r.members[0].error_code, 0);
        }
    }

    let od = OffsetDeleteRequest::default()
        .with_group_id(GroupId(sb(&groups[0].0)))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(sb("raw")))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let r: OffsetDeleteResponse = raw_call(&mut s, ApiKey::OffsetDelete, 0, &od);
    assert_eq!(
        (r.error_code, r.topics[0].partitions[0].error_code),
        (0, 0),
        "OffsetDelete"
    );

    for v in range(ApiKey::DeleteGroups) {
        let req = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(sb(&groups[v as usize + 1].0))]);
        let r: DeleteGroupsResponse = raw_call(&mut s, ApiKey::DeleteGroups, v, &req);
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{v}");
    }
    assert_no_broker_errors(&broker);
}

/// Two commits of one group/partition pipelined on one connection land in one coalesced
/// `__consumer_offsets` write; the later one must win in memory and after a restart
/// (issue 20, item 2: they used to apply in wake-up order).
#[test]
fn pipelined_commits_apply_in_commit_order() {
    use common::raw::{offset_commit, Raw};
    use kafka_protocol::messages::OffsetCommitResponse;

    const ROUNDS: i64 = 100;
    const PIPELINED: i64 = 8;
    let mut broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("order", 1, &[]);
    let mut raw = Raw::connect(&broker.addr);
    assert_eq!(raw.committed_offset("g-order", "order"), -1);
    let mut last = -1;
    for round in 0..ROUNDS {
        let offsets: Vec<i64> = (1..=PIPELINED).map(|i| round * 100 + i).collect();
        for &offset in &offsets {
            raw.send(
                ApiKey::OffsetCommit,
                8,
                &offset_commit("g-order", "order", offset),
            );
        }
        for _ in &offsets {
            let (_, r): (i32, OffsetCommitResponse) = raw.recv_next(ApiKey::OffsetCommit, 8);
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "round {round}");
        }
        last = offsets[offsets.len() - 1];
        assert_eq!(
            raw.committed_offset("g-order", "order"),
            last,
            "round {round}: an older commit won"
        );
    }
    broker.stop();
    broker.restart();
    let mut raw = Raw::connect(&broker.addr);
    assert_eq!(
        raw.committed_offset("g-order", "order"),
        last,
        "after restart"
    );
}
