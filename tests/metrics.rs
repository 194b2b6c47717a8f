//! The metrics endpoint during a real-client produce/consume run: request counters match what
//! the client sent, partition offsets match, group lag goes to 0 once the group caught up, and
//! the output parses as Prometheus text format. Also /ready and /live.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{CommitMode, Consumer};

fn get(addr: &str, path: &str) -> (u16, String) {
    http_get(addr, path)
}

/// Parses the text format strictly enough to catch malformed output: every sample line is
/// `name{labels} value` with a known TYPE; returns series → value.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let name = series.split('{').next().unwrap();
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            types.contains_key(name) || types.contains_key(base),
            "sample without TYPE: {line}"
        );
        assert!(name.starts_with("sluice_"), "{line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once('=').expect("label");
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(v.starts_with('"'), "{line}");
                }
            }
        }
        out.insert(
            series.to_owned(),
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("value in {line}")),
        );
    }
    out
}

fn sum_prefix(m: &HashMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_follow_a_real_produce_consume_run() {
    // No tail cache: the consumer's fetches read the disk.
    let broker = Broker::start(&["--cores", "2", "--tail-cache-bytes", "0"]);
    assert_eq!(get(&broker.metrics_addr, "/live").0, 200);
    assert_eq!(get(&broker.metrics_addr, "/ready").0, 200);
    assert_eq!(get(&broker.metrics_addr, "/nope").0, 404);
    broker.create_topic("m", 2, &[]);
    let before = parse(&get(&broker.metrics_addr, "/metrics").1);
    let produce_before = sum_prefix(&before, "sluice_requests_total{api=\"Produce\"");

    // One message per request: linger 0 and waiting for each delivery.
    let producer = broker.producer(&[("linger.ms", "0"), ("acks", "all")]);
    for i in 0..20 {
        let r = produce_all(
            &producer,
            "m",
            &[Out {
                partition: Some(i % 2),
                value: Some(vec![i as u8; 100]),
                ..Default::default()
            }],
        );
        r[0].as_ref().expect("delivered");
    }
    let after = parse(&get(&broker.metrics_addr, "/metrics").1);
    assert_eq!(
        sum_prefix(&after, "sluice_requests_total{api=\"Produce\"") - produce_before,
        20.0,
        "one Produce request per message"
    );
    assert_eq!(
        after["sluice_partition_log_end_offset{topic=\"m\",partition=\"0\"}"],
        10.0
    );
    assert_eq!(
        after["sluice_partition_high_watermark{topic=\"m\",partition=\"1\"}"],
        10.0
    );
    assert!(
        sum_prefix(
            &after,
            "sluice_request_handling_seconds_count{api=\"Produce\""
        ) >= 20.0
    );
    assert!(sum_prefix(&after, "sluice_received_bytes_total") > 2000.0);
    assert!(sum_prefix(&after, "sluice_io_uring_writes_total") >= 1.0);
    // Every write is timed (acks=all with --flush never waits for each one).
    assert_eq!(
        sum_prefix(&after, "sluice_log_write_seconds_count"),
        sum_prefix(&after, "sluice_io_uring_writes_total"),
    );
    assert_eq!(
        sum_prefix(
            &after,
            "sluice_log_write_seconds_bucket{shard=\"0\",le=\"+Inf\"}"
        ) + sum_prefix(
            &after,
            "sluice_log_write_seconds_bucket{shard=\"1\",le=\"+Inf\"}"
        ),
        sum_prefix(&after, "sluice_log_write_seconds_count"),
    );
    assert!(sum_prefix(&after, "sluice_connections_accepted_total") >= 1.0);

    // A group consumes everything and commits: lag goes to 0.
    let consumer = broker.consumer(&[
        ("group.id", "metrics-group"),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.offset.store", "true"),
    ]);
    consumer.subscribe(&["m"]).unwrap();
    let mut n = 0;
    let deadline = Instant::now() + WAIT;
    while n < 20 && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            n += 1;
        }
    }
    assert_eq!(n, 20);
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let m = parse(&get(&broker.metrics_addr, "/metrics").1);
    assert_eq!(
        m["sluice_group_committed_offset{group=\"metrics-group\",topic=\"m\",partition=\"0\"}"],
        10.0
    );
    assert_eq!(
        m["sluice_group_lag{group=\"metrics-group\",topic=\"m\",partition=\"0\"}"],
        0.0
    );
    assert_eq!(
        m["sluice_group_lag{group=\"metrics-group\",topic=\"m\",partition=\"1\"}"],
        0.0
    );
    assert_eq!(m["sluice_group_members{group=\"metrics-group\"}"], 1.0);
    assert!(sum_prefix(&m, "sluice_requests_total{api=\"Fetch\"") >= 1.0);
    // Each partition's 10 messages came from the disk, in at least one read each.
    assert!(sum_prefix(&m, "sluice_log_disk_read_seconds_count") >= 2.0);
    assert!(m.contains_key("sluice_reactor_stall_seconds_count{shard=\"0\"}"));
    // Every probe is in both stall histograms.
    assert_eq!(
        m["sluice_reactor_own_stall_seconds_count{shard=\"0\"}"],
        m["sluice_reactor_stall_seconds_count{shard=\"0\"}"]
    );
    // Read from the kernel's schedstat where it has one (Linux with CONFIG_SCHEDSTATS).
    assert!(m.contains_key("sluice_reactor_cpu_wait_seconds_total{shard=\"0\"}"));
    if std::path::Path::new("/proc/thread-self/schedstat").exists() {
        // Every wake-up of a thread waits a little for its CPU.
        assert!(sum_prefix(&m, "sluice_reactor_cpu_wait_seconds_total") > 0.0);
    }
    // Produce errors are counted by code (3 = UNKNOWN_TOPIC_OR_PARTITION).
    let mut raw = common::raw::Raw::connect(&broker.addr);
    let req = kafka_protocol::messages::ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            kafka_protocol::messages::produce_request::TopicProduceData::default()
                .with_name(kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_static_str("m"),
                ))
                .with_partition_data(vec![
                    kafka_protocol::messages::produce_request::PartitionProduceData::default()
                        .with_index(9)
                        .with_records(Some(common::raw::idempotent_batch(-1, -1, 0, 1, "x"))),
                ]),
        ]);
    let resp: kafka_protocol::messages::ProduceResponse =
        raw.call(kafka_protocol::messages::ApiKey::Produce, 9, &req);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 3);
    let m = parse(&get(&broker.metrics_addr, "/metrics").1);
    assert_eq!(
        m["sluice_request_errors_total{api=\"Produce\",code=\"3\"}"],
        1.0
    );
}

#[test]
fn metrics_can_be_turned_off_and_a_bad_address_is_refused() {
    let broker = Broker::start(&["--metrics-listen", "none"]);
    assert!(broker.metrics_addr.is_empty());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--metrics-listen",
            "nowhere",
            "--data-dir",
            "/nonexistent-sluice-dir",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-listen"));
}
