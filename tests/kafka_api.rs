//! End-to-end behaviour of the broker through librdkafka (the `rdkafka` crate): topics,
//! produce/consume with exact offsets, keys, headers, compression, acks, sizes, ListOffsets,
//! offset resets, configs, shards, restarts.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::{Offset, TopicPartitionList};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

#[test]
fn keyed_messages_read_back_with_exact_offsets_per_partition() {
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("orders", 4, &[]);
    let producer = broker.producer(&[("acks", "all")]);
    let records: Vec<Out> = (0..10_000)
        .map(|i| Out {
            key: Some(format!("key-{}", i % 97).into_bytes()),
            value: Some(format!("value-{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    let results = produce_all(&producer, "orders", &records);
    let mut key_partition: HashMap<Vec<u8>, i32> = HashMap::new();
    for (r, res) in records.iter().zip(&results) {
        let (p, _) = res.as_ref().expect("delivered");
        let prev = key_partition.insert(r.key.clone().unwrap(), *p);
        assert!(prev.is_none_or(|q| q == *p), "same key, same partition");
    }
    let consumer = broker.consumer(&[]);
    let got = consume_n(&consumer, "orders", 4, 10_000);
    assert_eq!(got.len(), 10_000);
    let mut per_partition: BTreeMap<i32, Vec<&Rec>> = BTreeMap::new();
    for r in &got {
        per_partition.entry(r.partition).or_default().push(r);
    }
    assert!(per_partition.len() > 1, "keys spread over partitions");
    for (p, recs) in &per_partition {
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.offset, i as i64, "partition {p} offsets are 0..n-1");
        }
    }
    // Delivery reports name the same offsets the consumer sees.
    let by_pos: HashMap<(i32, i64), &Rec> =
        got.iter().map(|r| ((r.partition, r.offset), r)).collect();
    for (r, res) in records.iter().zip(&results) {
        let pos = res.as_ref().unwrap();
        let seen = by_pos.get(pos).expect("delivered record is readable");
        assert_eq!(seen.value, r.value);
        assert_eq!(seen.key, r.key);
    }
    assert!(!broker.log().contains("panicked"));
}

#[test]
fn headers_null_keys_null_values_and_timestamps_round_trip() {
    let broker = Broker::start(&[]);
    broker.create_topic("misc", 1, &[]);
    let producer = broker.producer(&[]);
    let records = vec![
        Out {
            partition: Some(0),
            key: None,
            value: Some(b"no key".to_vec()),
            timestamp: Some(1_600_000_000_000),
            headers: vec![("h1".into(), Some(b"v1".to_vec())), ("h2".into(), None)],
        },
        Out {
            partition: Some(0),
            key: Some(b"k".to_vec()),
            value: None,
            timestamp: Some(1_600_000_000_001),
            headers: vec![],
        },
        Out {
            partition: Some(0),
            key: None,
            value: None,
            timestamp: Some(1_600_000_000_002),
            headers: vec![("only".into(), Some(vec![]))],
        },
    ];
    for r in produce_all(&producer, "misc", &records) {
        r.expect("delivered");
    }
    let got = consume_n(&broker.consumer(&[]), "misc", 1, 3);
    assert_eq!(got.len(), 3);
    for (want, have) in records.iter().zip(&got) {
        assert_eq!(have.key, want.key);
        assert_eq!(have.value, want.value);
        assert_eq!(have.timestamp, want.timestamp);
        assert_eq!(have.headers, want.headers);
    }
}

#[test]
fn every_compression_codec_round_trips() {
    let broker = Broker::start(&[]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        broker.create_topic(&topic, 1, &[]);
        let producer = broker.producer(&[("compression.codec", codec), ("linger.ms", "50")]);
        let records: Vec<Out> = (0..500)
            .map(|i| Out {
                partition: Some(0),
                value: Some(format!("{codec} payload {i} {}", "x".repeat(100)).into_bytes()),
                ..Default::default()
            })
            .collect();
        for r in produce_all(&producer, &topic, &records) {
            r.expect("delivered");
        }
        let got = consume_n(&broker.consumer(&[]), &topic, 1, 500);
        assert_eq!(got.len(), 500, "{codec}");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset, i as i64, "{codec}");
            assert_eq!(r.value, records[i].value, "{codec}");
        }
    }
}

#[test]
fn acks_zero_one_and_all_each_deliver() {
    let broker = Broker::start(&["--flush", "always"]);
    broker.create_topic("acks", 1, &[]);
    let mut total = 0;
    for acks in ["0", "1", "all"] {
        let producer = broker.producer(&[("acks", acks)]);
        let records: Vec<Out> = (0..300)
            .map(|i| Out {
                partition: Some(0),
                value: Some(format!("acks={acks} {i}").into_bytes()),
                ..Default::default()
            })
            .collect();
        for r in produce_all(&producer, "acks", &records) {
            r.expect("delivered");
        }
        total += 300;
    }
    let got = consume_n(&broker.consumer(&[]), "acks", 1, total);
    assert_eq!(got.len(), total);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
    }
}

#[test]
fn one_mib_messages_and_message_too_large() {
    let broker = Broker::start(&[]);
    broker.create_topic("big", 1, &[("max.message.bytes", "2000000")]);
    broker.create_topic("small", 1, &[("max.message.bytes", "10000")]);
    let producer = broker.producer(&[
        ("message.max.bytes", "3000000"),
        ("compression.codec", "none"),
    ]);
    let big = vec![7u8; 1 << 20];
    let recs = vec![Out {
        partition: Some(0),
        value: Some(big.clone()),
        ..Default::default()
    }];
    produce_all(&producer, "big", &recs)[0]
        .as_ref()
        .expect("1 MiB message accepted");
    let got = consume_n(
        &broker.consumer(&[("fetch.message.max.bytes", "3000000")]),
        "big",
        1,
        1,
    );
    assert_eq!(got[0].value.as_deref(), Some(big.as_slice()));

    let recs = vec![Out {
        partition: Some(0),
        value: Some(vec![1u8; 50_000]),
        ..Default::default()
    }];
    let err = produce_all(&producer, "small", &recs)[0]
        .clone()
        .expect_err("too large");
    assert_eq!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge),
        "{err}"
    );
}

/// Requests larger than the connection's read chunk (64 KiB) are read into a buffer of their
/// own size: pipelined back to back with small ones, whole in one write or in odd pieces, each
/// is answered in order and its records read back intact.
#[test]
fn large_pipelined_requests_arriving_in_any_pieces_are_all_answered() {
    use common::raw::{plain_batch, produce_request, Raw};
    use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
    let broker = Broker::start(&[]);
    broker.create_topic("pipelined", 1, &[]);
    let values = |round: usize, req: usize| -> Vec<Vec<u8>> {
        (0..3)
            .map(|i| vec![(round * 7 + req * 3 + i) as u8; 100_000 + req * 12_345])
            .collect()
    };
    let mut expected = Vec::new();
    for (round, piece) in [usize::MAX, 7_919, 65_536].into_iter().enumerate() {
        let mut raw = Raw::connect(&broker.addr);
        let mut wire = Vec::new();
        for req in 0..4 {
            if req == 2 {
                wire.extend(raw.encode(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()));
            }
            let vals = values(round, req);
            let produce = produce_request("pipelined", 0, plain_batch(&vals, false, false));
            wire.extend(raw.encode(ApiKey::Produce, 9, &produce));
            expected.extend(vals);
        }
        for chunk in wire.chunks(piece.min(wire.len())) {
            std::io::Write::write_all(&mut raw.stream, chunk).unwrap();
        }
        // Five responses, in request order (correlation ids 1..=5 on this connection).
        for (i, correlation) in (1..=5).enumerate() {
            if i == 2 {
                let (c, v): (i32, ApiVersionsResponse) = raw.recv_next(ApiKey::ApiVersions, 3);
                assert_eq!((c, v.error_code), (correlation, 0), "round {round}");
                continue;
            }
            let (c, resp): (i32, kafka_protocol::messages::ProduceResponse) =
                raw.recv_next(ApiKey::Produce, 9);
            let p = &resp.responses[0].partition_responses[0];
            assert_eq!((c, p.error_code), (correlation, 0), "round {round}");
        }
    }
    let got = consume_n(
        &broker.consumer(&[("fetch.message.max.bytes", "3000000")]),
        "pipelined",
        1,
        expected.len(),
    );
    let got: Vec<Vec<u8>> = got.into_iter().map(|r| r.value.unwrap()).collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "records differ from what was produced");
}

#[test]
fn list_offsets_earliest_latest_and_by_timestamp() {
    let broker = Broker::start(&[]);
    broker.create_topic("times", 1, &[]);
    let producer = broker.producer(&[("linger.ms", "0")]);
    let base = 1_700_000_000_000i64;
    for i in 0..10 {
        let recs = vec![Out {
            partition: Some(0),
            value: Some(vec![i as u8]),
            timestamp: Some(base + i * 1000),
            ..Default::default()
        }];
        produce_all(&producer, "times", &recs)[0]
            .as_ref()
            .expect("delivered");
    }
    let consumer = broker.consumer(&[]);
    let (lo, hi) = consumer
        .fetch_watermarks("times", 0, WAIT)
        .expect("watermarks");
    assert_eq!((lo, hi), (0, 10));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("times", 0, Offset::Offset(base + 4500))
        .unwrap();
    let found = consumer
        .offsets_for_times(tpl, WAIT)
        .expect("offsets_for_times");
    let off = found.find_partition("times", 0).unwrap().offset();
    assert_eq!(
        off,
        Offset::Offset(5),
        "first record at or after the timestamp"
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("times", 0, Offset::Offset(base + 100_000))
        .unwrap();
    let found = consumer
        .offsets_for_times(tpl, WAIT)
        .expect("offsets_for_times");
    assert_eq!(
        found.find_partition("times", 0).unwrap().offset(),
        Offset::End,
        "past the end"
    );
}

#[test]
fn out_of_range_fetch_resets_per_auto_offset_reset() {
    let broker = Broker::start(&[]);
    broker.create_topic("reset", 1, &[]);
    let producer = broker.producer(&[]);
    let recs: Vec<Out> = (0..20)
        .map(|i| Out {
            partition: Some(0),
            value: Some(vec![i]),
            ..Default::default()
        })
        .collect();
    for r in produce_all(&producer, "reset", &recs) {
        r.expect("delivered");
    }
    // earliest: an offset past the end resets to 0 and reads everything.
    let c = broker.consumer(&[("auto.offset.reset", "earliest")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("reset", 0, Offset::Offset(1000))
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while got.len() < 20 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            got.push(own(&m));
        }
    }
    assert_eq!(got.len(), 20);
    assert_eq!(got[0].offset, 0);
    // error: the consumer reports the out-of-range condition.
    let c = broker.consumer(&[("auto.offset.reset", "error")]);
    c.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let mut saw_error = false;
    while !saw_error && std::time::Instant::now() < deadline {
        if let Some(Err(e)) = c.poll(Duration::from_millis(100)) {
            saw_error = e.to_string().contains("out of range")
                || e.rdkafka_error_code() == Some(Code::AutoOffsetReset);
            assert!(saw_error, "unexpected error {e}");
        }
    }
    assert!(saw_error);
}

#[test]
fn topics_are_created_described_grown_altered_and_deleted() {
    let broker = Broker::start(&["--cores", "2", "--auto-create-topics-enable", "false"]);
    let admin = broker.admin();
    let opts = AdminOptions::new().operation_timeout(Some(WAIT));
    let t = NewTopic::new("admin-t", 3, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    block_on(admin.create_topics([&t], &opts)).unwrap()[0]
        .as_ref()
        .expect("created");
    let again = block_on(admin.create_topics([&t], &opts)).unwrap();
    assert_eq!(again[0].as_ref().unwrap_err().1, Code::TopicAlreadyExists);
    let bad = NewTopic::new("bad name!", 1, TopicReplication::Fixed(1));
    let r = block_on(admin.create_topics([&bad], &opts)).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().1, Code::InvalidTopic);
    let rf = NewTopic::new("rf3", 1, TopicReplication::Fixed(3));
    let r = block_on(admin.create_topics([&rf], &opts)).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().1, Code::InvalidReplicationFactor);
    let vo = NewTopic::new("validate-only", 2, TopicReplication::Fixed(1));
    block_on(admin.create_topics([&vo], &AdminOptions::new().validate_only(true))).unwrap()[0]
        .as_ref()
        .expect("valid");

    let consumer = broker.consumer(&[]);
    let md = consumer.fetch_metadata(None, WAIT).unwrap();
    let names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
    assert!(names.contains(&"admin-t"));
    assert!(
        !names.contains(&"validate-only"),
        "validate_only creates nothing"
    );
    let md = consumer.fetch_metadata(Some("admin-t"), WAIT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 3);

    // Configs: dynamic value for the override, default for the rest.
    let res =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic("admin-t")], &opts)).unwrap();
    let cfg = res[0].as_ref().expect("described");
    let retention = cfg.get("retention.ms").expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, rdkafka::admin::ConfigSource::DynamicTopic);
    let seg = cfg.get("segment.bytes").expect("segment.bytes");
    assert_eq!(seg.source, rdkafka::admin::ConfigSource::Default);
    let alter = AlterConfig::new(ResourceSpecifier::Topic("admin-t"))
        .set("retention.ms", "1000")
        .set("cleanup.policy", "delete");
    block_on(admin.alter_configs([&alter], &opts)).unwrap()[0]
        .as_ref()
        .expect("altered");
    let res =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic("admin-t")], &opts)).unwrap();
    assert_eq!(
        res[0]
            .as_ref()
            .unwrap()
            .get("retention.ms")
            .unwrap()
            .value
            .as_deref(),
        Some("1000")
    );
    // An invalid value is refused (INVALID_CONFIG; kafka-python sees the code in the client
    // matrix) and changes nothing.
    let bad_alter =
        AlterConfig::new(ResourceSpecifier::Topic("admin-t")).set("retention.ms", "soon");
    let _ = block_on(admin.alter_configs([&bad_alter], &opts)).unwrap();
    let res =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic("admin-t")], &opts)).unwrap();
    assert_eq!(
        res[0]
            .as_ref()
            .unwrap()
            .get("retention.ms")
            .unwrap()
            .value
            .as_deref(),
        Some("1000")
    );

    // Grow to 8 partitions (spanning both shards) and use them all.
    block_on(admin.create_partitions([&NewPartitions::new("admin-t", 8)], &opts)).unwrap()[0]
        .as_ref()
        .expect("grown");
    let shrink =
        block_on(admin.create_partitions([&NewPartitions::new("admin-t", 2)], &opts)).unwrap();
    assert_eq!(shrink[0].as_ref().unwrap_err().1, Code::InvalidPartitions);
    let md = consumer.fetch_metadata(Some("admin-t"), WAIT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 8);
    let producer = broker.producer(&[]);
    let recs: Vec<Out> = (0..8)
        .map(|p| Out {
            partition: Some(p),
            value: Some(vec![p as u8]),
            ..Default::default()
        })
        .collect();
    for r in produce_all(&producer, "admin-t", &recs) {
        r.expect("delivered");
    }
    assert_eq!(consume_n(&broker.consumer(&[]), "admin-t", 8, 8).len(), 8);

    // Produce to a topic that does not exist (auto-create off).
    let short = broker.producer(&[("message.timeout.ms", "3000")]);
    let r = produce_all(
        &short,
        "nope",
        &[Out {
            value: Some(b"x".to_vec()),
            ..Default::default()
        }],
    );
    assert!(r[0].is_err());

    block_on(admin.delete_topics(&["admin-t"], &opts)).unwrap()[0]
        .as_ref()
        .expect("deleted");
    let r = block_on(admin.delete_topics(&["admin-t"], &opts)).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().1, Code::UnknownTopicOrPartition);
    let md = consumer.fetch_metadata(None, WAIT).unwrap();
    assert!(md.topics().iter().all(|t| t.name() != "admin-t"));
    assert!(
        !broker.data_dir.join("admin-t-0").exists(),
        "partition directories removed"
    );
}

#[test]
fn two_shards_are_pinned_to_different_cpus_and_serve_spanning_requests() {
    let broker = Broker::start(&["--cores", "2"]);
    // Threads a shard starts for blocking file work (its runtime's pool) inherit its name and
    // CPU; one entry per name.
    let mut cpus = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{}/task", broker.pid())).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim().starts_with("sluice-shard-") {
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            let allowed = status
                .lines()
                .find(|l| l.starts_with("Cpus_allowed_list:"))
                .unwrap()
                .split(':')
                .nth(1)
                .unwrap()
                .trim()
                .to_owned();
            cpus.insert(comm.trim().to_owned(), allowed);
        }
    }
    let cpus: Vec<String> = cpus.into_values().collect();
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(cpus.len(), 2, "two shard threads");
    if n >= 2 {
        assert_eq!(
            cpus,
            vec!["0".to_owned(), "1".to_owned()],
            "each shard on its own CPU"
        );
    }
    broker.create_topic("span", 16, &[]);
    let producer = broker.producer(&[]);
    let recs: Vec<Out> = (0..1600)
        .map(|i| Out {
            partition: Some(i % 16),
            value: Some(i.to_be_bytes().to_vec()),
            ..Default::default()
        })
        .collect();
    for r in produce_all(&producer, "span", &recs) {
        r.expect("delivered");
    }
    let got = consume_n(&broker.consumer(&[]), "span", 16, 1600);
    assert_eq!(got.len(), 1600);
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    for r in &got {
        *counts.entry(r.partition).or_default() += 1;
    }
    assert!(counts.values().all(|&c| c == 100));
}

#[test]
fn sigterm_is_graceful_and_restart_keeps_everything_without_recovery_scan() {
    let mut broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("durable", 4, &[]);
    let producer = broker.producer(&[("acks", "all")]);
    let recs: Vec<Out> = (0..2000)
        .map(|i| Out {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for r in produce_all(&producer, "durable", &recs) {
        r.expect("delivered");
    }
    drop(producer);
    assert_eq!(broker.stop(), Some(0), "clean exit on SIGTERM");
    broker.restart();
    let got = consume_n(&broker.consumer(&[]), "durable", 4, 2000);
    assert_eq!(got.len(), 2000);
    let log = broker.log();
    assert!(
        !log.contains("truncat"),
        "clean shutdown needs no recovery truncation:\n{log}"
    );
}

#[test]
fn zero_copy_send_serves_the_same_bytes() {
    let broker = Broker::start(&["--zero-copy-send", "--cores", "1"]);
    broker.create_topic("zc", 2, &[]);
    let producer = broker.producer(&[]);
    let recs: Vec<Out> = (0..3000)
        .map(|i| Out {
            partition: Some(i % 2),
            value: Some(format!("zc-{i}-{}", "y".repeat(i as usize % 700)).into_bytes()),
            ..Default::default()
        })
        .collect();
    for r in produce_all(&producer, "zc", &recs) {
        r.expect("delivered");
    }
    let got = consume_n(&broker.consumer(&[]), "zc", 2, 3000);
    assert_eq!(got.len(), 3000);
    let mut want: HashMap<Vec<u8>, ()> = recs
        .iter()
        .map(|r| (r.value.clone().unwrap(), ()))
        .collect();
    for r in &got {
        assert!(want.remove(r.value.as_ref().unwrap()).is_some());
    }
    assert!(want.is_empty());
}

#[test]
fn a_second_broker_cannot_take_a_port_in_use() {
    let broker = Broker::start(&["--cores", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--listen",
            &broker.addr,
            "--metrics-listen",
            "none",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "second broker must not start on {}",
        broker.addr
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear error line: {err}");
}

/// A Fetch answered with more stored batches than one vectored write may carry (Linux takes at
/// most 1024 buffers) arrives whole. A producer that does not batch (one record per batch, as
/// here) fills a partition like this; the write used to fail and leave the consumer waiting.
#[test]
fn a_fetch_of_thousands_of_one_record_batches_arrives_whole() {
    for args in [
        &["--cores", "1"][..],
        &["--cores", "1", "--zero-copy-send"][..],
    ] {
        fetch_thousands_of_one_record_batches(args);
    }
}

fn fetch_thousands_of_one_record_batches(args: &[&str]) {
    use kafka_protocol::messages::{fetch_request, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::RecordBatchDecoder;
    const N: usize = 3000;
    let broker = Broker::start(args);
    broker.create_topic("tiny", 1, &[]);
    let mut raw = common::raw::Raw::connect(&broker.addr);
    for i in 0..N {
        let batch = common::raw::plain_batch(&[i.to_string().into_bytes()], false, false);
        assert_eq!(raw.produce("tiny", 0, batch).0, 0, "produce {i}");
    }
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("tiny")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(8 << 20)])]);
    let r: FetchResponse = raw.call(kafka_protocol::messages::ApiKey::Fetch, 11, &req);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut records = p.records.clone().expect("records");
    let sets = RecordBatchDecoder::decode_all(&mut records).expect("decode");
    let values: Vec<String> = sets
        .iter()
        .flat_map(|s| &s.records)
        .map(|r| String::from_utf8(r.value.clone().expect("value").to_vec()).expect("utf8"))
        .collect();
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(
        values, want,
        "{args:?}: one fetch returns every batch, in order"
    );

    // The same through librdkafka.
    let consumer = broker.consumer(&[]);
    let got = consume_n(&consumer, "tiny", 1, N);
    assert_eq!(got.len(), N);
}

/// OffsetForLeaderEpoch and DeleteRecords over partitions of both shards in one request: each
/// partition answers on its own, unknown ones with UNKNOWN_TOPIC_OR_PARTITION, in request order.
#[test]
fn per_partition_admin_requests_span_shards_and_answer_each_partition() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        delete_records_request, ApiKey, DeleteRecordsRequest, DeleteRecordsResponse,
        OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("spread", 6, &[]);
    let mut raw = common::raw::Raw::connect(&broker.addr);
    for p in 0..6 {
        let batch =
            common::raw::plain_batch(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], false, false);
        assert_eq!(raw.produce("spread", p, batch).0, 0);
    }
    let name = || TopicName(StrBytes::from_static_str("spread"));
    let asked = [0, 1, 2, 3, 4, 5, 99];

    let epochs = |current: i32| {
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name())
            .with_partitions(
                asked
                    .iter()
                    .map(|&p| {
                        OffsetForLeaderPartition::default()
                            .with_partition(p)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(0)
                    })
                    .collect(),
            )])
    };
    let r: OffsetForLeaderEpochResponse = raw.call(ApiKey::OffsetForLeaderEpoch, 4, &epochs(-1));
    let got: Vec<(i32, i16, i32, i64)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition, p.error_code, p.leader_epoch, p.end_offset))
        .collect();
    let mut want: Vec<(i32, i16, i32, i64)> = (0..6).map(|p| (p, 0, 0, 3)).collect();
    want.push((99, 3, -1, -1));
    assert_eq!(got, want);
    let r: OffsetForLeaderEpochResponse = raw.call(ApiKey::OffsetForLeaderEpoch, 4, &epochs(5));
    assert!(
        r.topics[0].partitions[..6]
            .iter()
            .all(|p| p.error_code == 75), // UNKNOWN_LEADER_EPOCH: the client is ahead, as Kafka answers
        "{r:?}"
    );

    let delete = |offset: i64| {
        DeleteRecordsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(name())
                .with_partitions(
                    asked
                        .iter()
                        .map(|&p| {
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(p)
                                .with_offset(offset)
                        })
                        .collect(),
                )])
    };
    let r: DeleteRecordsResponse = raw.call(ApiKey::DeleteRecords, 2, &delete(2));
    let got: Vec<(i32, i16, i64)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code, p.low_watermark))
        .collect();
    let mut want: Vec<(i32, i16, i64)> = (0..6).map(|p| (p, 0, 2)).collect();
    want.push((99, 3, -1));
    assert_eq!(got, want);
    let r: DeleteRecordsResponse = raw.call(ApiKey::DeleteRecords, 2, &delete(10));
    assert!(
        r.topics[0].partitions[..6]
            .iter()
            .all(|p| p.error_code == 1),
        "{r:?}"
    );
}

/// A fetch waiting (long poll) on a topic that is deleted meanwhile answers
/// UNKNOWN_TOPIC_OR_PARTITION, as a new fetch would be told, not NOT_LEADER_OR_FOLLOWER
/// (found by franz-go: its last fetch before a topic deletion was answered that way).
#[test]
fn a_fetch_waiting_on_a_deleted_topic_answers_unknown_topic() {
    use kafka_protocol::messages::{fetch_request, ApiKey, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::ResponseError;
    for cores in ["1", "2"] {
        let broker = Broker::start(&["--cores", cores]);
        broker.create_topic("doomed", 2, &[]);
        let partitions = (0..2)
            .map(|p| {
                fetch_request::FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        let req = FetchRequest::default()
            .with_max_wait_ms(20_000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("doomed")))
                .with_partitions(partitions)]);
        let mut waiting = common::raw::Raw::connect(&broker.addr);
        waiting.send(ApiKey::Fetch, 11, &req);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut admin = common::raw::Raw::connect(&broker.addr);
        assert_eq!(admin.delete_topic("doomed"), 0);
        let r: FetchResponse = waiting.recv(ApiKey::Fetch, 11);
        for p in &r.responses[0].partitions {
            assert_eq!(
                p.error_code,
                ResponseError::UnknownTopicOrPartition.code(),
                "--cores {cores}, partition {}",
                p.partition_index
            );
        }
    }
}

/// A fetch naming more partitions than its `max_bytes` can carry gets data from them in
/// request order, each up to its `partition_max_bytes`, reading nothing it then drops; caught-up
/// partitions before the ones with data do not keep the data out. Over one and two shards (the
/// partitions of one fetch read on both).
#[test]
fn a_fetch_shares_its_max_bytes_in_request_order_and_reads_nothing_it_drops() {
    use kafka_protocol::messages::{fetch_request, ApiKey, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    for cores in ["1", "2"] {
        let broker = Broker::start(&["--cores", cores]);
        broker.create_topic("shared", 8, &[]);
        // Four 100 kB records per partition, each its own batch (larger than batch.size).
        let producer = broker.producer(&[("batch.size", "16384"), ("linger.ms", "0")]);
        let records: Vec<Out> = (0..8)
            .flat_map(|p| {
                (0..4).map(move |_| Out {
                    partition: Some(p),
                    value: Some(vec![p as u8; 100_000]),
                    ..Default::default()
                })
            })
            .collect();
        assert!(produce_all(&producer, "shared", &records)
            .iter()
            .all(Result::is_ok));
        let mut raw = common::raw::Raw::connect(&broker.addr);
        // (partition, fetch offset) in request order, partition and response maxima: per
        // partition, (batches, error, high watermark).
        let mut fetch = |parts: &[(i32, i64)], partition_max: usize, max: usize| {
            let partitions = parts
                .iter()
                .map(|&(p, offset)| {
                    fetch_request::FetchPartition::default()
                        .with_partition(p)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(partition_max as i32)
                })
                .collect();
            let req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(1)
                .with_max_bytes(max as i32)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("shared")))
                    .with_partitions(partitions)]);
            let r: FetchResponse = raw.call(ApiKey::Fetch, 11, &req);
            let got: Vec<(i32, Vec<usize>, i16, i64)> = r.responses[0]
                .partitions
                .iter()
                .map(|p| {
                    let bytes = p.records.clone().unwrap_or_default();
                    (
                        p.partition_index,
                        batch_sizes(&bytes),
                        p.error_code,
                        p.high_watermark,
                    )
                })
                .collect();
            got
        };
        // Every batch has the same size B (learnt from the first fetch).
        let first = fetch(&[(0, 0)], 1 << 20, 1 << 20);
        let b = first[0].1[0];
        assert_eq!(first[0].1, vec![b; 4], "--cores {cores}");
        let summary = |got: Vec<(i32, Vec<usize>, i16, i64)>| -> Vec<(i32, usize)> {
            for (p, sizes, error, hw) in &got {
                assert_eq!((*error, *hw), (0, 4), "--cores {cores}, partition {p}");
                assert!(sizes.iter().all(|&s| s == b), "--cores {cores}: {sizes:?}");
            }
            got.into_iter().map(|(p, s, ..)| (p, s.len())).collect()
        };
        let all: Vec<(i32, i64)> = (0..8).map(|p| (p, 0)).collect();
        // 2 B per partition, 5 B in all: two partitions' worth and one batch of the third.
        let want: Vec<(i32, usize)> = (0..8)
            .map(|p| (p, [2, 2, 1][..].get(p as usize).copied().unwrap_or(0)))
            .collect();
        assert_eq!(summary(fetch(&all, 2 * b, 5 * b)), want, "--cores {cores}");
        // Room for half a batch after two partitions: the third returns no batch rather than
        // one the response would drop.
        let want: Vec<(i32, usize)> = (0..8)
            .map(|p| (p, [2, 2][..].get(p as usize).copied().unwrap_or(0)))
            .collect();
        assert_eq!(
            summary(fetch(&all, 2 * b, 4 * b + b / 2)),
            want,
            "--cores {cores}"
        );
        // Request order, not partition order.
        let reversed: Vec<(i32, i64)> = (0..8).rev().map(|p| (p, 0)).collect();
        let want: Vec<(i32, usize)> = (0..8)
            .rev()
            .map(|p| {
                (
                    p,
                    if p == 7 {
                        2
                    } else if p == 6 {
                        1
                    } else {
                        0
                    },
                )
            })
            .collect();
        assert_eq!(
            summary(fetch(&reversed, 2 * b, 3 * b)),
            want,
            "--cores {cores}"
        );
        // Partitions 0-3 caught up: the next ones get the response's bytes.
        let caught_up: Vec<(i32, i64)> = (0..8).map(|p| (p, if p < 4 { 4 } else { 0 })).collect();
        let want: Vec<(i32, usize)> = (0..8)
            .map(|p| {
                (
                    p,
                    match p {
                        4 => 2,
                        5 => 1,
                        _ => 0,
                    },
                )
            })
            .collect();
        assert_eq!(
            summary(fetch(&caught_up, 2 * b, 3 * b)),
            want,
            "--cores {cores}"
        );
        assert_eq!(
            broker.metric("sluice_fetch_dropped_bytes_total"),
            0,
            "--cores {cores}"
        );
        // A first batch larger than the response's max_bytes still goes out whole.
        assert_eq!(
            summary(fetch(&all, 2 * b, 1)),
            (0..8).map(|p| (p, usize::from(p == 0))).collect::<Vec<_>>()
        );
    }
}

/// The sizes of the record batches in `records`, in order (a trailing partial batch ends it).
fn batch_sizes(records: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while records.len() >= at + 12 {
        let len = i32::from_be_bytes(records[at + 8..at + 12].try_into().expect("4 bytes"));
        let size = 12 + len.max(0) as usize;
        if records.len() < at + size {
            break;
        }
        out.push(size);
        at += size;
    }
    out
}
