//! Upgrades: a data directory written by an earlier release opens with everything in it.
//!
//! `tests/fixtures/datadir-e4e1198.tar.gz` was written by the release at commit e4e1198 (the
//! last with the single-image `metadata.snapshot`), by hand:
//! ```text
//! sluice --listen 127.0.0.1:39092 --data-dir data &
//! sluice topic create orders -p 3 -c retention.ms=86400000 -c cleanup.policy=delete
//! sluice topic create events -p 1; sluice topic create gone -p 2; sluice topic delete gone
//! seq 30 | sed 's/^/order-/' | sluice produce orders        # all to one partition
//! sluice produce events e1 e2 e3
//! printf 'k1:v1\nk2:v2\n' | kcat -P -t events -K: -X enable.idempotence=true
//! (key1:val1 … key20:val20) | kcat -P -t orders -K:
//! sluice group reset-offsets --topic orders --to-offset 5 --execute app1
//! sluice group reset-offsets --topic events --to-latest --execute app1
//! sluice topic alter-config events --set max.message.bytes=500000
//! kill %1   # then the space reserve and the lock file were left out of the archive
//! ```
//! `datadir-e4e1198.records` lists every record as `topic partition offset key value`, as
//! kcat printed it from that broker.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::raw::Raw;
use common::*;
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/datadir-e4e1198"
);

/// A broker on a copy of the fixture's data directory.
fn broker_on_fixture() -> Broker {
    let mut b = Broker::start(&[]);
    b.stop();
    std::fs::remove_dir_all(&b.data_dir).expect("remove fresh data dir");
    let parent = b.data_dir.parent().expect("parent").to_owned();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(format!("{FIXTURE}.tar.gz"))
        .arg("-C")
        .arg(&parent)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar failed");
    b.restart();
    b
}

fn expected_records() -> BTreeMap<String, Vec<(i32, i64, String, String)>> {
    let text = std::fs::read_to_string(format!("{FIXTURE}.records")).expect("records file");
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.splitn(5, ' ').collect();
        out.entry(f[0].to_owned()).or_default().push((
            f[1].parse().expect("partition"),
            f[2].parse().expect("offset"),
            f[3].to_owned(),
            f[4].to_owned(),
        ));
    }
    out
}

fn check_contents(b: &Broker) {
    let consumer = b.consumer(&[]);
    let md = consumer.fetch_metadata(None, WAIT).expect("metadata");
    let mut topics: BTreeMap<&str, usize> = BTreeMap::new();
    for t in md.topics() {
        topics.insert(t.name(), t.partitions().len());
        for p in t.partitions() {
            assert_eq!((p.leader(), p.replicas(), p.isr()), (0, &[0][..], &[0][..]));
        }
    }
    assert_eq!(topics.get("orders"), Some(&3));
    assert_eq!(topics.get("events"), Some(&1));
    assert_eq!(topics.get("gone"), None, "a deleted topic stays deleted");

    for (topic, want) in expected_records() {
        let parts = if topic == "orders" { 3 } else { 1 };
        let consumer = b.consumer(&[]);
        let mut got: Vec<(i32, i64, String, String)> =
            consume_n(&consumer, &topic, parts, want.len())
                .into_iter()
                .map(|r| {
                    let s = |v: Option<Vec<u8>>| {
                        String::from_utf8(v.unwrap_or_default()).expect("utf8")
                    };
                    (r.partition, r.offset, s(r.key), s(r.value))
                })
                .collect();
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "records of {topic}");
    }

    let admin = b.admin();
    let describe = futures_executor::block_on(admin.describe_configs(
        [
            &ResourceSpecifier::Topic("orders"),
            &ResourceSpecifier::Topic("events"),
        ],
        &AdminOptions::new(),
    ))
    .expect("describe configs");
    let value = |i: usize, key: &str| {
        let r = describe[i].as_ref().expect("resource");
        r.get(key).and_then(|e| e.value.clone())
    };
    assert_eq!(value(0, "retention.ms").as_deref(), Some("86400000"));
    assert_eq!(value(0, "cleanup.policy").as_deref(), Some("delete"));
    assert_eq!(value(1, "max.message.bytes").as_deref(), Some("500000"));

    let group = b.consumer(&[("group.id", "app1")]);
    let mut tpl = TopicPartitionList::new();
    for (t, p) in [("orders", 0), ("orders", 1), ("orders", 2), ("events", 0)] {
        tpl.add_partition(t, p);
    }
    let committed = group.committed_offsets(tpl, WAIT).expect("committed");
    for e in committed.elements() {
        assert_eq!(
            e.offset(),
            rdkafka::Offset::Offset(5),
            "committed offset of {}-{}",
            e.topic(),
            e.partition()
        );
    }
}

/// InitProducerId (v4, no transactional id): the producer id.
fn new_producer_id(addr: &str) -> i64 {
    use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = Raw::connect(addr).call(ApiKey::InitProducerId, 4, &req);
    assert_eq!(r.error_code, 0);
    r.producer_id.0
}

#[test]
fn a_data_dir_of_release_e4e1198_opens_with_its_topics_records_offsets_and_configs() {
    let mut b = broker_on_fixture();
    check_contents(&b);
    let meta = b.data_dir.join("__cluster_metadata");
    assert!(meta.join("metadata.snapshot.migrated").exists());
    assert!(!meta.join("metadata.snapshot").exists());
    // The old release had handed out producer id 0 from a block ending at 1000.
    assert!(
        new_producer_id(&b.addr) >= 1000,
        "producer ids never repeat"
    );

    // Changes after the migration go to the metadata log and survive a restart.
    b.create_topic("after", 2, &[("retention.ms", "1000")]);
    b.stop();
    b.restart();
    check_contents(&b);
    let md = b
        .consumer(&[])
        .fetch_metadata(Some("after"), WAIT)
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 2);
    assert!(new_producer_id(&b.addr) >= 1001);
}
