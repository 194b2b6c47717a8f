//! Transactions through librdkafka (rdkafka): commit and abort seen by read_committed and
//! read_uncommitted consumers, the last stable offset held by an open transaction, a zombie
//! producer fenced by a new one with the same transactional id, a transaction the coordinator
//! aborts when it times out, and a consume-transform-produce loop that keeps exactly-once
//! output and offsets across aborted transactions and two SIGKILLs of the broker.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{Broker, WAIT};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A producer polled by its own thread (delivery reports must be served before an abort).
type TxnProducer = ThreadedProducer<DefaultProducerContext>;

fn txn_producer(broker: &Broker, id: &str, extra: &[(&str, &str)]) -> TxnProducer {
    let mut c: ClientConfig = broker.client_config();
    c.set("transactional.id", id)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let p: TxnProducer = c.create().expect("transactional producer");
    p.init_transactions(TXN_TIMEOUT).expect("init_transactions");
    p
}

fn send(p: &TxnProducer, topic: &str, partition: i32, value: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = BaseRecord::<(), str>::to(topic)
            .partition(partition)
            .payload(value);
        match p.send(r) {
            Ok(()) => return,
            Err((e, _)) if Instant::now() > deadline => panic!("send: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Everything a consumer with `isolation` reads from `topic` (partitions `0..partitions`),
/// until `n` values came or WAIT passed.
fn read_values(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    isolation: &str,
    n: usize,
) -> Vec<String> {
    let c = broker.consumer(&[("isolation.level", isolation)]);
    common::consume_n(&c, topic, partitions, n)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap_or_default()).expect("utf-8"))
        .collect()
}

/// (read_committed high watermark = the last stable offset, read_uncommitted high watermark).
fn watermarks(broker: &Broker, topic: &str, partition: i32) -> (i64, i64) {
    let rc = broker.consumer(&[("isolation.level", "read_committed")]);
    let ru = broker.consumer(&[("isolation.level", "read_uncommitted")]);
    let (_, lso) = rc
        .fetch_watermarks(topic, partition, WAIT)
        .expect("read_committed watermarks");
    let (_, hw) = ru
        .fetch_watermarks(topic, partition, WAIT)
        .expect("read_uncommitted watermarks");
    (lso, hw)
}

#[test]
fn commit_abort_and_the_last_stable_offset() {
    let broker = Broker::start(&[]);
    broker.create_topic("t", 3, &[]);
    let p = txn_producer(&broker, "tx-basic", &[]);
    p.begin_transaction().unwrap();
    for i in 0..30 {
        send(&p, "t", i % 3, &format!("a{i}"));
    }
    p.commit_transaction(TXN_TIMEOUT).unwrap();
    p.begin_transaction().unwrap();
    for i in 0..20 {
        send(&p, "t", i % 3, &format!("b{i}"));
    }
    p.flush(TXN_TIMEOUT).unwrap();
    p.abort_transaction(TXN_TIMEOUT).unwrap();

    // An open transaction on partition 0 holds its last stable offset back; a plain record
    // written after it stays invisible to read_committed consumers until the commit.
    p.begin_transaction().unwrap();
    for i in 0..10 {
        send(&p, "t", 0, &format!("c{i}"));
    }
    p.flush(TXN_TIMEOUT).unwrap();
    let plain = broker.producer(&[]);
    common::produce_all(
        &plain,
        "t",
        &[common::Out {
            partition: Some(0),
            value: Some(b"plain".to_vec()),
            ..Default::default()
        }],
    )
    .into_iter()
    .for_each(|d| {
        d.expect("plain record delivered");
    });
    let (lso, hw) = watermarks(&broker, "t", 0);
    // Partition 0: a0..a27 step 3 (10) + commit marker, b.. (7) + abort marker, then c0..c9.
    assert_eq!(lso, 19, "the open transaction's first offset");
    assert_eq!(hw, 19 + 10 + 1, "its ten records and the plain one");
    p.commit_transaction(TXN_TIMEOUT).unwrap();
    // EndTxn answers once the decision is durable; the markers follow.
    let deadline = Instant::now() + WAIT;
    loop {
        let (lso, hw) = watermarks(&broker, "t", 0);
        if lso == hw {
            assert_eq!(hw, 19 + 10 + 1 + 1, "the commit marker is the last offset");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the commit never reached partition 0"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let committed = read_values(&broker, "t", 3, "read_committed", 41);
    let mut want: Vec<String> = (0..30).map(|i| format!("a{i}")).collect();
    want.extend((0..10).map(|i| format!("c{i}")));
    want.push("plain".into());
    let mut got = committed.clone();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "read_committed: the committed records, none aborted"
    );
    let all = read_values(&broker, "t", 3, "read_uncommitted", 61);
    assert_eq!(
        all.len(),
        61,
        "read_uncommitted sees the aborted records too"
    );
    assert_eq!(all.iter().filter(|v| v.starts_with('b')).count(), 20);
}

#[test]
fn a_new_producer_fences_the_zombie() {
    let broker = Broker::start(&[]);
    broker.create_topic("z", 1, &[]);
    let zombie = txn_producer(&broker, "tx-zombie", &[]);
    zombie.begin_transaction().unwrap();
    send(&zombie, "z", 0, "zombie");
    zombie.flush(TXN_TIMEOUT).unwrap();
    // The new instance's InitProducerId aborts the zombie's transaction and bumps the epoch.
    let fresh = txn_producer(&broker, "tx-zombie", &[]);
    fresh.begin_transaction().unwrap();
    send(&fresh, "z", 0, "fresh");
    fresh.commit_transaction(TXN_TIMEOUT).unwrap();
    match zombie.commit_transaction(TXN_TIMEOUT) {
        Err(KafkaError::Transaction(e)) => assert!(e.is_fatal(), "fenced is fatal: {e}"),
        other => panic!("the zombie's commit must fail as fenced: {other:?}"),
    }
    // The zombie's record came first (offset 0): read_committed must skip it.
    let got = read_values(&broker, "z", 1, "read_committed", 1);
    assert_eq!(got, vec!["fresh".to_owned()]);
}

#[test]
fn the_coordinator_aborts_a_transaction_that_times_out() {
    let broker = Broker::start(&[]);
    broker.create_topic("slow", 1, &[]);
    let p = txn_producer(
        &broker,
        "tx-slow",
        &[
            ("transaction.timeout.ms", "2000"),
            ("socket.timeout.ms", "1500"),
            ("message.timeout.ms", "2000"),
        ],
    );
    p.begin_transaction().unwrap();
    send(&p, "slow", 0, "late");
    p.flush(TXN_TIMEOUT).unwrap();
    // The coordinator aborts it (timeout 2 s, checked every second): the abort marker makes the
    // partition stable again.
    let deadline = Instant::now() + WAIT;
    loop {
        let (lso, hw) = watermarks(&broker, "slow", 0);
        if lso == hw {
            assert_eq!(hw, 2, "the record and the abort marker");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transaction was never aborted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        p.commit_transaction(TXN_TIMEOUT).is_err(),
        "a commit after the coordinator aborted the transaction fails"
    );
    // A committed record after it: read_committed reads it and nothing of the aborted one.
    let next = txn_producer(&broker, "tx-after", &[]);
    next.begin_transaction().unwrap();
    send(&next, "slow", 0, "after");
    next.commit_transaction(TXN_TIMEOUT).unwrap();
    assert_eq!(
        read_values(&broker, "slow", 1, "read_committed", 1),
        vec!["after".to_owned()]
    );
}

/// One consume-transform-produce step's outcome.
enum Step {
    /// Nothing to consume this time.
    Idle,
    Committed(usize),
    Aborted,
    /// The producer must be recreated (fatal error, or the broker went away).
    Reset,
}

/// `send_offsets_to_transaction` on a thread of its own, waited for a little longer than its
/// timeout; `None` if it did not return by then. librdkafka can wait for ever there when the
/// group coordinator it cached was a broker that left the Metadata answer while it was down
/// (librdkafka issues #5511 and #5456: the coordinator request's timeout is never checked, and
/// the cached broker's thread is gone). The producer is then left to that thread: the caller
/// starts a new one, which fences it.
fn send_offsets_bounded(
    producer: &Arc<TxnProducer>,
    positions: TopicPartitionList,
    meta: ConsumerGroupMetadata,
) -> Option<Result<(), KafkaError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = Arc::clone(producer);
    std::thread::spawn(move || {
        let _ = tx.send(p.send_offsets_to_transaction(&positions, &meta, TXN_TIMEOUT));
    });
    rx.recv_timeout(TXN_TIMEOUT + Duration::from_secs(10)).ok()
}

/// Drops `client` on a thread of its own: closing a librdkafka client whose cached
/// coordinator went away can block (as above), and the test goes on with a new one.
fn abandon<T: Send + 'static>(client: T) {
    std::thread::spawn(move || drop(client));
}

fn ctp_step(consumer: &BaseConsumer, producer: &Arc<TxnProducer>, abort: bool) -> Step {
    let mut batch = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(500);
    while batch.len() < 25 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            batch.push((
                m.partition(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    if batch.is_empty() {
        return Step::Idle;
    }
    let outcome = (|| -> Result<Step, KafkaError> {
        producer.begin_transaction()?;
        for (partition, v) in &batch {
            let r = BaseRecord::<(), str>::to("ctp-out")
                .partition(*partition)
                .payload(v.as_str());
            producer.send(r).map_err(|(e, _)| e)?;
        }
        let positions = consumer.position()?;
        let meta = consumer
            .group_metadata()
            .ok_or(KafkaError::Subscription("no group metadata".into()))?;
        let Some(sent) = send_offsets_bounded(producer, positions, meta) else {
            eprintln!("send_offsets_to_transaction did not return; a new producer");
            return Ok(Step::Reset);
        };
        sent?;
        if abort {
            // Written first (an abort purges what the client has not sent yet), so the
            // output holds aborted records that read_committed must skip.
            producer.flush(TXN_TIMEOUT)?;
            producer.abort_transaction(TXN_TIMEOUT)?;
            return Ok(Step::Aborted);
        }
        // A retriable failure (a timeout, a coordinator moving) leaves the commit's outcome
        // open: librdkafka asks for commit_transaction again, which finishes it either way.
        let mut tries = 0;
        loop {
            match producer.commit_transaction(TXN_TIMEOUT) {
                Ok(()) => return Ok(Step::Committed(batch.len())),
                Err(KafkaError::Transaction(e)) if e.is_retriable() && tries < 3 => {
                    eprintln!("commit_transaction: {e}; again");
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    })();
    match outcome {
        Ok(s) => s,
        Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
            eprintln!("transaction failed ({e}); aborting it");
            match producer.abort_transaction(TXN_TIMEOUT) {
                Ok(()) => Step::Aborted,
                Err(e) => {
                    eprintln!("abort failed: {e}");
                    Step::Reset
                }
            }
        }
        Err(e) => {
            eprintln!("transaction failed ({e}); a new producer");
            Step::Reset
        }
    }
}

/// The sum of the offsets the checker's group committed on `topic`'s partitions `0..partitions`.
fn committed_total(checker: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(committed) = checker.committed_offsets(tpl, WAIT) else {
        return -1;
    };
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// Seeks every assigned partition back to the group's committed offset (after an abort).
/// An error (the coordinator moving, a partition revoked meanwhile) is returned: the caller
/// then starts a new consumer, which begins at the committed offsets. Carrying on from the
/// aborted batch's positions would skip its records.
fn rewind(consumer: &BaseConsumer) -> Result<(), String> {
    let assignment = consumer
        .assignment()
        .map_err(|e| format!("assignment: {e}"))?;
    let committed = consumer
        .committed_offsets(assignment, WAIT)
        .map_err(|e| format!("committed offsets: {e}"))?;
    for e in committed.elements() {
        e.error()
            .map_err(|err| format!("committed offset of partition {}: {err}", e.partition()))?;
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        consumer
            .seek(e.topic(), e.partition(), offset, WAIT)
            .map_err(|err| format!("seek partition {}: {err}", e.partition()))?;
    }
    Ok(())
}

#[test]
fn consume_transform_produce_is_exactly_once_across_aborts_and_broker_kills() {
    const N: usize = 300;
    // Short segments: the output's aborted transactions end up in many segments' indexes,
    // which the final read_committed read from the beginning must name.
    let mut broker = Broker::start(&["--log-retention-check-interval-ms", "100"]);
    broker.create_topic("ctp-in", 2, &[]);
    broker.create_topic("ctp-out", 2, &[("segment.ms", "200")]);
    write_input(&broker.producer(&[]), "ctp-in", N, 2);

    let new_consumer = |broker: &Broker| {
        let c = broker.consumer(&[
            ("group.id", "ctp"),
            ("isolation.level", "read_committed"),
            ("session.timeout.ms", "6000"),
        ]);
        c.subscribe(&["ctp-in"]).expect("subscribe");
        c
    };
    let mut consumer = new_consumer(&broker);
    // Reads the group's committed offsets without joining it.
    let checker = broker.consumer(&[("group.id", "ctp"), ("isolation.level", "read_committed")]);
    let mut producer = Arc::new(txn_producer(&broker, "tx-ctp", &[]));
    let mut done = 0usize;
    let mut steps = 0usize;
    let mut kills = 0;
    let (mut aborted, mut resets) = (0usize, 0usize);
    let mut idle = 0usize;
    let deadline = Instant::now() + Duration::from_secs(240);
    while done < N {
        assert!(Instant::now() < deadline, "stuck at {done} of {N}");
        if (done >= N / 3 && kills == 0) || (done >= 2 * N / 3 && kills == 1) {
            kills += 1;
            broker.kill9();
            broker.restart();
        }
        // Every fourth transaction is aborted on purpose.
        match ctp_step(&consumer, &producer, (steps + 1).is_multiple_of(4)) {
            Step::Idle => {
                idle += 1;
                // A commit the client saw fail may have taken effect: the group's offsets say.
                if committed_total(&checker, "ctp-in", 2) == N as i64 {
                    break;
                }
                if idle.is_multiple_of(40) {
                    eprintln!(
                        "idle at {done}: in {:?} {:?} out {:?} {:?} assignment {:?} position {:?}",
                        watermarks(&broker, "ctp-in", 0),
                        watermarks(&broker, "ctp-in", 1),
                        watermarks(&broker, "ctp-out", 0),
                        watermarks(&broker, "ctp-out", 1),
                        consumer.assignment().map(|a| a.count()),
                        consumer.position().map(|p| format!("{p:?}")),
                    );
                }
                continue;
            }
            Step::Committed(n) => {
                steps += 1;
                done += n;
            }
            Step::Aborted => {
                steps += 1;
                aborted += 1;
                if let Err(e) = rewind(&consumer) {
                    eprintln!("rewind failed ({e}); a new consumer");
                    drop(consumer);
                    consumer = new_consumer(&broker);
                }
            }
            Step::Reset => {
                resets += 1;
                // A new producer with the same transactional id fences and aborts whatever the
                // old one left open; the consumer starts again from the committed offsets.
                drop(producer);
                drop(consumer);
                producer = loop {
                    let mut c: ClientConfig = broker.client_config();
                    c.set("transactional.id", "tx-ctp").set("linger.ms", "5");
                    let p: TxnProducer = c.create().expect("producer");
                    if p.init_transactions(TXN_TIMEOUT).is_ok() {
                        break Arc::new(p);
                    }
                    assert!(Instant::now() < deadline, "init_transactions kept failing");
                };
                consumer = new_consumer(&broker);
            }
        }
    }
    assert_eq!(kills, 2);
    assert!(aborted > 0, "some transactions were aborted on purpose");
    eprintln!("ctp: {steps} steps, {aborted} aborted, {resets} producer resets");

    let out = read_values(&broker, "ctp-out", 2, "read_committed", N + 1);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &out {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "duplicated in the output: {dup:?}");
    assert_eq!(out.len(), N, "every input exactly once");
    // The group's offsets, committed inside the transactions, are at the end of the input.
    let c = broker.consumer(&[("group.id", "ctp")]);
    assert_eq!(committed_total(&c, "ctp-in", 2), N as i64);
    let files = |ext: &str| {
        (0..2)
            .flat_map(|p| std::fs::read_dir(broker.data_dir.join(format!("ctp-out-{p}"))).unwrap())
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == ext)
            })
            .count()
    };
    let (segments, indexes) = (files("log"), files("txnindex"));
    eprintln!("ctp-out: {segments} segments, {indexes} transaction indexes");
    assert!(
        segments >= 4 && indexes >= 1,
        "{segments} segments, {indexes} indexes"
    );
}

/// `sluice txn …` (the admin CLI) against the broker, with `--format json`; its exit code and
/// parsed output.
fn txn_cli(broker: &Broker, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("txn")
        .args(args)
        .args([
            "--bootstrap",
            &broker.addr,
            "--timeout-ms",
            "10000",
            "--format",
            "json",
        ])
        .env_remove("SLUICE_BOOTSTRAP")
        .output()
        .expect("run sluice txn");
    let value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), value)
}

#[test]
fn the_cli_lists_describes_and_aborts_a_hanging_transaction() {
    let broker = Broker::start(&[]);
    broker.create_topic("c", 1, &[]);
    let p = txn_producer(&broker, "tx-cli", &[]);
    p.begin_transaction().unwrap();
    send(&p, "c", 0, "open");
    p.flush(TXN_TIMEOUT).unwrap();

    let (code, list) = txn_cli(&broker, &["list"]);
    assert_eq!(code, Some(0), "{list}");
    let row = list
        .as_array()
        .and_then(|a| a.iter().find(|t| t["transactional_id"] == "tx-cli"))
        .unwrap_or_else(|| panic!("tx-cli not listed: {list}"));
    assert_eq!(row["state"], "Ongoing");
    let (code, ongoing) = txn_cli(&broker, &["list", "--state", "Ongoing"]);
    assert_eq!(code, Some(0));
    assert_eq!(ongoing.as_array().map(Vec::len), Some(1), "{ongoing}");
    let (code, _) = txn_cli(&broker, &["list", "--state", "Bogus"]);
    assert_eq!(code, Some(2), "an unknown state is a usage error");

    let (code, described) = txn_cli(&broker, &["describe", "tx-cli"]);
    assert_eq!(code, Some(0), "{described}");
    let d = &described[0];
    assert_eq!(d["state"], "Ongoing");
    assert_eq!(d["partitions"], serde_json::json!([["c", [0]]]));
    let producer_id = d["producer_id"].as_i64().expect("producer id");
    let epoch = d["producer_epoch"].as_i64().expect("epoch");
    assert!(producer_id >= 0 && epoch >= 0);
    let (code, _) = txn_cli(&broker, &["describe", "no-such-id"]);
    assert_eq!(code, Some(1), "TRANSACTIONAL_ID_NOT_FOUND");

    // The open transaction holds the partition's last stable offset back; an abort marker
    // written by hand releases it (what Kafka's tool does for a hanging transaction).
    assert_eq!(watermarks(&broker, "c", 0), (0, 1));
    let (code, aborted) = txn_cli(
        &broker,
        &[
            "abort",
            "--topic",
            "c",
            "--partition",
            "0",
            "--producer-id",
            &producer_id.to_string(),
            "--producer-epoch",
            &epoch.to_string(),
            "--coordinator-epoch",
            "0",
        ],
    );
    assert_eq!(code, Some(0), "{aborted}");
    assert_eq!(watermarks(&broker, "c", 0), (2, 2), "the marker closed it");
    // An older producer epoch is refused.
    let (code, _) = txn_cli(
        &broker,
        &[
            "abort",
            "--topic",
            "c",
            "--partition",
            "0",
            "--producer-id",
            &producer_id.to_string(),
            &format!("--producer-epoch={}", epoch - 1),
            "--coordinator-epoch",
            "0",
        ],
    );
    assert_eq!(code, Some(1), "INVALID_PRODUCER_EPOCH");
}

/// The Python venv the test dependencies install (`scripts/install-test-deps.sh`), with
/// confluent-kafka.
fn venv_python() -> std::path::PathBuf {
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-deps/venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        py.display()
    );
    py
}

/// A consume-transform-produce application in its own process (confluent-kafka,
/// `tests/fixtures/ctp_app.py`) is killed with SIGKILL in its loop again and again and
/// started anew: each new instance fences the last one's open transaction (InitProducerId
/// aborts it), so the output holds every input exactly once, read_committed.
#[test]
fn a_transform_app_killed_with_sigkill_leaves_every_input_exactly_once() {
    use std::process::{Command, Stdio};
    const N: usize = 2000;
    const KILLS: usize = 5;
    let broker = Broker::start(&[]);
    broker.create_topic("ctp-in", 3, &[]);
    broker.create_topic("ctp-out", 3, &[]);
    let input = broker.producer(&[]);
    let records: Vec<common::Out> = (0..N)
        .map(|i| common::Out {
            value: Some(format!("v{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for d in common::produce_all(&input, "ctp-in", &records) {
        d.expect("input delivered");
    }
    drop(input);
    let python = venv_python();
    let app = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ctp_app.py");
    let start = |out: Stdio| {
        Command::new(&python)
            .arg(&app)
            .arg(&broker.addr)
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("start the ctp app")
    };
    // Each instance is killed once it has committed a few transactions (it has joined the
    // group and is in its loop), a few milliseconds later: mid-transaction more often than not.
    let mut committed_before_kill = 0;
    for k in 0..KILLS {
        let mut child = start(Stdio::piped());
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.starts_with("committed") && tx.send(()).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while seen < 3 && Instant::now() < deadline {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                seen += 1;
            }
        }
        assert_eq!(seen, 3, "instance {k} never committed");
        committed_before_kill += seen;
        std::thread::sleep(Duration::from_millis(7 * k as u64));
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
    }
    assert!(committed_before_kill >= 3 * KILLS);
    // The last instance runs to the end (it exits after reading nothing for a while).
    let mut child = start(Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the last ctp instance did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the last ctp instance failed: {status}");

    let out = read_values(&broker, "ctp-out", 3, "read_committed", N + 1);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &out {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(dup.is_empty(), "duplicated in the output: {dup:?}");
    let missing: Vec<String> = (0..N)
        .map(|i| format!("out-v{i}"))
        .filter(|v| !counts.contains_key(v.as_str()))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "missing from the output: {missing:?}");
    assert_eq!(out.len(), N);
    // The log also holds the killed instances' aborted work and the transaction markers.
    let log_end: i64 = (0..3).map(|p| watermarks(&broker, "ctp-out", p).1).sum();
    eprintln!(
        "ctp with {KILLS} SIGKILLs: {} committed outputs, {log_end} offsets in the log",
        out.len()
    );
}

/// The broker that FindCoordinator (transactional id `id`) names, asked through `addr`.
fn txn_coordinator(addr: &str, id: &str) -> Option<i32> {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    use kafka_protocol::protocol::StrBytes;
    let id = id.to_owned();
    let addr = addr.to_owned();
    std::panic::catch_unwind(move || {
        let mut raw = common::raw::Raw::connect(&addr);
        let r: FindCoordinatorResponse = raw.call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(id))
                .with_key_type(1),
        );
        (r.error_code == 0).then_some(r.node_id.0)
    })
    .ok()
    .flatten()
}

/// The leader of `topic`'s `partition`, asked through `addr`.
fn leader_of(addr: &str, topic: &str, partition: i32) -> Option<i32> {
    let (leader, _) = common::cluster::leader_and_isr(addr, topic, partition)?;
    (leader >= 0).then_some(leader)
}

#[test]
fn a_cluster_keeps_transactions_exactly_once_when_the_coordinator_and_a_leader_are_killed() {
    const N: usize = 300;
    const ID: &str = "tx-cluster";
    let mut cluster = ctp_cluster(("ctp-in", "ctp-out"), N);

    let new_consumer = |cluster: &Cluster| {
        let c = cluster.nodes[0].consumer(&[
            ("bootstrap.servers", cluster.bootstrap().as_str()),
            ("group.id", "ctp-cluster"),
            ("isolation.level", "read_committed"),
            ("session.timeout.ms", "6000"),
            // An abandoned consumer (see `abandon`) that still heartbeats leaves the group
            // once it has not polled for this long.
            ("max.poll.interval.ms", "10000"),
        ]);
        c.subscribe(&["ctp-in"]).expect("subscribe");
        c
    };
    let new_producer = |cluster: &Cluster, deadline: Instant| loop {
        let mut c: ClientConfig = cluster.nodes[0].client_config();
        c.set("bootstrap.servers", cluster.bootstrap())
            .set("transactional.id", ID)
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        let p: TxnProducer = c.create().expect("producer");
        match p.init_transactions(Duration::from_secs(10)) {
            Ok(()) => break Arc::new(p),
            Err(e) => eprintln!("init_transactions: {e}"),
        }
        assert!(Instant::now() < deadline, "init_transactions kept failing");
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut consumer = new_consumer(&cluster);
    // Reads the group's committed offsets without joining it.
    let checker = cluster.nodes[0].consumer(&[
        ("bootstrap.servers", cluster.bootstrap().as_str()),
        ("group.id", "ctp-cluster"),
        ("isolation.level", "read_committed"),
    ]);
    let mut producer = new_producer(&cluster, deadline);
    let (mut done, mut steps, mut aborted, mut resets) = (0usize, 0usize, 0usize, 0usize);
    let mut killed: Vec<(String, i32)> = Vec::new();
    let mut idle = 0usize;
    while done < N {
        assert!(
            Instant::now() < deadline,
            "stuck at {done} of {N} ({resets} resets, {idle} idle polls){}",
            txn_log_tail(&cluster)
        );
        kill_on_schedule(&mut cluster, &mut killed, (done, N), ID, "ctp-out");
        // Every fourth transaction is aborted on purpose.
        match ctp_step(&consumer, &producer, (steps + 1).is_multiple_of(4)) {
            Step::Idle => {
                idle += 1;
                // A commit the client saw fail may have taken effect: the group's offsets say.
                if committed_total(&checker, "ctp-in", 3) == N as i64 {
                    break;
                }
                if idle.is_multiple_of(40) {
                    eprintln!(
                        "idle at {done}: assignment {:?} position {:?}",
                        consumer.assignment().map(|a| a.count()),
                        consumer.position().map(|p| format!("{p:?}")),
                    );
                }
                continue;
            }
            Step::Committed(n) => {
                steps += 1;
                done += n;
            }
            Step::Aborted => {
                steps += 1;
                aborted += 1;
                if let Err(e) = rewind(&consumer) {
                    eprintln!("rewind failed ({e}); a new consumer");
                    abandon(consumer);
                    consumer = new_consumer(&cluster);
                }
            }
            Step::Reset => {
                resets += 1;
                eprintln!("producer reset at {done}");
                abandon(producer);
                abandon(consumer);
                producer = new_producer(&cluster, deadline);
                consumer = new_consumer(&cluster);
            }
        }
    }
    assert_eq!(killed.len(), 2);
    assert!(aborted > 0, "some transactions were aborted on purpose");
    eprintln!("ctp in a cluster: {steps} steps, {aborted} aborted, {resets} producer resets");

    assert_exactly_once(&cluster, &checker, ("ctp-in", "ctp-out"), N);
}

/// The Java client's consume-transform-produce on transaction version 2
/// (`scripts/client-matrix/java/.../TxnChaos.java`: the leader adds partitions, every EndTxn
/// bumps the epoch, offsets sent with TxnOffsetCommit v5) in a three-node cluster whose
/// transaction coordinator and then the leader of an output partition are SIGKILLed and
/// restarted under it: every input ends up in the output exactly once under read_committed.
#[test]
fn java_transactions_v2_stay_exactly_once_when_the_coordinator_and_a_leader_are_killed() {
    const N: usize = 300;
    const ID: &str = "tx-java-cluster";
    const GROUP: &str = "jctp";
    let deps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-deps/java");
    assert!(
        deps.join("build/classes/sluice/TxnChaos.class").exists(),
        "the Java scenario is not built: run scripts/install-test-deps.sh"
    );
    let mut cluster = ctp_cluster(("jctp-in", "jctp-out"), N);
    let checker = cluster.nodes[0].consumer(&[
        ("bootstrap.servers", cluster.bootstrap().as_str()),
        ("group.id", GROUP),
        ("isolation.level", "read_committed"),
    ]);
    let classpath = format!(
        "{}:{}/*",
        deps.join("build/classes").display(),
        deps.join("lib").display()
    );
    let bootstrap = cluster.bootstrap();
    // Paced (30 ms between transactions of at most 5 records) so that both SIGKILLs land
    // while it runs.
    let app = std::thread::spawn(move || {
        common::run_bounded(
            std::process::Command::new("bash")
                .arg("-c")
                .arg(r#"exec java -cp "$0" sluice.TxnChaos "$@" 2>&1"#)
                .arg(classpath)
                .args([&bootstrap, "jctp-in", "jctp-out", GROUP, ID])
                .args([&N.to_string(), "150", "30"]),
            Duration::from_secs(180),
        )
    });
    let mut killed: Vec<(String, i32)> = Vec::new();
    while !app.is_finished() {
        let done = committed_total(&checker, "jctp-in", 3).max(0) as usize;
        kill_on_schedule(&mut cluster, &mut killed, (done, N), ID, "jctp-out");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, output) = app.join().expect("the Java app's thread");
    assert_eq!(
        status,
        Some(0),
        "the Java app failed:\n{output}{}",
        txn_log_tail(&cluster)
    );
    eprintln!("{output}");
    assert_eq!(
        killed.len(),
        2,
        "the app finished before both SIGKILLs ({killed:?}): pace it more slowly"
    );
    assert_exactly_once(&cluster, &checker, ("jctp-in", "jctp-out"), N);
}

/// SIGKILLs `transactional_id`'s transaction coordinator a third of the way through
/// (`progress` = (done, of)), the leader of partition 1 of `output` at two thirds; each comes
/// back at once. `killed` lists what was killed so far.
fn kill_on_schedule(
    cluster: &mut Cluster,
    killed: &mut Vec<(String, i32)>,
    (done, of): (usize, usize),
    transactional_id: &str,
    output: &str,
) {
    let victim = if done >= of / 3 && killed.is_empty() {
        let c = (0..3)
            .find_map(|i| txn_coordinator(&cluster.nodes[i].addr, transactional_id))
            .expect("the transaction coordinator");
        Some(("coordinator".to_owned(), c))
    } else if done >= 2 * of / 3 && killed.len() == 1 {
        let l = (0..3)
            .find_map(|i| leader_of(&cluster.nodes[i].addr, output, 1))
            .expect("the leader of the output's partition 1");
        Some((format!("leader of {output} 1"), l))
    } else {
        None
    };
    if let Some((what, node)) = victim {
        eprintln!("SIGKILL node {node}, the {what}, at {done} of {of}");
        killed.push((what, node));
        let node = node as usize;
        cluster.nodes[node].kill9();
        cluster.nodes[node].restart();
        cluster.wait_settled(&[0, 1, 2]);
    }
}

/// A three-node cluster (min.insync.replicas 2, transaction logging at debug level: a failure
/// message quotes it) with `topics` (3 partitions, 3 replicas each, led), and `n` input records
/// `v0`, `v1`, … in `topics.0`, round robin over its partitions.
fn ctp_cluster(topics: (&str, &str), n: usize) -> Cluster {
    let cluster = Cluster::start(
        3,
        false,
        &[
            "--min-insync-replicas",
            "2",
            "--log-level",
            "info,sluice::shard::txns=debug,sluice::kafka::handlers::transactions=debug,sluice::shard::ops=debug",
        ],
    );
    cluster.wait_settled(&[0, 1, 2]);
    let admin = cluster.nodes[0].admin();
    for name in [topics.0, topics.1] {
        let t = NewTopic::new(name, 3, TopicReplication::Fixed(3));
        let res = futures_executor::block_on(admin.create_topics([&t], &AdminOptions::new()))
            .expect("create_topics");
        for r in res {
            r.expect("topic created");
        }
    }
    cluster.wait_for("every partition led", || {
        [topics.0, topics.1]
            .iter()
            .all(|t| (0..3).all(|p| leader_of(&cluster.nodes[0].addr, t, p).is_some()))
    });
    let bootstrap = cluster.bootstrap();
    let input = cluster.nodes[0].producer(&[("bootstrap.servers", &bootstrap), ("acks", "all")]);
    write_input(&input, topics.0, n, 3);
    cluster
}

/// The input of a consume-transform-produce test: values `v0..v{n-1}`, record `i` in partition
/// `i % partitions`, every one delivered.
fn write_input(producer: &common::TestProducer, topic: &str, n: usize, partitions: usize) {
    let records: Vec<common::Out> = (0..n)
        .map(|i| common::Out {
            partition: Some((i % partitions) as i32),
            value: Some(format!("v{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for d in common::produce_all(producer, topic, &records) {
        d.expect("input delivered");
    }
}

/// Every one of the `n` inputs of a consume-transform-produce run is in `topics.1` exactly once
/// under read_committed, and the group's committed offsets (`checker`'s group) of `topics.0`
/// add up to `n` once the commit markers reached them.
fn assert_exactly_once(cluster: &Cluster, checker: &BaseConsumer, topics: (&str, &str), n: usize) {
    let (input, output) = topics;
    let c = cluster.nodes[0].consumer(&[
        ("bootstrap.servers", cluster.bootstrap().as_str()),
        ("isolation.level", "read_committed"),
    ]);
    // All n, then a few seconds more for anything past them (a duplicate).
    let mut recs = common::consume_n(&c, output, 3, n);
    let extra_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < extra_until {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            recs.push(common::own(&m.expect("consume")));
        }
    }
    let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for r in &recs {
        *per_partition.entry(r.partition).or_default() += 1;
    }
    let out: Vec<String> = recs
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap_or_default()).expect("utf-8"))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &out {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let dup: Vec<_> = counts.iter().filter(|(_, k)| **k > 1).collect();
    assert!(
        dup.is_empty(),
        "duplicated in the output: {dup:?}{}",
        txn_log_tail(cluster)
    );
    assert_eq!(
        out.len(),
        n,
        "every input exactly once (read per partition: {per_partition:?}){}",
        txn_log_tail(cluster)
    );
    // The group's offsets, committed inside the transactions, are at the end of the input.
    // The commit markers reach __consumer_offsets after EndTxn is answered: wait for them.
    let until = Instant::now() + WAIT;
    let mut total = committed_total(checker, input, 3);
    while total != n as i64 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        total = committed_total(checker, input, 3);
    }
    assert_eq!(
        total,
        n as i64,
        "the group's committed offsets{}",
        txn_log_tail(cluster)
    );
}

/// The last transaction lines of every node's log, for a failure message.
fn txn_log_tail(cluster: &Cluster) -> String {
    let mut out = String::new();
    for (i, n) in cluster.nodes.iter().enumerate() {
        let log = n.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["txn", "Txn", "marker", "group", "leading"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .collect();
        out.push_str(&format!(
            "\n--- node {i}:\n{}",
            lines[lines.len().saturating_sub(80)..].join("\n")
        ));
    }
    out
}
