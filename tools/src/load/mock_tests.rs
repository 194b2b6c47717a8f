//! End-to-end tests of whole runs against librdkafka's in-process mock cluster (real TCP on
//! loopback, real Kafka protocol). The mock has no CreateTopics, so topics are made through its
//! own API first. Assertions are on counts and shapes only, never on timings.

use clap::Parser;
use rdkafka::mocking::MockCluster;
use serde_json::Value;

use super::cli::{resolve, Cli};
use super::report;
use super::run::execute;
use super::LoadError;

fn report_for(args: &[&str]) -> Value {
    let mut all = vec!["sluice-load"];
    all.extend_from_slice(args);
    all.push("--quiet");
    let cfg = resolve(&Cli::try_parse_from(all).unwrap(), 42).unwrap();
    let outcome = execute(cfg).unwrap();
    let (report, _) = report::build(&outcome);
    serde_json::to_value(&report).unwrap()
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

#[test]
fn produce_then_consume_backlog() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("backlog", 3, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let b = bootstrap.as_str();

    let produced = report_for(&[
        "produce",
        "--bootstrap",
        b,
        "--topic",
        "backlog",
        "--messages",
        "20000",
        "--producers",
        "2",
        "--message-size",
        "200",
        "--compression",
        "lz4",
        "--keyed",
    ]);
    assert_eq!(u(&produced, "/results/produced/messages"), 20_000);
    assert_eq!(u(&produced, "/results/produced/errors"), 0);
    assert_eq!(u(&produced, "/results/produced/measured_messages"), 20_000);
    assert_eq!(u(&produced, "/results/consumed/messages"), 0);
    assert_eq!(produced["results"]["consumed"]["ran"], Value::Bool(false));
    assert_eq!(produced["results"]["stop_reason"], "messages");
    assert_eq!(u(&produced, "/results/latency_ms/count"), 20_000);
    assert!(produced["results"]["problems"]
        .as_array()
        .unwrap()
        .is_empty());

    let consumed = report_for(&[
        "consume",
        "--bootstrap",
        b,
        "--topic",
        "backlog",
        "--from-beginning",
        "--messages",
        "20000",
        "--consumers",
        "2",
    ]);
    assert_eq!(u(&consumed, "/results/consumed/messages"), 20_000);
    assert_eq!(u(&consumed, "/results/consumed/errors"), 0);
    assert_eq!(consumed["results"]["stop_reason"], "messages");
    assert_eq!(u(&consumed, "/results/topic/backlog_at_start"), 20_000);

    // Without --messages: stop when caught up with the end offsets seen at start.
    let caught_up = report_for(&[
        "consume",
        "--bootstrap",
        b,
        "--topic",
        "backlog",
        "--from-beginning",
        "--consumers",
        "3",
    ]);
    assert_eq!(u(&caught_up, "/results/consumed/messages"), 20_000);
    assert_eq!(caught_up["results"]["stop_reason"], "caught_up");
}

#[test]
fn e2e_fixed_rate_consumes_everything_produced() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("e2e", 4, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let r = report_for(&[
        "e2e",
        "--bootstrap",
        &bootstrap,
        "--topic",
        "e2e",
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--warmup",
        "500ms",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--message-size",
        "100",
    ]);
    // The fixed schedule sends exactly rate × (warmup + duration) messages.
    assert_eq!(u(&r, "/results/produced/messages"), 3000);
    assert_eq!(u(&r, "/results/produced/measured_messages"), 2000);
    assert_eq!(u(&r, "/results/consumed/messages"), 3000);
    assert_eq!(u(&r, "/results/consumed/measured_messages"), 2000);
    assert_eq!(u(&r, "/results/missing"), 0);
    assert_eq!(u(&r, "/results/errors"), 0);
    assert_eq!(r["results"]["latency_kind"], "end_to_end");
    assert_eq!(u(&r, "/results/latency_ms/count"), 2000);
}

#[test]
fn e2e_with_group() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("grp", 2, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let r = report_for(&[
        "e2e",
        "--bootstrap",
        &bootstrap,
        "--topic",
        "grp",
        "--group",
        "g1",
        "--messages",
        "500",
        "--consumers",
        "2",
        // The mock coordinator has no early completion: a member joining after the 3 s
        // initial window holds the rebalance for session.timeout.ms - 1 s (44 s by default),
        // longer than the load generator's 30 s join bound. A short session keeps a late join
        // (a loaded CI machine) within it.
        "-X",
        "session.timeout.ms=6000",
    ]);
    assert_eq!(u(&r, "/results/produced/messages"), 500);
    assert_eq!(u(&r, "/results/consumed/messages"), 500);
    assert_eq!(u(&r, "/results/missing"), 0);
}

#[test]
fn json_shape() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("shape", 1, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let r = report_for(&[
        "produce",
        "--bootstrap",
        &bootstrap,
        "--topic",
        "shape",
        "--messages",
        "10",
        "-X",
        "client.id=shape-test",
    ]);
    for key in [
        "schema_version",
        "tool",
        "mode",
        "config",
        "machine",
        "results",
    ] {
        assert!(r.get(key).is_some(), "top-level {key} missing");
    }
    assert_eq!(r["mode"], "produce");
    for path in [
        "/results/produced/messages",
        "/results/produced/errors",
        "/results/consumed/messages",
        "/results/consumed/errors",
        "/results/throughput_msgs_per_sec",
        "/results/throughput_mb_per_sec",
        "/results/latency_ms/p50",
        "/results/latency_ms/p99",
        "/results/latency_ms/p999",
        "/results/latency_ms/p9999",
        "/results/latency_ms/max",
        "/results/latency_ms/mean",
        "/results/duration_s",
        "/machine/cpu_count",
        "/config/topic",
        "/config/seed",
        "/config/producer_client_config/bootstrap.servers",
    ] {
        assert!(r.pointer(path).is_some(), "{path} missing in {r:#}");
    }
    assert_eq!(
        r["config"]["producer_client_config"]["client.id"],
        "shape-test"
    );
    assert_eq!(r["config"]["consumer_client_config"], Value::Null);
    assert_eq!(r["config"]["acks"], "all");
    assert_eq!(r["config"]["compression"], "none");
}

#[test]
fn unreachable_bootstrap_fails_within_the_timeout() {
    // Port 1 on loopback: nothing listens there.
    let cfg = resolve(
        &Cli::try_parse_from([
            "sluice-load",
            "produce",
            "--bootstrap",
            "127.0.0.1:1",
            "--connect-timeout",
            "1s",
        ])
        .unwrap(),
        1,
    )
    .unwrap();
    match execute(cfg) {
        Err(LoadError::Unreachable { .. }) => {}
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a run against nothing succeeded"),
    }
}
