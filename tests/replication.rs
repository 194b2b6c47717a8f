//! Replication across real processes (clusters part 2): acks=all survives leader crashes,
//! pauses and cut-offs; a leader's unreplicated tail is truncated when it comes back. Every
//! test runs three `sluice` processes on loopback ports and real Kafka clients (librdkafka);
//! a checker compares everything acknowledged and read with what the partitions finally hold.
//!
//! `SLUICE_CHAOS_ROUNDS` sets how many faults the chaos test injects (default 3: one kill -9,
//! one SIGSTOP, one cut-off), `SLUICE_CHAOS_FAULTS=kill` injects only kill -9, and
//! `SLUICE_CLUSTER_DEFAULT_TIMEOUTS=1` runs the brokers with their default heartbeat and
//! session timeouts (to measure failover as users get it), `SLUICE_CHAOS_FLUSH=always` with
//! that flush policy; `scripts/chaos.sh` runs it longer.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{metadata, Cluster};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, TopicPartitionList};

/// Cluster tests start several processes each: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An acknowledged record: where it landed and when the acknowledgement came.
#[derive(Debug, Clone)]
struct Ack {
    partition: i32,
    offset: i64,
    value: String,
    at: Instant,
}

#[derive(Default)]
struct Acks {
    acked: Mutex<Vec<Ack>>,
    failed: Mutex<usize>,
}

impl Acks {
    fn delivery(&self, result: &DeliveryResult<'_>, value: String) {
        match result {
            Ok(m) => {
                if let Ok(mut a) = self.acked.lock() {
                    a.push(Ack {
                        partition: m.partition(),
                        offset: m.offset(),
                        value,
                        at: Instant::now(),
                    });
                }
            }
            Err(_) => {
                if let Ok(mut f) = self.failed.lock() {
                    *f += 1;
                }
            }
        }
    }
}

fn create(cluster: &Cluster, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = cluster.nodes[0].admin();
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(3));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for r in futures_executor::block_on(admin.create_topics([&t], &opts)).expect("create") {
        r.expect("topic created");
    }
    cluster.wait_for(&format!("every node to know '{name}'"), || {
        cluster.nodes.iter().all(|n| {
            common::cluster::topics(&n.addr).is_some_and(|t| t.iter().any(|(n, _, _)| n == name))
        })
    });
}

/// (leader, isr) of `partition` of `topic` as node `via` reports it.
fn leader_of(
    cluster: &Cluster,
    via: usize,
    topic: &str,
    partition: i32,
) -> Option<(i32, Vec<i32>)> {
    common::cluster::leader_and_isr(&cluster.nodes[via].addr, topic, partition)
}

/// Waits until every node of `alive` names the same leader, one of `alive`, with at least
/// `isr_size` replicas in sync.
fn wait_leader(
    cluster: &Cluster,
    alive: &[usize],
    topic: &str,
    partition: i32,
    isr_size: usize,
) -> i32 {
    let mut leader = -1;
    cluster.wait_for(
        &format!("{topic}-{partition} to have a leader among {alive:?} and {isr_size} in sync"),
        || {
            let views: Vec<Option<(i32, Vec<i32>)>> = alive
                .iter()
                .map(|&via| leader_of(cluster, via, topic, partition))
                .collect();
            let Some(Some((l, _))) = views.first() else {
                return false;
            };
            leader = *l;
            leader >= 0
                && alive.contains(&(leader as usize))
                && views.iter().all(|v| {
                    v.as_ref()
                        .is_some_and(|(l, isr)| *l == leader && isr.len() >= isr_size)
                })
        },
    );
    leader
}

/// Every record of `topic` (all `partitions`), read from the start to each partition's end
/// as the leaders report it: per partition, offset → value.
fn read_everything(cluster: &Cluster, topic: &str, partitions: i32) -> Vec<BTreeMap<i64, String>> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", "replication-checker")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("broker.address.family", "v4");
    let consumer: BaseConsumer = c.create().expect("consumer");
    let mut ends = Vec::new();
    for p in 0..partitions {
        let deadline = Instant::now() + common::WAIT * 2;
        let end = loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                Ok((_, high)) => break high,
                Err(e) => {
                    assert!(Instant::now() < deadline, "watermarks of {topic}-{p}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        ends.push(end);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: Vec<BTreeMap<i64, String>> = vec![BTreeMap::new(); partitions as usize];
    let deadline = Instant::now() + common::WAIT * 4;
    while (0..partitions as usize)
        .any(|p| out[p].last_key_value().map_or(0, |(o, _)| o + 1) < ends[p])
    {
        assert!(
            Instant::now() < deadline,
            "reading {topic} to {ends:?} timed out"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            let previous = out[m.partition() as usize].insert(m.offset(), v.clone());
            assert!(
                previous.is_none_or(|p| p == v),
                "offset {} of partition {} read with two values",
                m.offset(),
                m.partition()
            );
        }
    }
    out
}

/// The checker: every acknowledged record is in the final log at its offset, once; every
/// value appears once; per partition the producer's sequence numbers increase with the offset;
/// everything a consumer read during the run is still there at the offset it was read at.
fn check(final_logs: &[BTreeMap<i64, String>], acked: &[Ack], read_during: &[(i32, i64, String)]) {
    let mut seen: HashMap<&str, (i32, i64)> = HashMap::new();
    for (p, log) in final_logs.iter().enumerate() {
        let mut last_seq = -1i64;
        for (offset, value) in log {
            if let Some(first) = seen.insert(value.as_str(), (p as i32, *offset)) {
                panic!("{value} is in the log twice: at {first:?} and at ({p}, {offset})");
            }
            // Values are "p<partition>-<seq>": the producer's order within a partition.
            let seq: i64 = value
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("value format");
            assert!(
                seq > last_seq,
                "partition {p}: {value} at {offset} after sequence {last_seq}: reordered"
            );
            last_seq = seq;
        }
    }
    for a in acked {
        let found = final_logs[a.partition as usize].get(&a.offset);
        assert_eq!(
            found,
            Some(&a.value),
            "acknowledged {} at ({}, {}) is not there: lost or overwritten",
            a.value,
            a.partition,
            a.offset
        );
    }
    for (p, offset, value) in read_during {
        assert_eq!(
            final_logs[*p as usize].get(offset),
            Some(value),
            "a consumer read {value} at ({p}, {offset}) that the log no longer holds"
        );
    }
}

/// The fault injected in one round of the chaos test.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Pause,
    CutOff,
}

#[test]
fn acknowledged_writes_survive_leader_kills_pauses_and_cut_offs() {
    let _g = serial();
    let rounds: usize = std::env::var("SLUICE_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    const PARTITIONS: i32 = 3;
    // SLUICE_CHAOS_FLUSH=always|interval runs the brokers with that flush policy.
    let flush = std::env::var("SLUICE_CHAOS_FLUSH").unwrap_or_else(|_| "never".into());
    let mut cluster = Cluster::start(
        3,
        true,
        &["--replica-lag-time-max-ms", "3000", "--flush", &flush],
    );
    cluster.wait_settled(&[0, 1, 2]);
    create(
        &cluster,
        "chaos",
        PARTITIONS,
        &[("min.insync.replicas", "2")],
    );

    // Producers: one idempotent acks=all producer writing "p<partition>-<seq>" to each
    // partition in turn, as fast as acknowledgements allow (bounded in flight).
    let acks = Arc::new(Acks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let producer: Arc<ThreadedProducer<AcksRef>> = {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", cluster.bootstrap())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "120000")
            .set("queue.buffering.max.messages", "2000")
            .set("broker.address.family", "v4")
            // A paused leader keeps its connections open without answering: the producer must
            // give up on its requests in flight there (librdkafka's default is 60 s; an
            // idempotent producer resends in order only after that).
            .set("socket.timeout.ms", "5000")
            .set("topic.metadata.refresh.interval.ms", "500");
        Arc::new(
            c.create_with_context(AcksRef(acks.clone()))
                .expect("producer"),
        )
    };
    let producing = {
        let stop = stop.clone();
        let producer = producer.clone();
        std::thread::spawn(move || {
            let mut seq = vec![0i64; PARTITIONS as usize];
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for p in 0..PARTITIONS {
                    let value = format!("p{p}-{}", seq[p as usize]);
                    let rec: BaseRecord<'_, [u8], [u8], Box<String>> =
                        BaseRecord::with_opaque_to("chaos", Box::new(value.clone()))
                            .partition(p)
                            .payload(value.as_bytes());
                    match producer.send(rec) {
                        Ok(()) => {
                            seq[p as usize] += 1;
                            sent += 1;
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };
    // A consumer group member reading all along: what it read must never disappear.
    let read_during = Arc::new(Mutex::new(Vec::new()));
    let consuming = {
        let stop = stop.clone();
        let read_during = read_during.clone();
        let boot = cluster.bootstrap();
        std::thread::spawn(move || {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", boot)
                .set("group.id", "chaos-readers")
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "200")
                .set("broker.address.family", "v4")
                .set("socket.timeout.ms", "5000");
            let consumer: BaseConsumer = c.create().expect("consumer");
            consumer.subscribe(&["chaos"]).expect("subscribe");
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                    if let Ok(mut r) = read_during.lock() {
                        r.push((m.partition(), m.offset(), v));
                    }
                }
            }
        })
    };

    let faults: &[Fault] = match std::env::var("SLUICE_CHAOS_FAULTS").as_deref() {
        Ok("kill") => &[Fault::Kill],
        _ => &[Fault::Kill, Fault::Pause, Fault::CutOff],
    };
    let mut failovers: Vec<Duration> = Vec::new();
    for round in 0..rounds {
        let fault = faults[round % faults.len()];
        // Every node in turn is the victim: the leader of a partition it leads (so a third of
        // the faults hit the active controller too, as random crashes would).
        let victim = (round % 3) as i32;
        let leaders: Vec<i32> = (0..PARTITIONS)
            .map(|p| wait_leader(&cluster, &[0, 1, 2], "chaos", p, 3))
            .collect();
        let partition = leaders
            .iter()
            .position(|l| *l == victim)
            .map_or((round as i32) % PARTITIONS, |p| p as i32);
        let leader = leaders[partition as usize] as usize;
        // Let some acknowledged traffic flow first.
        let before = acks.acked.lock().map(|a| a.len()).unwrap_or(0);
        cluster.wait_for("acknowledgements to flow", || {
            acks.acked.lock().map(|a| a.len()).unwrap_or(0) > before + 200
        });
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let controller = metadata(&cluster.nodes[others[0]].addr).map_or(-1, |m| m.controller_id.0);
        let at = Instant::now();
        eprintln!(
            "round {round}: {fault:?} the leader of chaos-{partition}, node {leader} (active controller: node {controller}) at {:?}",
            std::time::SystemTime::now()
        );
        match fault {
            Fault::Kill => cluster.nodes[leader].kill9(),
            Fault::Pause => cluster.nodes[leader].signal(libc::SIGSTOP),
            Fault::CutOff => cluster.isolate(leader, true),
        }
        let new_leader = wait_leader(&cluster, &others, "chaos", partition, 1);
        assert_ne!(new_leader as usize, leader);
        // Failover: from the fault to the first acknowledgement the new leader gave. Answers
        // the old leader sent just before the fault arrive within microseconds; no new
        // leader can be in place within 50 ms (fencing alone takes longer).
        let after = at + Duration::from_millis(50);
        cluster.wait_for("the new leader to acknowledge a write", || {
            acks.acked
                .lock()
                .map(|a| a.iter().any(|x| x.partition == partition && x.at >= after))
                .unwrap_or(false)
        });
        let first_ack = acks
            .acked
            .lock()
            .map(|a| {
                a.iter()
                    .filter(|x| x.partition == partition && x.at >= after)
                    .map(|x| x.at)
                    .min()
            })
            .ok()
            .flatten();
        if let (Fault::Kill, Some(t)) = (fault, first_ack) {
            eprintln!("round {round}: failover {:?}", t - at);
            failovers.push(t - at);
        }
        match fault {
            Fault::Kill => cluster.nodes[leader].restart(),
            Fault::Pause => cluster.nodes[leader].signal(libc::SIGCONT),
            Fault::CutOff => cluster.isolate(leader, false),
        }
        // The old leader comes back as a follower and rejoins the ISR.
        wait_leader(&cluster, &[0, 1, 2], "chaos", partition, 3);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = producing.join().expect("producer thread");
    consuming.join().expect("consumer thread");
    producer
        .flush(common::WAIT * 4)
        .expect("every send gets its report");
    let failed = *acks.failed.lock().expect("lock");
    let acked = acks.acked.lock().expect("lock").clone();
    eprintln!("sent {sent}, acknowledged {}, failed {failed}", acked.len());
    assert_eq!(acked.len() + failed, sent, "every send has a report");
    assert!(!acked.is_empty());

    let logs = read_everything(&cluster, "chaos", PARTITIONS);
    let read = read_during.lock().expect("lock").clone();
    check(&logs, &acked, &read);
    let held: usize = logs.iter().map(BTreeMap::len).sum();
    eprintln!(
        "checked: {} acknowledged, {} read during the run, {held} in the final log",
        acked.len(),
        read.len()
    );
    // The brokers' own view: nothing under-replicated once healed, and leaders were elected
    // (counters restart with a killed process, so only their existence is certain).
    let metric = |i: usize, name: &str| -> u64 {
        let (_, body) = common::http_get(&cluster.nodes[i].metrics_addr, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    cluster.wait_for("no under-replicated partition", || {
        (0..3).all(|i| metric(i, "sluice_under_replicated_partitions ") == 0)
    });
    let elections: u64 = (0..3)
        .map(|i| metric(i, "sluice_leader_elections_total "))
        .sum();
    assert!(elections > 0, "{elections} leader elections");
    if !failovers.is_empty() {
        failovers.sort();
        eprintln!(
            "failover after kill -9 (fault → first acknowledgement by the new leader): p50 {:?}, max {:?}, n {}",
            failovers[failovers.len() / 2],
            failovers[failovers.len() - 1],
            failovers.len()
        );
    }
}

/// The producer context, shared with the test through an `Arc`.
struct AcksRef(Arc<Acks>);

impl ClientContext for AcksRef {}

impl ProducerContext for AcksRef {
    type DeliveryOpaque = Box<String>;
    fn delivery(&self, result: &DeliveryResult<'_>, value: Box<String>) {
        self.0.delivery(result, *value)
    }
}

#[test]
fn a_returning_leaders_unreplicated_records_are_truncated() {
    let _g = serial();
    let mut cluster = Cluster::start(3, false, &["--replica-fetch-wait-max-ms", "100"]);
    cluster.wait_settled(&[0, 1, 2]);
    create(&cluster, "diverge", 1, &[]);
    let leader = wait_leader(&cluster, &[0, 1, 2], "diverge", 0, 3) as usize;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let boot = cluster.bootstrap();
    let all = cluster.nodes[0].producer(&[("bootstrap.servers", boot.as_str()), ("acks", "all")]);
    let committed: Vec<common::Out> = (0..50)
        .map(|i| common::Out {
            value: Some(format!("committed-{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for d in common::produce_all(&all, "diverge", &committed) {
        d.expect("acks=all delivered");
    }

    // The followers stop fetching; the leader takes writes with acks=1 that nobody copies,
    // and dies before they resume (within the session timeout, so nobody but the leader is
    // fenced).
    for &f in &followers {
        cluster.nodes[f].signal(libc::SIGSTOP);
    }
    // Their fetches parked at the leader expire (100 ms) and are answered empty; no new one
    // comes, so nothing carries the next records to them.
    std::thread::sleep(Duration::from_millis(400));
    let direct = cluster.nodes[leader].producer(&[("acks", "1")]);
    let lost: Vec<common::Out> = (0..20)
        .map(|i| common::Out {
            value: Some(format!("unreplicated-{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for d in common::produce_all(&direct, "diverge", &lost) {
        d.expect("acks=1 delivered by the leader alone");
    }
    cluster.nodes[leader].kill9();
    for &f in &followers {
        cluster.nodes[f].signal(libc::SIGCONT);
    }
    let new_leader = wait_leader(&cluster, &followers, "diverge", 0, 1);
    eprintln!("node {leader} died holding 20 unreplicated records; node {new_leader} leads");

    // New writes under the new leader, then the old leader returns and rejoins.
    let after: Vec<common::Out> = (0..30)
        .map(|i| common::Out {
            value: Some(format!("after-{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for d in common::produce_all(&all, "diverge", &after) {
        d.expect("acks=all delivered by the new leader");
    }
    cluster.nodes[leader].restart();
    wait_leader(&cluster, &[0, 1, 2], "diverge", 0, 3);

    // Nobody reads the dead leader's tail; its own log no longer holds it.
    let logs = read_everything(&cluster, "diverge", 1);
    let values: Vec<&String> = logs[0].values().collect();
    assert_eq!(values.len(), 80, "{values:?}");
    assert!(values.iter().all(|v| !v.starts_with("unreplicated-")));
    assert!(values[..50].iter().all(|v| v.starts_with("committed-")));
    assert!(values[50..].iter().all(|v| v.starts_with("after-")));
    cluster.nodes[leader].stop();
    let dir = cluster.nodes[leader].data_dir.join("diverge-0");
    let mut held = Vec::new();
    for e in std::fs::read_dir(&dir).expect("partition dir") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "log") {
            held.extend(std::fs::read(&path).expect("segment"));
        }
    }
    assert!(
        held.windows(b"after-29".len()).any(|w| w == b"after-29"),
        "the returning leader copied the new leader's records"
    );
    assert!(
        !held
            .windows(b"unreplicated-".len())
            .any(|w| w == b"unreplicated-"),
        "the returning leader truncated its unreplicated tail"
    );
}

/// The preferred replica of every partition of `topic` (the first listed), as node 0 sees it.
fn preferred(cluster: &Cluster, topic: &str) -> Vec<i32> {
    let md = metadata(&cluster.nodes[0].addr).expect("metadata");
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .expect("topic");
    let mut p: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.replica_nodes[0].0))
        .collect();
    p.sort();
    p.into_iter().map(|(_, r)| r).collect()
}

/// Restarts `node` (SIGTERM: its leaderships move away) and waits until it is back in every
/// ISR of `topic`, led by others.
fn bounce(cluster: &mut Cluster, node: usize, topic: &str, partitions: i32) {
    cluster.nodes[node].stop();
    let others: Vec<usize> = (0..3).filter(|i| *i != node).collect();
    for p in 0..partitions {
        wait_leader(cluster, &others, topic, p, 1);
    }
    cluster.nodes[node].restart();
    for p in 0..partitions {
        wait_leader(cluster, &[0, 1, 2], topic, p, 3);
    }
}

#[test]
fn preferred_leaders_return_on_request_and_by_themselves() {
    let _g = serial();
    // By request (sluice topic elect-leaders → ElectLeaders), with automatic rebalancing off.
    let mut cluster = Cluster::start(3, false, &["--auto-leader-rebalance-enable", "false"]);
    cluster.wait_settled(&[0, 1, 2]);
    create(&cluster, "pref", 3, &[]);
    let want = preferred(&cluster, "pref");
    let victim = want[0] as usize;
    bounce(&mut cluster, victim, "pref", 3);
    let led = |cluster: &Cluster| -> Vec<i32> {
        (0..3)
            .map(|p| leader_of(cluster, 0, "pref", p).map_or(-1, |(l, _)| l))
            .collect()
    };
    assert_ne!(led(&cluster), want, "node {victim} came back as a follower");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "elect-leaders", "pref", "--bootstrap"])
        .arg(&cluster.nodes[0].addr)
        .env_remove("SLUICE_BOOTSTRAP")
        .output()
        .expect("sluice topic elect-leaders");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("NONE"),
        "a partition got its preferred leader back: {text}"
    );
    assert!(text.contains("ELECTION_NOT_NEEDED"), "{text}");
    cluster.wait_for("preferred leaders after ElectLeaders", || {
        led(&cluster) == want
    });

    // KIP-320: a consumer fetching with the epoch it had before those leader changes is told
    // FENCED_LEADER_EPOCH with the current leader (KIP-951); one ahead, UNKNOWN_LEADER_EPOCH.
    {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
        let leader = want[0] as usize;
        let md = metadata(&cluster.nodes[leader].addr).expect("metadata");
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "pref"))
            .expect("pref");
        let epoch = t
            .partitions
            .iter()
            .find(|p| p.partition_index == 0)
            .expect("partition 0")
            .leader_epoch;
        assert!(epoch >= 2, "moved away and back: epoch {epoch}");
        let mut raw = common::raw::Raw::connect(&cluster.nodes[leader].addr);
        for (asked, code) in [(epoch - 1, 74), (epoch + 1, 75), (epoch, 0)] {
            let req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(asked)
                        .with_partition_max_bytes(1 << 20)])]);
            let resp: FetchResponse = raw.call(ApiKey::Fetch, 16, &req);
            let p = &resp.responses[0].partitions[0];
            assert_eq!(
                p.error_code, code,
                "fetch with epoch {asked} (current {epoch})"
            );
            if code == 74 {
                assert_eq!(p.current_leader.leader_id.0, leader as i32);
                assert_eq!(p.current_leader.leader_epoch, epoch);
            }
        }
    }
    drop(cluster);

    // By themselves: the active controller checks every second here.
    let mut cluster = Cluster::start(
        3,
        false,
        &["--leader-imbalance-check-interval-seconds", "1"],
    );
    cluster.wait_settled(&[0, 1, 2]);
    create(&cluster, "pref", 3, &[]);
    let want = preferred(&cluster, "pref");
    bounce(&mut cluster, want[1] as usize, "pref", 3);
    cluster.wait_for("preferred leaders by automatic rebalancing", || {
        led(&cluster) == want
    });
}

#[test]
fn a_partition_moves_to_other_brokers_without_losing_data() {
    let _g = serial();
    let cluster = Cluster::start(3, false, &[]);
    cluster.wait_settled(&[0, 1, 2]);
    let admin = cluster.nodes[0].admin();
    let t = NewTopic::new("moving", 1, TopicReplication::Variable(&[&[0]]));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for r in futures_executor::block_on(admin.create_topics([&t], &opts)).expect("create") {
        r.expect("created on node 0");
    }
    wait_leader(&cluster, &[0, 1, 2], "moving", 0, 1);
    let boot = cluster.bootstrap();
    let producer =
        cluster.nodes[0].producer(&[("bootstrap.servers", boot.as_str()), ("acks", "all")]);
    let records: Vec<common::Out> = (0..200)
        .map(|i| common::Out {
            value: Some(format!("v-{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for d in common::produce_all(&producer, "moving", &records) {
        d.expect("delivered");
    }

    let sluice = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .arg("--bootstrap")
            .arg(&cluster.nodes[1].addr)
            .env_remove("SLUICE_BOOTSTRAP")
            .output()
            .expect("sluice cli");
        assert!(
            out.status.success(),
            "sluice {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let old_dir = cluster.nodes[0].data_dir.join("moving-0");
    assert!(old_dir.exists(), "node 0 holds the partition first");
    sluice(&[
        "topic",
        "reassign",
        "moving",
        "--partition",
        "0",
        "--replicas",
        "1,2",
    ]);
    cluster.wait_for("the partition to live on nodes 1 and 2", || {
        metadata(&cluster.nodes[1].addr).is_some_and(|md| {
            md.topics.iter().any(|t| {
                t.name.as_ref().is_some_and(|n| n.0.as_str() == "moving")
                    && t.partitions.iter().any(|p| {
                        let mut r: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
                        r.sort();
                        let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
                        isr.sort();
                        r == [1, 2] && isr == [1, 2] && p.leader_id.0 == 1
                    })
            })
        })
    });
    assert!(sluice(&["topic", "reassignments"]).contains("No reassignment in progress"));
    let logs = read_everything(&cluster, "moving", 1);
    let values: Vec<&String> = logs[0].values().collect();
    assert_eq!(values.len(), 200);
    assert!(values
        .iter()
        .enumerate()
        .all(|(i, v)| **v == format!("v-{i}")));
    cluster.wait_for("node 0 to drop its copy", || !old_dir.exists());
    // A cancel with nothing in progress is refused with Kafka's error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "topic",
            "reassign",
            "moving",
            "--partition",
            "0",
            "--cancel",
            "--bootstrap",
        ])
        .arg(&cluster.nodes[1].addr)
        .env_remove("SLUICE_BOOTSTRAP")
        .output()
        .expect("sluice cli");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NO_REASSIGNMENT_IN_PROGRESS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
