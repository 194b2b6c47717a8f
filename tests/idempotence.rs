//! Idempotent producers: retries never duplicate or reorder. Real idempotent librdkafka
//! producers run while raw Produce requests re-send batches with the same producer id, epoch and
//! sequence (duplicates), skip sequences (gaps) and use stale epochs.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{idempotent_batch, Raw};
use common::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::producer::Producer;

fn init_producer_id(raw: &mut Raw, existing: Option<(i64, i16)>) -> (i64, i16) {
    let mut req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    if let Some((pid, epoch)) = existing {
        req = req
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch);
    } else {
        req = req.with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    }
    let resp: InitProducerIdResponse = raw.call(ApiKey::InitProducerId, 4, &req);
    assert_eq!(resp.error_code, 0);
    (resp.producer_id.0, resp.producer_epoch)
}

/// Produces one batch to `topic`/`partition`; returns (error code, base offset).
fn produce(raw: &mut Raw, topic: &str, partition: i32, batch: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let resp: ProduceResponse = raw.call(ApiKey::Produce, 9, &req);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn duplicates_gaps_and_stale_epochs_at_the_protocol_level_alongside_real_producers() {
    let broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("idem", 2, &[]);

    // A real idempotent producer writes 100k messages to partition 0 meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let real = {
        let producer = broker.producer(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "2"),
        ]);
        let stop = stop.clone();
        std::thread::spawn(move || {
            let recs: Vec<Out> = (0..100_000)
                .map(|i| Out {
                    partition: Some(0),
                    value: Some(format!("real-{i:06}").into_bytes()),
                    ..Default::default()
                })
                .collect();
            let r = produce_all(&producer, "idem", &recs);
            stop.store(true, Ordering::Relaxed);
            r
        })
    };

    let mut raw = Raw::connect(&broker.addr);
    let (pid, epoch) = init_producer_id(&mut raw, None);
    let (pid2, _) = init_producer_id(&mut raw, None);
    assert_ne!(pid, pid2, "fresh producer ids are unique");

    let mut raw_values = Vec::new();
    let mut seq = 0i32;
    let mut rounds = 0;
    while rounds < 200 || !stop.load(Ordering::Relaxed) {
        assert!(rounds < 100_000, "bounded");
        let batch = idempotent_batch(pid, epoch, seq, 5, "raw");
        let (err, base) = produce(&mut raw, "idem", 1, batch.clone());
        assert_eq!(err, 0, "in-sequence batch accepted");
        // The same batch again (a retry): original offsets, nothing appended.
        let (err, dup_base) = produce(&mut raw, "idem", 1, batch);
        assert_eq!(
            (err, dup_base),
            (0, base),
            "duplicate answered with its original offset"
        );
        // A gap: refused.
        let (err, _) = produce(
            &mut raw,
            "idem",
            1,
            idempotent_batch(pid, epoch, seq + 50, 5, "gap"),
        );
        assert_eq!(err, ResponseError::OutOfOrderSequenceNumber.code());
        raw_values.extend((seq..seq + 5).map(|s| format!("raw-{s}")));
        seq += 5;
        rounds += 1;
    }

    // An unknown producer with a non-zero sequence.
    let (err, _) = produce(
        &mut raw,
        "idem",
        1,
        idempotent_batch(pid + 1_000_000, 0, 7, 1, "unknown"),
    );
    assert_eq!(err, ResponseError::UnknownProducerId.code());
    // Epoch bump fences the old epoch.
    let (same, bumped) = init_producer_id(&mut raw, Some((pid, epoch)));
    assert_eq!((same, bumped), (pid, epoch + 1));
    let (err, _) = produce(
        &mut raw,
        "idem",
        1,
        idempotent_batch(pid, bumped, 0, 2, "raw-e1"),
    );
    assert_eq!(err, 0, "new epoch starts at sequence 0");
    raw_values.extend(["raw-e1-0".to_owned(), "raw-e1-1".to_owned()]);
    let (err, _) = produce(
        &mut raw,
        "idem",
        1,
        idempotent_batch(pid, epoch, seq, 1, "stale"),
    );
    assert_eq!(err, ResponseError::InvalidProducerEpoch.code());

    for r in real.join().unwrap() {
        r.expect("real producer delivered");
    }
    // The log holds every message exactly once, in order.
    let consumer = broker.consumer(&[]);
    let got = consume_n(&consumer, "idem", 2, 100_000 + raw_values.len());
    assert_eq!(got.len(), 100_000 + raw_values.len());
    let values = |p: i32| -> Vec<String> {
        got.iter()
            .filter(|r| r.partition == p)
            .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
            .collect()
    };
    let p0 = values(0);
    assert_eq!(p0.len(), 100_000);
    for (i, v) in p0.iter().enumerate() {
        assert_eq!(v, &format!("real-{i:06}"));
    }
    assert_eq!(values(1), raw_values);
}

#[test]
fn idempotent_producer_survives_kill_9_without_duplicates() {
    let mut broker = Broker::start(&["--cores", "2"]);
    broker.create_topic("idem-crash", 3, &[]);
    let producer = Arc::new(broker.producer(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", "5"),
        ("message.timeout.ms", "60000"),
        ("retry.backoff.ms", "50"),
    ]));
    const N: usize = 30_000;
    let sender = {
        let producer = producer.clone();
        std::thread::spawn(move || {
            let recs: Vec<Out> = (0..N)
                .map(|i| Out {
                    key: Some(format!("k{}", i % 31).into_bytes()),
                    value: Some(format!("m-{i:06}").into_bytes()),
                    ..Default::default()
                })
                .collect();
            produce_all(&producer, "idem-crash", &recs)
        })
    };
    // Crash once some deliveries are in, then come back on the same address.
    let deadline = Instant::now() + WAIT;
    while producer.context().out.lock().unwrap().len() < N / 5 {
        assert!(Instant::now() < deadline, "no progress before the crash");
        std::thread::sleep(Duration::from_millis(2));
    }
    broker.kill9();
    std::thread::sleep(Duration::from_millis(300));
    broker.restart();
    let results = sender.join().unwrap();
    for r in &results {
        r.as_ref()
            .expect("every message delivered despite the crash");
    }
    let got = consume_n(&broker.consumer(&[]), "idem-crash", 3, N);
    assert_eq!(got.len(), N, "no message lost");
    let mut seen = HashSet::new();
    for r in &got {
        assert!(
            seen.insert(r.value.clone().unwrap()),
            "duplicate {:?}",
            String::from_utf8_lossy(r.value.as_deref().unwrap())
        );
    }
    // Per key, messages stay in send order.
    let mut last: std::collections::HashMap<Vec<u8>, usize> = Default::default();
    for r in &got {
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        let i: usize = v[2..].parse().unwrap();
        if let Some(prev) = last.insert(r.key.clone().unwrap(), i) {
            assert!(prev < i, "order kept per key");
        }
    }
}

#[test]
fn a_retry_after_a_crash_or_restart_is_still_a_duplicate() {
    let mut broker = Broker::start(&[]);
    broker.create_topic("idem-restart", 1, &[]);
    let mut raw = Raw::connect(&broker.addr);
    let (pid, epoch) = init_producer_id(&mut raw, None);
    let first = idempotent_batch(pid, epoch, 0, 3, "a");
    let (err, base) = produce(&mut raw, "idem-restart", 0, first.clone());
    assert_eq!((err, base), (0, 0));
    let second = idempotent_batch(pid, epoch, 3, 3, "a");
    assert_eq!(produce(&mut raw, "idem-restart", 0, second.clone()), (0, 3));
    drop(raw);

    // Crash: producer state is rebuilt from the log tail.
    broker.kill9();
    broker.restart();
    let mut raw = Raw::connect(&broker.addr);
    assert_eq!(
        produce(&mut raw, "idem-restart", 0, second.clone()),
        (0, 3),
        "duplicate after kill -9"
    );
    assert_eq!(
        produce(&mut raw, "idem-restart", 0, first.clone()),
        (0, 0),
        "older duplicate too"
    );
    drop(raw);

    // Clean restart: producer state comes from the snapshot.
    assert_eq!(broker.stop(), Some(0));
    broker.restart();
    let mut raw = Raw::connect(&broker.addr);
    assert_eq!(
        produce(&mut raw, "idem-restart", 0, second),
        (0, 3),
        "duplicate after restart"
    );
    let (err, _) = produce(
        &mut raw,
        "idem-restart",
        0,
        idempotent_batch(pid, epoch, 9, 1, "a"),
    );
    assert_eq!(err, ResponseError::OutOfOrderSequenceNumber.code());
    assert_eq!(
        produce(
            &mut raw,
            "idem-restart",
            0,
            idempotent_batch(pid, epoch, 6, 1, "a")
        ),
        (0, 6)
    );
    // A new producer id is never one handed out before the restart.
    let (pid_after, _) = init_producer_id(&mut raw, None);
    assert!(pid_after > pid);
    let consumer = broker.consumer(&[]);
    assert_eq!(
        rdkafka::consumer::Consumer::fetch_watermarks(&consumer, "idem-restart", 0, WAIT).unwrap(),
        (0, 7)
    );
}
