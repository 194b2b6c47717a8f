//! Regression tests of issue 20's defects, through the wire protocol against the real broker:
//! deleted topics that came back (after a crash, and under a producer that keeps auto-creating
//! the name), committed offsets that outlived their topic, internal topics that clients could
//! delete or grow, batches Kafka refuses, and small Fetch/Produce protocol gaps.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::raw::{plain_batch, Raw};
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Every record of partition 0 of `topic` from offset 0, read with Fetch v11 (values only).
fn read_values(raw: &mut Raw, topic: &str) -> Vec<Vec<u8>> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut out = Vec::new();
    let mut offset = 0i64;
    loop {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(sb(topic)))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let r: FetchResponse = raw.call(ApiKey::Fetch, 11, &req);
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch {topic} at {offset}");
        let mut records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            return out;
        }
        // Every batch of the response (one record each, as the test's producer writes them).
        let sets = RecordBatchDecoder::decode_all(&mut records).expect("decode");
        let before = offset;
        for rec in sets.into_iter().flat_map(|s| s.records) {
            if rec.offset >= offset {
                out.push(rec.value.map(|v| v.to_vec()).unwrap_or_default());
                offset = rec.offset + 1;
            }
        }
        assert!(
            offset > before,
            "fetch {topic} at {before} returned nothing new"
        );
    }
}

/// Produces until the (auto-created) topic accepts: (error, base offset) of the first success.
fn produce_until_ok(raw: &mut Raw, topic: &str, value: &[u8]) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let (error, base) = raw.produce(topic, 0, plain_batch(&[value.to_vec()], false, false));
        if error == 0 {
            return base;
        }
        assert!(
            Instant::now() < deadline,
            "produce to {topic}: error {error}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Item 3a: a crash after DeleteTopics made the metadata durable and before any shard removed
/// the partition directory; re-creating the name must give an empty topic.
#[test]
fn deleted_topic_stays_deleted_after_a_crash_mid_delete() {
    let mut broker = Broker::start_with_env(
        &["--cores", "2"],
        &[("SLUICE_FAILPOINT", "delete-topic-committed")],
    );
    broker.create_topic("phoenix", 1, &[]);
    let mut raw = Raw::connect(&broker.addr);
    for i in 0..10 {
        assert_eq!(produce_until_ok(&mut raw, "phoenix", b"old"), i);
    }
    // The broker aborts inside the delete, before answering it.
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(sb("phoenix"))])
        .with_timeout_ms(30_000);
    raw.send(ApiKey::DeleteTopics, 4, &req);
    assert!(raw.recv_frame().is_none(), "the failpoint answered");
    let status = broker.wait_exit();
    assert_eq!(status, None, "killed by SIGABRT, not an exit code");
    assert!(
        broker.data_dir.join("phoenix-0").exists(),
        "the crash left the directory"
    );

    broker.env.clear();
    broker.restart();
    let mut raw = Raw::connect(&broker.addr);
    assert_eq!(
        produce_until_ok(&mut raw, "phoenix", b"new"),
        0,
        "re-created empty"
    );
    assert_eq!(read_values(&mut raw, "phoenix"), vec![b"new".to_vec()]);
    let log = broker.log();
    assert!(
        log.contains("removing the directory of a deleted topic"),
        "{log}"
    );
}

/// Item 3b: DeleteTopics in a loop while a producer keeps auto-creating the same name. No record
/// acknowledged before a delete is read after it; the broker never answers a storage error
/// (a shard opening a directory another one was deleting), never crashes.
#[test]
fn delete_and_auto_create_under_an_active_producer() {
    const ROUNDS: usize = 30;
    // Several partitions: about half change owner shard with each new topic id, and deleting
    // them takes long enough for an auto-create to come in between.
    let broker = Broker::start(&["--cores", "2", "--num-partitions", "8"]);
    let addr = broker.addr.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acked_max = Arc::new(AtomicI64::new(-1));
    let producer = {
        let (stop, acked_max) = (stop.clone(), acked_max.clone());
        std::thread::spawn(move || {
            let mut raw = Raw::connect(&addr);
            let mut errors = Vec::new();
            let deadline = Instant::now() + WAIT * 4;
            let mut n = 0i64;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let value = n.to_string().into_bytes();
                let (error, _) = raw.produce("churn", 0, plain_batch(&[value], false, false));
                match error {
                    0 => {
                        acked_max.fetch_max(n, Ordering::SeqCst);
                    }
                    // The topic is briefly gone between a delete and the next auto-create.
                    3 | 6 => {}
                    e => errors.push(e),
                }
                n += 1;
            }
            errors
        })
    };
    let mut admin = Raw::connect(&broker.addr);
    let mut reader = Raw::connect(&broker.addr);
    let mut last_before_delete = -1;
    let check = |reader: &mut Raw, last_before_delete: i64, when: &str| {
        for value in read_values(reader, "churn") {
            let n: i64 = String::from_utf8(value).unwrap().parse().unwrap();
            assert!(
                n > last_before_delete || n == -1,
                "{when}: record {n}, acknowledged before the last delete (max {last_before_delete}), came back"
            );
        }
    };
    for round in 0..ROUNDS {
        let deadline = Instant::now() + WAIT;
        // Let the producer re-create the topic and write into it.
        let start = acked_max.load(Ordering::SeqCst);
        while acked_max.load(Ordering::SeqCst) < start + 20 {
            assert!(Instant::now() < deadline, "round {round}: producer stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
        check(&mut reader, last_before_delete, &format!("round {round}"));
        last_before_delete = acked_max.load(Ordering::SeqCst);
        let error = admin.delete_topic("churn");
        assert!(
            matches!(error, 0 | 3),
            "round {round}: DeleteTopics error {error}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let errors = producer.join().expect("producer thread");
    assert!(errors.is_empty(), "unexpected produce errors: {errors:?}");
    produce_until_ok(&mut reader, "churn", b"-1");
    check(&mut reader, last_before_delete, "at the end");
    let log = broker.log();
    for bad in ["panicked", "No such file", "opening partition log failed"] {
        assert!(!log.contains(bad), "broker log contains {bad:?}:\n{log}");
    }
}

/// Item 4: commit 50, delete the topic, re-create it and produce 100: the group has no offset
/// (it would resume at 50 and skip 0-49), and still none after a restart.
#[test]
fn committed_offsets_of_a_deleted_topic_are_removed() {
    let mut broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("ledger", 1, &[]);
    let mut raw = Raw::connect(&broker.addr);
    assert_eq!(raw.committed_offset("g-ledger", "ledger"), -1);
    assert_eq!(raw.commit_offset("g-ledger", "ledger", 50), 0);
    assert_eq!(raw.commit_offset("g-other", "ledger", 7), 0);
    assert_eq!(raw.committed_offset("g-ledger", "ledger"), 50);
    assert_eq!(raw.delete_topic("ledger"), 0);
    broker.create_topic("ledger", 1, &[]);
    for _ in 0..100 {
        produce_until_ok(&mut raw, "ledger", b"x");
    }
    assert_eq!(raw.committed_offset("g-ledger", "ledger"), -1);
    assert_eq!(raw.committed_offset("g-other", "ledger"), -1);
    broker.stop();
    broker.restart();
    let mut raw = Raw::connect(&broker.addr);
    assert_eq!(
        raw.committed_offset("g-ledger", "ledger"),
        -1,
        "after restart"
    );
    assert_eq!(
        raw.committed_offset("g-other", "ledger"),
        -1,
        "after restart"
    );
}

/// Item 5: clients may not delete, grow or truncate `__consumer_offsets`.
#[test]
fn internal_topics_are_refused_to_clients() {
    const INVALID_TOPIC: i16 = 17;
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("x", 1, &[]);
    let mut raw = Raw::connect(&broker.addr);
    assert_eq!(raw.commit_offset("g-int", "x", 5), 0);

    let req = CreatePartitionsRequest::default()
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(sb("__consumer_offsets")))
                .with_count(100),
        ])
        .with_timeout_ms(10_000);
    let r: CreatePartitionsResponse = raw.call(ApiKey::CreatePartitions, 1, &req);
    assert_eq!(r.results[0].error_code, INVALID_TOPIC, "CreatePartitions");

    let req = DeleteRecordsRequest::default()
        .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
            .with_name(TopicName(sb("__consumer_offsets")))
            .with_partitions(
                (0..4)
                    .map(|p| {
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(p)
                            .with_offset(-1)
                    })
                    .collect(),
            )])
        .with_timeout_ms(10_000);
    let r: DeleteRecordsResponse = raw.call(ApiKey::DeleteRecords, 1, &req);
    assert!(
        r.topics[0]
            .partitions
            .iter()
            .all(|p| p.error_code == INVALID_TOPIC),
        "DeleteRecords: {r:?}"
    );

    assert_eq!(
        raw.delete_topic("__consumer_offsets"),
        INVALID_TOPIC,
        "DeleteTopics"
    );
    assert_eq!(raw.committed_offset("g-int", "x"), 5, "offsets intact");
}

/// Rewrites the CRC of a batch whose bytes a test edited.
fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Item 6: batches Kafka's validator refuses get Kafka's codes, and nothing is appended.
#[test]
fn batches_kafka_refuses_are_refused() {
    const INVALID_RECORD: i16 = 87;
    const INVALID_TXN_STATE: i16 = 48;
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("strict", 1, &[]);
    let mut raw = Raw::connect(&broker.addr);
    let three = || plain_batch(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], false, false);

    // last_offset_delta 5 with 3 records.
    let mut bad = BytesMut::from(&three()[..]);
    bad[23..27].copy_from_slice(&5i32.to_be_bytes());
    fix_crc(&mut bad);
    assert_eq!(raw.produce("strict", 0, bad.freeze()).0, INVALID_RECORD);

    // The second record's offset delta says 2 (each record here starts with one-byte length,
    // attributes, timestamp delta and offset delta fields).
    let mut bad = BytesMut::from(&three()[..]);
    let first_len = (bad[61] >> 1) as usize; // zigzag varint, < 64
    let second = 61 + 1 + first_len;
    assert_eq!(bad[second + 3], 2, "zigzag(1)");
    bad[second + 3] = 4;
    fix_crc(&mut bad);
    assert_eq!(raw.produce("strict", 0, bad.freeze()).0, INVALID_RECORD);

    let control = plain_batch(&[b"c".to_vec()], false, true);
    assert_eq!(raw.produce("strict", 0, control).0, INVALID_RECORD);
    let txn = plain_batch(&[b"t".to_vec()], true, false);
    assert_eq!(raw.produce("strict", 0, txn).0, INVALID_TXN_STATE);

    let (error, base) = raw.produce("strict", 0, three());
    assert_eq!(
        (error, base),
        (0, 0),
        "nothing of the refused batches was appended"
    );
    assert_eq!(read_values(&mut raw, "strict").len(), 3);
}

/// Item 7: Fetch with min_bytes 0 answers at once; a Fetch naming more partitions than the
/// per-request bound closes the connection instead of never answering; a failed acks=0
/// produce closes the connection.
#[test]
fn fetch_and_produce_protocol_gaps() {
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("gaps", 1, &[]);
    let fetch = |partitions: i32, min_bytes: i32| {
        FetchRequest::default()
            .with_max_wait_ms(30_000)
            .with_min_bytes(min_bytes)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(sb("gaps")))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            fetch_request::FetchPartition::default()
                                .with_partition(p.min(0))
                                .with_partition_max_bytes(1024)
                        })
                        .collect(),
                )])
    };

    // min_bytes 0 on an empty partition: the answer does not wait out max_wait_ms (30 s); the
    // read timeout leaves a 20 s margin.
    let mut raw = Raw::connect(&broker.addr);
    raw.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r: FetchResponse = raw.call(ApiKey::Fetch, 11, &fetch(1, 0));
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_eq!(r.responses[0].partitions[0].high_watermark, 0);

    // 10,001 partitions: the connection closes (the request behind it gets no answer).
    let mut raw = Raw::connect(&broker.addr);
    raw.send(ApiKey::Fetch, 11, &fetch(10_001, 1));
    raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert!(raw.recv_frame().is_none(), "connection still open");

    // acks=0 produce to a partition that does not exist: the connection closes.
    let mut raw = Raw::connect(&broker.addr);
    let req = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(sb("gaps")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(7)
                    .with_records(Some(plain_batch(&[b"x".to_vec()], false, false))),
            ])]);
    raw.send(ApiKey::Produce, 9, &req);
    raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert!(raw.recv_frame().is_none(), "connection still open");

    // acks=0 produce refused before any append (transactional): the connection closes too.
    let mut raw = Raw::connect(&broker.addr);
    let refused = req
        .clone()
        .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(sb("tx"))));
    raw.send(ApiKey::Produce, 9, &refused);
    raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert!(raw.recv_frame().is_none(), "connection still open");

    // A good acks=0 produce keeps the connection.
    let mut raw = Raw::connect(&broker.addr);
    let ok = req
        .clone()
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(sb("gaps")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(plain_batch(&[b"x".to_vec()], false, false))),
            ])]);
    raw.send(ApiKey::Produce, 9, &ok);
    let r: ApiVersionsResponse = raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
}
