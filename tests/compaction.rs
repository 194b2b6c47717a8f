//! Log compaction through a real broker and librdkafka (the `rdkafka` crate): a compacted
//! topic keeps the latest value of every key at its original offset, tombstones go after
//! delete.retention.ms, keyless records are refused, and kill -9 during cleaning loses
//! nothing.
//!
//! Scale: `SLUICE_COMPACTION_KEYS` (default 10,000) × `SLUICE_COMPACTION_UPDATES` (default 10;
//! the 100 with `scripts/compaction.sh`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A broker whose cleaner looks for work every 100 ms (and rolls by segment.ms are checked
/// every 200 ms), on a port a restart gets back.
fn broker(extra: &[&str]) -> Broker {
    let mut args = vec![
        "--log-cleaner-backoff-ms",
        "100",
        "--log-retention-check-interval-ms",
        "200",
    ];
    args.extend_from_slice(extra);
    Broker::start_at(&address_outside_ephemeral_range(), &args)
}

fn compacted_topic(b: &Broker, name: &str, partitions: i32) {
    b.create_topic(
        name,
        partitions,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "65536"),
            // Segments roll by age too: the cleaner only cleans sealed segments.
            ("segment.ms", "500"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "2000"),
        ],
    );
}

fn out(key: &str, value: Option<String>) -> Out {
    Out {
        key: Some(key.as_bytes().to_vec()),
        value: value.map(String::into_bytes),
        ..Out::default()
    }
}

/// Every record of `topic` from the beginning up to its high watermarks.
fn read_everything(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Vec<Rec> {
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, WAIT)
            .expect("watermarks");
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while next.iter().any(|(p, o)| *o < ends[p]) {
        assert!(
            Instant::now() < deadline,
            "reading back timed out at {next:?} of {ends:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let r = own(&m);
                next.insert(r.partition, r.offset + 1);
                out.push(r);
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

/// Waits until the broker's metrics say every partition of `topic` was cleaned and its dirty
/// ratio is below `max_ratio`.
fn wait_cleaned(b: &Broker, topic: &str, partitions: i32, max_ratio: f64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, text) = http_get(&b.metrics_addr, "/metrics");
        let gauge = |name: &str, p: i32| -> Option<f64> {
            let prefix = format!("{name}{{topic=\"{topic}\",partition=\"{p}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.parse().ok())
        };
        let done = (0..partitions).all(|p| {
            gauge("sluice_partition_last_clean_timestamp_seconds", p).is_some_and(|t| t > 0.0)
                && gauge("sluice_partition_dirty_ratio", p).is_some_and(|r| r <= max_ratio)
        });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} was not cleaned:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks what was read against what was produced: offsets strictly increase per partition,
/// each record is the one produced at that offset, every live key's latest value is there.
/// Returns the records read per key.
fn check(read: &[Rec], produced: &BTreeMap<(i32, i64), Out>) -> BTreeMap<Vec<u8>, Vec<Rec>> {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut by_key: BTreeMap<Vec<u8>, Vec<Rec>> = BTreeMap::new();
    for r in read {
        if let Some(prev) = last.insert(r.partition, r.offset) {
            assert!(r.offset > prev, "offsets go back: {prev} then {}", r.offset);
        }
        let p = produced
            .get(&(r.partition, r.offset))
            .unwrap_or_else(|| panic!("record at {}/{} was never produced", r.partition, r.offset));
        assert_eq!(
            (&p.key, &p.value),
            (&r.key, &r.value),
            "content at {}",
            r.offset
        );
        by_key
            .entry(r.key.clone().unwrap())
            .or_default()
            .push(r.clone());
    }
    // The latest produced value of each key (by partition order: one key, one partition).
    let mut latest: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
    for ((_, offset), o) in produced {
        let k = o.key.clone().unwrap();
        if latest.get(&k).is_none_or(|(at, _)| *at < *offset) {
            latest.insert(k, (*offset, o.value.clone()));
        }
    }
    for (k, (_, v)) in &latest {
        if v.is_some() {
            let got = by_key.get(k).and_then(|rs| rs.last()).map(|r| &r.value);
            assert_eq!(
                got,
                Some(v),
                "latest value of {:?}",
                String::from_utf8_lossy(k)
            );
        }
    }
    by_key
}

fn produce_checked(
    producer: &TestProducer,
    topic: &str,
    records: &[Out],
    produced: &mut BTreeMap<(i32, i64), Out>,
) {
    for (r, d) in records.iter().zip(produce_all(producer, topic, records)) {
        let (p, o) = d.expect("delivered");
        produced.insert((p, o), r.clone());
    }
}

#[test]
fn a_compacted_topic_keeps_the_latest_value_of_each_key_and_drops_tombstones_later() {
    let keys = env_usize("SLUICE_COMPACTION_KEYS", 10_000);
    let updates = env_usize("SLUICE_COMPACTION_UPDATES", 10);
    let b = broker(&[]);
    let topic = "compacted";
    compacted_topic(&b, topic, 2);
    // zstd: the cleaner decompresses, filters and recompresses with the producer's codec.
    let producer = b.producer(&[("compression.type", "zstd"), ("linger.ms", "20")]);
    let mut produced = BTreeMap::new();
    for u in 0..updates {
        let round: Vec<Out> = (0..keys)
            .map(|k| out(&format!("key-{k}"), Some(format!("value-{k}-{u}"))))
            .collect();
        produce_checked(&producer, topic, &round, &mut produced);
    }
    let tombstones: Vec<Out> = (0..keys / 10)
        .map(|k| out(&format!("key-{k}"), None))
        .collect();
    produce_checked(&producer, topic, &tombstones, &mut produced);
    wait_cleaned(&b, topic, 2, 0.1);

    let consumer = b.consumer(&[]);
    let read = read_everything(&consumer, topic, 2);
    let by_key = check(&read, &produced);
    assert!(
        read.len() < produced.len() / 2,
        "read {} of {} produced records",
        read.len(),
        produced.len()
    );
    let dead = by_key
        .values()
        .filter(|rs| rs.last().unwrap().value.is_none())
        .count();
    assert!(dead > 0, "tombstones are kept for delete.retention.ms");

    // `sluice topic describe --metrics` shows each partition's dirty ratio.
    let described = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "describe", topic, "--bootstrap", &b.addr])
        .args(["--metrics", &b.metrics_addr, "--timeout-ms", "10000"])
        .output()
        .expect("sluice topic describe");
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(
        described.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&described.stderr)
    );
    assert!(text.contains("DIRTY-RATIO"), "{text}");
    // Each partition's ratio as the broker computes it now (the cleaner keeps working: new
    // segments roll every 500 ms, so any value from 0 to 1 is possible).
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(['0', '1']))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in rows {
        let ratio: f64 = row
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .expect("a ratio");
        assert!((0.0..=1.0).contains(&ratio), "{row}");
    }

    // Past delete.retention.ms, more updates make the log dirty; the next clean finds the
    // tombstones in the clean section and drops them.
    std::thread::sleep(Duration::from_millis(2_500));
    let more: Vec<Out> = (keys / 10..keys)
        .map(|k| out(&format!("key-{k}"), Some(format!("value-{k}-late"))))
        .collect();
    produce_checked(&producer, topic, &more, &mut produced);
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 0.. {
        // A live application keeps writing: each round dirties the log again.
        let again: Vec<Out> = (keys / 10..keys / 10 + 100)
            .map(|k| {
                out(
                    &format!("key-{k}"),
                    Some(format!("value-{k}-again-{round}")),
                )
            })
            .collect();
        produce_checked(&producer, topic, &again, &mut produced);
        let read = read_everything(&b.consumer(&[]), topic, 2);
        let by_key = check(&read, &produced);
        let tombstones = read.iter().filter(|r| r.value.is_none()).count();
        // Deleted keys are gone entirely (their tombstones were the last record).
        if tombstones == 0 {
            assert_eq!(by_key.len(), keys - keys / 10);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{tombstones} tombstones left:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A record without a key is refused (Kafka's INVALID_RECORD).
    let keyless = Out {
        value: Some(b"no key".to_vec()),
        ..Out::default()
    };
    let d = produce_all(&producer, topic, &[keyless]);
    let err = d[0].clone().expect_err("a keyless record is refused");
    assert!(err.to_string().contains("InvalidRecord"), "{err}");
}

#[test]
fn kill_9_during_cleaning_loses_nothing() {
    let rounds = env_usize("SLUICE_COMPACTION_KILLS", 8);
    let keys = 3_000;
    // A slow cleaner (1 MB/s): kills land in the middle of cleans.
    let mut b = broker(&["--log-cleaner-io-max-bytes-per-second", "1000000"]);
    let topic = "compacted-kills";
    compacted_topic(&b, topic, 1);
    let mut produced = BTreeMap::new();
    let mut rng = sluice_base::Rng::new(
        std::env::var("SLUICE_COMPACTION_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(11),
    );
    let mut cleans_seen = 0;
    for round in 0..rounds {
        let producer = b.producer(&[("linger.ms", "20")]);
        let records: Vec<Out> = (0..keys)
            .map(|k| out(&format!("key-{k}"), Some(format!("value-{k}-{round}"))))
            .collect();
        produce_checked(&producer, topic, &records, &mut produced);
        drop(producer);
        std::thread::sleep(Duration::from_millis(100 + rng.next_u64() % 1_500));
        cleans_seen += b.log().matches("cleaned").count();
        b.kill9();
        // A new port each time: under load, a listener killed with io_uring requests in
        // flight was seen to stay bound for more than 30 s (the ring's teardown holds it).
        b.restart_at(&address_outside_ephemeral_range());
        let read = read_everything(&b.consumer(&[]), topic, 1);
        check(&read, &produced);
    }
    // A last kill, and a restart without the cleaner: recovery alone must leave no
    // `.cleaned` or `.swap` file (a running cleaner would write new ones).
    b.kill9();
    b.args
        .extend(["--log-cleaner-enable".to_owned(), "false".to_owned()]);
    b.restart_at(&address_outside_ephemeral_range());
    check(&read_everything(&b.consumer(&[]), topic, 1), &produced);
    let logs: Vec<String> = std::fs::read_dir(b.data_dir.join(format!("{topic}-0")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !logs
            .iter()
            .any(|n| n.ends_with(".swap") || n.ends_with(".cleaned")),
        "leftovers: {logs:?}"
    );
    assert!(
        cleans_seen > 0,
        "the cleaner never finished a clean between kills"
    );
}

#[test]
fn group_offsets_survive_cleaning_and_restart() {
    use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::consumer::CommitMode;
    use rdkafka::Offset;
    let mut b = broker(&["--offsets-topic-num-partitions", "2"]);
    b.create_topic("commits", 4, &[]);
    // Small, quickly rolled segments for __consumer_offsets so the cleaner gets to it
    // (AlterConfigs replaces every override: the internal topic's own go in again).
    let admin = b.admin();
    let alter = AlterConfig::new(ResourceSpecifier::Topic("__consumer_offsets"))
        .set("cleanup.policy", "compact")
        .set("retention.ms", "-1")
        .set("segment.bytes", "65536")
        .set("segment.ms", "500")
        .set("min.cleanable.dirty.ratio", "0.01");
    futures_executor::block_on(admin.alter_configs([&alter], &AdminOptions::new())).expect("alter")
        [0]
    .as_ref()
    .expect("altered");
    let groups = 20;
    let commits = 150;
    let consumers: Vec<BaseConsumer> = (0..groups)
        .map(|g| b.consumer(&[("group.id", &format!("g-{g}"))]))
        .collect();
    let mut last = BTreeMap::new();
    for i in 0..commits {
        for (g, c) in consumers.iter().enumerate() {
            let mut tpl = TopicPartitionList::new();
            for p in 0..4 {
                let offset = (i * 10 + g + p) as i64;
                tpl.add_partition_offset("commits", p as i32, Offset::Offset(offset))
                    .unwrap();
                last.insert((g, p), offset);
            }
            c.commit(&tpl, CommitMode::Sync).expect("commit");
        }
    }
    drop(consumers);
    wait_cleaned(&b, "__consumer_offsets", 2, 0.5);
    b.stop();
    b.restart();
    for g in 0..groups {
        let c = b.consumer(&[("group.id", &format!("g-{g}"))]);
        let mut q = TopicPartitionList::new();
        for p in 0..4 {
            q.add_partition("commits", p);
        }
        let deadline = Instant::now() + WAIT;
        let got = loop {
            match c.committed_offsets(q.clone(), Duration::from_secs(5)) {
                Ok(t) => break t,
                Err(e) => {
                    assert!(Instant::now() < deadline, "OffsetFetch kept failing: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        for e in got.elements() {
            let want = last[&(g, e.partition() as usize)];
            assert_eq!(
                e.offset(),
                Offset::Offset(want),
                "group g-{g} partition {}",
                e.partition()
            );
        }
    }
}
