//! Crash safety: with `--flush always`, a producer using acks=all is interrupted by `kill -9`
//! of the broker several times; after each restart every acknowledged message is still there,
//! exactly once, with contiguous offsets.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::message::Header;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, Producer};

const ROUNDS: usize = 3;
const PARTITIONS: i32 = 2;

#[test]
fn acked_messages_survive_repeated_kill_9() {
    let mut broker = Broker::start(&["--flush", "always", "--cores", "2"]);
    broker.create_topic("crash", PARTITIONS, &[]);
    // value -> (partition, offset) for every acknowledged message
    let mut acked: HashMap<String, (i32, i64)> = HashMap::new();
    for round in 0..ROUNDS {
        let producer = Arc::new(broker.producer(&[
            ("acks", "all"),
            ("enable.idempotence", "false"),
            ("message.send.max.retries", "0"),
            ("linger.ms", "1"),
            ("message.timeout.ms", "5000"),
        ]));
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let producer = producer.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0usize;
                let deadline = Instant::now() + WAIT;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let value = format!("r{round}-{i}");
                    let rec: BaseRecord<'_, [u8], [u8], Box<usize>> =
                        BaseRecord::with_opaque_to("crash", Box::new(i))
                            .partition((i % PARTITIONS as usize) as i32)
                            .payload(value.as_bytes())
                            .headers(OwnedHeaders::new().insert(Header {
                                key: "v",
                                value: Some(value.as_bytes()),
                            }));
                    if producer.send(rec).is_ok() {
                        i += 1;
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                i
            })
        };
        // Let a few hundred acks through, then crash the broker mid-stream.
        let deadline = Instant::now() + WAIT;
        while producer
            .context()
            .out
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.is_ok())
            .count()
            < 300
        {
            assert!(Instant::now() < deadline, "no progress before the crash");
            std::thread::sleep(Duration::from_millis(5));
        }
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().unwrap();
        let _ = producer.flush(Duration::from_secs(10));
        let reports = std::mem::take(&mut *producer.context().out.lock().unwrap());
        assert!(reports.len() <= sent);
        for (i, r) in reports {
            if let Ok(pos) = r {
                acked.insert(format!("r{round}-{i}"), pos);
            }
        }
        drop(producer);
        broker.restart();
    }
    assert!(acked.len() >= ROUNDS * 300);

    // Everything in the log, in order: every acked message exactly once at its acked offset.
    let consumer = broker.consumer(&[]);
    let (mut total, mut ends) = (0usize, BTreeMap::new());
    for p in 0..PARTITIONS {
        let (lo, hi) =
            rdkafka::consumer::Consumer::fetch_watermarks(&consumer, "crash", p, WAIT).unwrap();
        assert_eq!(lo, 0);
        ends.insert(p, hi);
        total += hi as usize;
    }
    let got = consume_n(&consumer, "crash", PARTITIONS, total);
    assert_eq!(got.len(), total);
    let mut seen: HashMap<String, (i32, i64)> = HashMap::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &got {
        let expect = next.entry(r.partition).or_insert(0);
        assert_eq!(
            r.offset, *expect,
            "offsets contiguous in partition {}",
            r.partition
        );
        *expect += 1;
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        assert!(
            seen.insert(v.clone(), (r.partition, r.offset)).is_none(),
            "{v} appears twice"
        );
    }
    for (v, pos) in &acked {
        assert_eq!(
            seen.get(v),
            Some(pos),
            "acknowledged {v} is at its acknowledged position"
        );
    }
    assert!(!broker.log().contains("panicked"));
}

/// A broker started again the moment its predecessor was killed gets the same address: the
/// kernel keeps a killed broker's listening socket bound for some milliseconds after the
/// process is reaped (its io_uring ring is torn down later), and start-up waits for it
/// instead of failing with "address in use". `restart_at` does not retry, so a broker that
/// gives up fails this test.
/// After kill -9 a restart in the same boot trusts each partition's boot checkpoint: every
/// acknowledged record is back and the recovery scan reads little of what was written, where
/// without the checkpoint (as after a reboot) it reads all of it.
#[test]
fn after_kill_9_recovery_scans_only_past_the_boot_checkpoint() {
    let mut broker = Broker::start(&["--cores", "1", "--boot-checkpoint-interval-ms", "1"]);
    broker.create_topic("warm", 1, &[]);
    let producer = broker.producer(&[("acks", "1"), ("linger.ms", "0")]);
    let outs: Vec<Out> = (0..8000u32)
        .map(|i| Out {
            value: Some(format!("{i:>1000}").into_bytes()),
            ..Out::default()
        })
        .collect();
    let delivered = produce_all(&producer, "warm", &outs);
    assert!(
        delivered.iter().all(Result::is_ok),
        "every record acknowledged"
    );
    drop(producer);
    broker.kill9();
    broker.restart();
    let data = broker.metric("sluice_partition_size_bytes");
    let scanned = broker.metric("sluice_log_recovery_scanned_bytes");
    assert!(data > 8_000_000, "{data} bytes of data");
    assert!(
        scanned < data / 4,
        "the scan read {scanned} bytes of {data}: the boot checkpoint was not used"
    );
    // Killed again, and the boot checkpoint removed as a reboot would leave it ignored: the
    // scan reads everything the fsynced state does not cover, which here is all of it.
    broker.kill9();
    std::fs::remove_file(broker.data_dir.join("warm-0").join("boot.checkpoint"))
        .expect("the partition has a boot checkpoint");
    broker.restart();
    let scanned = broker.metric("sluice_log_recovery_scanned_bytes");
    assert!(scanned >= data, "the scan read {scanned} bytes of {data}");
    let consumer = broker.consumer(&[]);
    let got = consume_n(&consumer, "warm", 1, 8000);
    let values: Vec<_> = got.iter().filter_map(|r| r.value.clone()).collect();
    let want: Vec<_> = outs.into_iter().filter_map(|o| o.value).collect();
    assert_eq!(values, want);
    assert!(!broker.log().contains("panicked"));
}

#[test]
fn a_broker_restarted_at_once_after_kill_9_listens_on_the_same_address() {
    let addr = address_outside_ephemeral_range();
    let mut broker = Broker::start_at(&addr, &["--cores", "2"]);
    broker.create_topic("again", 1, &[]);
    for round in 0..5 {
        // Connections on both shards, so both rings hold sockets when the broker dies.
        let producer = broker.producer(&[("acks", "all")]);
        let out = Out {
            value: Some(format!("round {round}").into_bytes()),
            ..Out::default()
        };
        let delivered = produce_all(&producer, "again", &[out]);
        assert_eq!(delivered, vec![Ok((0, round))], "round {round}");
        drop(producer);
        broker.kill9();
        broker.restart_at(&addr);
        assert_eq!(
            broker.addr, addr,
            "round {round}: listening on the same address"
        );
    }
    let consumer = broker.consumer(&[]);
    let got = consume_n(&consumer, "again", 1, 5);
    let values: Vec<_> = got.iter().filter_map(|r| r.value.clone()).collect();
    let want: Vec<_> = (0..5).map(|r| format!("round {r}").into_bytes()).collect();
    assert_eq!(values, want);
    assert!(!broker.log().contains("panicked"));
}
