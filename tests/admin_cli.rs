//! The admin CLI (`sluice topic|group|cluster|produce|consume`) as a user runs it: the real
//! binary against the real broker, asserting on its output (tables and `--format json`) and
//! exit codes. Consumer groups with committed offsets come from real rdkafka consumers.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// Runs `sluice ARGS... --bootstrap ADDR` with an optional stdin; bounded by the CLI's own
/// `--timeout-ms` (and a kill after [`WAIT`] as a last resort).
fn cli_in(addr: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--bootstrap")
        .arg(addr)
        .arg("--timeout-ms")
        .arg("10000")
        .env_remove("SLUICE_BOOTSTRAP")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice cli");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(input.as_bytes()).expect("write stdin");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "sluice {args:?} did not finish within {WAIT:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn cli(addr: &str, args: &[&str]) -> Output {
    cli_in(addr, args, None)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and expects exit 0; returns stdout.
fn ok(addr: &str, args: &[&str]) -> String {
    let o = cli(addr, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "sluice {args:?}: stdout {} stderr {}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs with `--format json` and parses stdout.
fn json(addr: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let out = ok(addr, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

#[test]
fn broker_flags_alone_still_start_the_broker_and_help_lists_subcommands() {
    // The harness starts the broker with flags only; that it answers proves the old path.
    let broker = Broker::start(&["--cores", "2"]);
    let info = json(&broker.addr, &["cluster", "info"]);
    assert_eq!(info["brokers"].as_array().map(Vec::len), Some(1));
    let help = Command::new(BIN).arg("--help").output().expect("help");
    let text = String::from_utf8_lossy(&help.stdout);
    for sub in [
        "topic", "group", "cluster", "produce", "consume", "--listen",
    ] {
        assert!(text.contains(sub), "help lacks {sub}: {text}");
    }
}

#[test]
fn topic_lifecycle() {
    let broker = Broker::start(&["--cores", "2"]);
    let a = broker.addr.as_str();

    let out = ok(
        a,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
    );
    assert!(
        out.contains("Created topic \"orders\" with 3 partitions"),
        "{out}"
    );
    let created = json(a, &["topic", "create", "events", "-p", "2"]);
    assert_eq!(created["partitions"], 2);
    assert_eq!(created["created"], true);

    // Again: an error, unless --if-not-exists.
    let again = cli(a, &["topic", "create", "orders", "--partitions", "3"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("TOPIC_ALREADY_EXISTS"),
        "{}",
        stderr(&again)
    );
    ok(a, &["topic", "create", "orders", "--if-not-exists"]);

    let table = ok(a, &["topic", "list"]);
    assert!(table.starts_with("TOPIC"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("orders ") && l.contains(" 3")),
        "{table}"
    );
    let list = json(a, &["topic", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .collect();
    assert_eq!(names, vec!["events", "orders"]);

    let d = json(a, &["topic", "describe", "orders"]);
    let d = &d[0];
    assert_eq!(d["topic"], "orders");
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(3));
    assert_eq!(d["partitions"][0]["log_end_offset"], 0);
    let retention = d["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .expect("retention.ms listed");
    assert_eq!(retention["value"], "3600000");
    assert_eq!(retention["source"], "DYNAMIC_TOPIC_CONFIG");
    let text = ok(a, &["topic", "describe", "orders"]);
    assert!(text.contains("Configs: retention.ms=3600000"), "{text}");
    assert!(text.contains("LOG-END-OFFSET"), "{text}");

    let altered = ok(
        a,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=7200000",
            "--set",
            "cleanup.policy=delete",
        ],
    );
    assert!(altered.contains("retention.ms=7200000"), "{altered}");
    let d = json(a, &["topic", "describe", "orders"]);
    let value = |d: &Value, k: &str| {
        d[0]["configs"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == k).cloned())
    };
    assert_eq!(value(&d, "retention.ms").expect("set")["value"], "7200000");
    ok(
        a,
        &[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "retention.ms",
        ],
    );
    let d = json(a, &["topic", "describe", "orders"]);
    assert_ne!(
        value(&d, "retention.ms").expect("listed")["source"],
        "DYNAMIC_TOPIC_CONFIG"
    );

    let grown = json(a, &["topic", "add-partitions", "orders", "--total", "5"]);
    assert_eq!(grown["partitions"], 5);
    assert_eq!(grown["partitions_before"], 3);
    ok(a, &["topic", "add-partitions", "orders", "--add", "1"]);
    let d = json(a, &["topic", "describe", "orders"]);
    assert_eq!(d[0]["partitions"].as_array().map(Vec::len), Some(6));
    let shrink = cli(a, &["topic", "add-partitions", "orders", "--total", "2"]);
    assert_eq!(shrink.status.code(), Some(2), "{}", stderr(&shrink));

    let deleted = ok(a, &["topic", "delete", "orders"]);
    assert!(deleted.contains("Deleted topic \"orders\""), "{deleted}");
    let list = json(a, &["topic", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let gone = cli(a, &["topic", "delete", "orders"]);
    assert_eq!(gone.status.code(), Some(1));
    ok(a, &["topic", "delete", "orders", "--if-exists"]);
}

#[test]
fn errors_are_one_line_with_exit_codes() {
    let broker = Broker::start(&["--cores", "2"]);
    let a = broker.addr.as_str();

    let o = cli(a, &["topic", "describe", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("unknown topic \"nope\""), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let o = cli(a, &["consume", "nope", "--count", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown topic"), "{}", stderr(&o));

    // Usage errors: exit 2 (clap's and ours).
    let o = cli(a, &["topic", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = cli(a, &["topic", "create", "t", "--config", "novalue"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = cli(a, &["group", "reset-offsets", "g", "--all-topics"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Nothing listens: exit 1, quickly, with the address in the message.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let o = cli(&closed, &["topic", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&closed), "{}", stderr(&o));

    // A peer that accepts but never answers: exit 1 within the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let start = Instant::now();
    let o = Command::new(BIN)
        .args([
            "cluster",
            "info",
            "--bootstrap",
            &silent_addr,
            "--timeout-ms",
            "500",
        ])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no response within 500 ms"),
        "{}",
        stderr(&o)
    );
    assert!(start.elapsed() < WAIT);
    drop(silent);
}

#[test]
fn produce_then_consume() {
    let broker = Broker::start(&["--cores", "2"]);
    let a = broker.addr.as_str();
    ok(a, &["topic", "create", "t", "--partitions", "2"]);

    // Values as arguments, a fixed key, headers, a chosen partition.
    let p = json(
        a,
        &[
            "produce", "t", "one", "two", "--key", "k1", "-H", "h1=v1", "-H", "h2=v2", "-p", "1",
        ],
    );
    assert_eq!(p["records"], 2);
    assert_eq!(p["partitions"][0]["partition"], 1);
    assert_eq!(p["partitions"][0]["first_offset"], 0);
    assert_eq!(p["partitions"][0]["last_offset"], 1);

    // Lines from stdin with a key separator.
    let o = cli_in(
        a,
        &["produce", "t", "--key-separator", ":", "--partition", "0"],
        Some("a:alpha\nb:beta\nc:gamma\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("Produced 3 records"), "{}", stdout(&o));

    // A line without the separator is a usage error.
    let o = cli_in(
        a,
        &["produce", "t", "--key-separator", ":"],
        Some("nosep\n"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // rdkafka sees what the CLI produced.
    let recs = consume_n(&broker.consumer(&[]), "t", 2, 5);
    assert_eq!(recs.len(), 5);
    let keyed: Vec<_> = recs.iter().filter(|r| r.partition == 1).collect();
    assert_eq!(keyed[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(
        keyed[0].headers,
        vec![
            ("h1".to_owned(), Some(b"v1".to_vec())),
            ("h2".to_owned(), Some(b"v2".to_vec()))
        ]
    );

    // Consume: from the beginning, a count, keys and headers.
    let out = ok(
        a,
        &[
            "consume",
            "t",
            "--partition",
            "0",
            "--from-beginning",
            "--count",
            "3",
            "--print-key",
            "--key-separator",
            "=",
        ],
    );
    assert_eq!(out, "a=alpha\nb=beta\nc=gamma\n");
    let out = ok(
        a,
        &[
            "consume",
            "t",
            "-p",
            "1",
            "--from-beginning",
            "-n",
            "1",
            "--print-headers",
        ],
    );
    assert_eq!(out, "h1=v1,h2=v2\tone\n");
    let out = ok(
        a,
        &[
            "consume",
            "t",
            "--from-beginning",
            "--count",
            "2",
            "-p",
            "0",
            "--format",
            "json",
        ],
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["key"], "a");
    assert_eq!(lines[0]["value"], "alpha");
    assert_eq!(lines[0]["offset"], 0);
    assert_eq!(lines[1]["offset"], 1);

    // --exit-at-end reads everything and stops; --offset starts mid-partition.
    let out = ok(a, &["consume", "t", "--from-beginning", "--exit-at-end"]);
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    assert_eq!(got, vec!["alpha", "beta", "gamma", "one", "two"]);
    let out = ok(a, &["consume", "t", "-p", "0", "--offset", "2", "-e"]);
    assert_eq!(out, "gamma\n");

    // Without --from-beginning only new records come: none here, so --exit-at-end prints none.
    let out = ok(a, &["consume", "t", "-e"]);
    assert_eq!(out, "");

    // Keyed records land where Kafka's default partitioner puts them (murmur2).
    let p = json(a, &["produce", "t", "x", "--key", "k1"]);
    let rd = broker.producer(&[]);
    let d = produce_all(
        &rd,
        "t",
        &[Out {
            key: Some(b"k1".to_vec()),
            value: Some(b"y".to_vec()),
            ..Default::default()
        }],
    );
    assert_eq!(
        p["partitions"][0]["partition"].as_i64(),
        d[0].as_ref().ok().map(|(p, _)| i64::from(*p))
    );
}

#[test]
fn cluster_info() {
    let broker = Broker::start(&["--cores", "2"]);
    let a = broker.addr.as_str();
    ok(a, &["topic", "create", "x"]);
    let info = json(a, &["cluster", "info"]);
    let port: i64 = a
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert_eq!(info["brokers"][0]["node_id"], 0);
    assert_eq!(info["brokers"][0]["port"], port);
    assert_eq!(info["controller_id"], 0);
    assert_eq!(info["topics"], 1);
    assert!(info["cluster_id"].as_str().is_some_and(|s| !s.is_empty()));
    let text = ok(a, &["cluster", "info"]);
    assert!(text.contains("Cluster: "), "{text}");
    assert!(text.contains("NODE"), "{text}");
}

/// Polls `consumer` until it has an assignment and `n` records, bounded by [`WAIT`].
fn poll_records(consumer: &BaseConsumer, n: usize) {
    let deadline = Instant::now() + WAIT;
    let mut got = 0;
    while got < n {
        assert!(Instant::now() < deadline, "got {got} of {n} records");
        if let Some(r) = consumer.poll(Duration::from_millis(100)) {
            r.expect("consume");
            got += 1;
        }
    }
}

#[test]
fn groups_list_describe_reset_delete() {
    let broker = Broker::start(&["--cores", "2"]);
    let a = broker.addr.as_str();
    ok(a, &["topic", "create", "g-topic", "--partitions", "2"]);
    ok(
        a,
        &["produce", "g-topic", "r0", "r1", "r2", "r3", "-p", "0"],
    );
    ok(a, &["produce", "g-topic", "s0", "s1", "-p", "1"]);

    let consumer = broker.consumer(&[
        ("group.id", "g1"),
        ("client.id", "cli-test"),
        ("enable.auto.offset.store", "true"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ]);
    consumer.subscribe(&["g-topic"]).expect("subscribe");
    poll_records(&consumer, 6);
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");

    let list = json(a, &["group", "list"]);
    let g1 = list
        .as_array()
        .expect("array")
        .iter()
        .find(|g| g["group"] == "g1")
        .cloned()
        .expect("g1 listed");
    assert_eq!(g1["state"], "Stable");
    assert!(ok(a, &["group", "list"]).contains("g1"));

    // Live member: describe shows it, its assignment and zero lag.
    let d = json(a, &["group", "describe", "g1"]);
    let d = &d[0];
    assert_eq!(d["state"], "Stable");
    assert_eq!(d["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(d["members"][0]["client_id"], "cli-test");
    let assigned = &d["members"][0]["assignment"][0];
    assert_eq!(assigned["topic"], "g-topic");
    assert_eq!(assigned["partitions"], serde_json::json!([0, 1]));
    let offsets = d["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 2);
    assert_eq!(offsets[0]["committed_offset"], 4);
    assert_eq!(offsets[0]["log_end_offset"], 4);
    assert_eq!(offsets[0]["lag"], 0);
    assert_eq!(offsets[1]["committed_offset"], 2);
    assert!(offsets[0]["member_id"].as_str().is_some());
    let text = ok(a, &["group", "describe", "g1"]);
    assert!(text.contains("LAG") && text.contains("cli-test"), "{text}");

    // Reset and delete refuse a group with members.
    let o = cli(
        a,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--all-topics",
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    let o = cli(a, &["group", "delete", "g1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    // The member leaves: the group is Empty and its offsets stay.
    consumer.unsubscribe();
    drop(consumer);
    let deadline = Instant::now() + WAIT;
    loop {
        let d = json(a, &["group", "describe", "g1"]);
        if d[0]["state"] == "Empty" {
            break;
        }
        assert!(Instant::now() < deadline, "group never became Empty: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Dry run (default): prints the plan, commits nothing.
    let plan = json(
        a,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--all-topics",
            "--to-earliest",
        ],
    );
    assert_eq!(plan["executed"], false);
    assert_eq!(plan["partitions"][0]["current_offset"], 4);
    assert_eq!(plan["partitions"][0]["new_offset"], 0);
    let text = ok(
        a,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "g-topic",
            "--to-earliest",
            "--dry-run",
        ],
    );
    assert!(text.contains("Dry run"), "{text}");
    let d = json(a, &["group", "describe", "g1"]);
    assert_eq!(d[0]["offsets"][0]["committed_offset"], 4);

    // --to-earliest --execute.
    let done = json(
        a,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--all-topics",
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(done["executed"], true);
    let d = json(a, &["group", "describe", "g1"]);
    assert_eq!(d[0]["offsets"][0]["committed_offset"], 0);
    assert_eq!(d[0]["offsets"][0]["lag"], 4);
    assert_eq!(d[0]["offsets"][1]["committed_offset"], 0);

    // --to-offset on one partition, clamped to the log end.
    ok(
        a,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "g-topic:0",
            "--to-offset",
            "3",
            "--execute",
        ],
    );
    ok(
        a,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "g-topic:1",
            "--to-offset",
            "99",
            "--execute",
        ],
    );
    let d = json(a, &["group", "describe", "g1"]);
    assert_eq!(d[0]["offsets"][0]["committed_offset"], 3);
    assert_eq!(d[0]["offsets"][1]["committed_offset"], 2);

    // --to-latest.
    ok(
        a,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "g-topic",
            "--to-latest",
            "--execute",
        ],
    );
    let d = json(a, &["group", "describe", "g1"]);
    assert_eq!(d[0]["offsets"][0]["committed_offset"], 4);
    assert_eq!(d[0]["offsets"][0]["lag"], 0);

    // A consumer of the group resumes where the reset put it.
    ok(
        a,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "g-topic:0",
            "--to-offset",
            "2",
            "--execute",
        ],
    );
    let consumer = broker.consumer(&[("group.id", "g1"), ("session.timeout.ms", "6000")]);
    consumer.subscribe(&["g-topic"]).expect("subscribe");
    let deadline = Instant::now() + WAIT;
    let first = loop {
        assert!(Instant::now() < deadline, "no record after reset");
        if let Some(r) = consumer.poll(Duration::from_millis(100)) {
            break own(&r.expect("consume"));
        }
    };
    assert_eq!((first.partition, first.offset), (0, 2));
    consumer.unsubscribe();
    drop(consumer);

    // Delete, once empty again.
    let deadline = Instant::now() + WAIT;
    loop {
        let o = cli(a, &["group", "delete", "g1"]);
        if o.status.code() == Some(0) {
            assert!(stdout(&o).contains("Deleted group \"g1\""));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delete kept failing: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = json(a, &["group", "list"]);
    assert!(
        !list
            .as_array()
            .expect("array")
            .iter()
            .any(|g| g["group"] == "g1"),
        "{list}"
    );
    let o = cli(a, &["group", "describe", "g1"]);
    assert_eq!(o.status.code(), Some(1));
}
