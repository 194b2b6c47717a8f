//! Disk full: on a small loop-mounted ext4 filesystem, producers get KAFKA_STORAGE_ERROR once
//! the disk fills, everything acknowledged stays readable, the log says what happened, and
//! normal service resumes when space returns. Needs root (mount); CI runs as root.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::raw::{idempotent_batch, Raw};
use common::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

/// A loop-mounted ext4 image, unmounted on drop.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(megabytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir_all(&mount).unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("run");
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("truncate")
            .arg("-s")
            .arg(format!("{megabytes}M"))
            .arg(&image));
        run(Command::new("mkfs.ext4").arg("-q").arg("-F").arg(&image));
        run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&image)
            .arg(&mount));
        SmallDisk { mount, _dir: dir }
    }

    fn free_bytes(&self) -> u64 {
        df(&self.mount, "avail")
    }

    fn used_bytes(&self) -> u64 {
        df(&self.mount, "used")
    }
}

/// One `df -B1 --output=<field>` figure of the filesystem holding `path`, in bytes.
fn df(path: &Path, field: &str) -> u64 {
    let out = Command::new("df")
        .arg("-B1")
        .arg(format!("--output={field}"))
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn fill(path: &Path, bytes: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(0).unwrap();
    use std::io::Write;
    let mut w = std::io::BufWriter::new(f);
    let chunk = vec![0xAAu8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if w.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    let _ = w.flush();
    let _ = w.get_ref().sync_all();
}

fn produce(raw: &mut Raw, batch: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("full")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let resp: ProduceResponse = raw.call(ApiKey::Produce, 9, &req);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn disk_full_refuses_writes_keeps_acknowledged_data_and_recovers() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test mounts a filesystem and needs root (CI runs as root)"
    );
    let disk = SmallDisk::new(48);
    let data_dir = disk.mount.join("data");
    let mut broker = Broker::start(&[
        "--log-segment-bytes",
        "4194304",
        "--offsets-topic-num-partitions",
        "1",
    ]);
    // Move the broker onto the small disk: restart it there.
    broker.stop();
    broker.data_dir = data_dir.clone();
    broker.restart();
    broker.create_topic("full", 1, &[]);
    let filler = disk.mount.join("filler");
    let leave = 6 << 20;
    fill(&filler, disk.free_bytes().saturating_sub(leave));

    let mut raw = Raw::connect(&broker.addr);
    let mut acked: Vec<(i64, usize)> = Vec::new(); // (base offset, records)
    let mut seq = 0i32;
    let mut storage_errors = 0;
    for _ in 0..2000 {
        let batch = idempotent_batch(-1, -1, seq, 64, &"x".repeat(1000));
        let (err, base) = produce(&mut raw, batch);
        if err == 0 {
            acked.push((base, 64));
            seq += 64;
        } else {
            assert_eq!(
                err,
                ResponseError::KafkaStorageError.code(),
                "disk full is a storage error"
            );
            storage_errors += 1;
            if storage_errors >= 3 {
                break;
            }
        }
    }
    assert!(
        storage_errors >= 3,
        "the disk filled up ({} batches acked)",
        acked.len()
    );
    assert!(!acked.is_empty());
    let acked_records: usize = acked.iter().map(|a| a.1).sum();

    // Reads keep working and everything acknowledged is there.
    let consumer = broker.consumer(&[]);
    let got = consume_n(&consumer, "full", 1, acked_records);
    assert_eq!(got.len(), acked_records);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
    }
    assert!(
        broker.log().contains("No space left on device"),
        "a clear log line says what happened"
    );

    // Space returns: writes work again, offsets continue without a gap.
    std::fs::remove_file(&filler).unwrap();
    let mut ok_after = 0;
    for _ in 0..50 {
        let (err, base) = produce(&mut raw, idempotent_batch(-1, -1, seq, 10, "after"));
        if err == 0 {
            assert_eq!(base, acked_records as i64 + 10 * ok_after);
            ok_after += 1;
            seq += 10;
            if ok_after == 5 {
                break;
            }
        }
    }
    assert_eq!(ok_after, 5, "service resumed");
    let got = consume_n(&broker.consumer(&[]), "full", 1, acked_records + 50);
    assert_eq!(got.len(), acked_records + 50);
    // And it all survives a restart.
    assert_eq!(broker.stop(), Some(0));
    broker.restart();
    let got = consume_n(&broker.consumer(&[]), "full", 1, acked_records + 50);
    assert_eq!(got.len(), acked_records + 50);
    broker.kill9();
    assert!(!broker.log().contains("panicked"));
}

/// Issue 20, item 8: with the disk full — filled by a topic's own data — and the broker's
/// stdout/stderr on that disk, DeleteTopics succeeds and frees the space, produce is
/// acknowledged again without a restart, the broker stops cleanly (no panic on a failed log
/// write: the lines are counted instead), and every acknowledged record survives the restart.
#[test]
fn delete_topic_on_a_full_disk_frees_space_and_service_resumes() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test mounts a filesystem and needs root (CI runs as root)"
    );
    let disk = SmallDisk::new(48);
    let mut broker = Broker::start(&[
        "--log-segment-bytes",
        "4194304",
        "--offsets-topic-num-partitions",
        "1",
    ]);
    broker.stop();
    broker.data_dir = disk.mount.join("data");
    broker.output = Some(disk.mount.join("broker.out"));
    broker.restart();
    broker.create_topic("keep", 1, &[]);
    broker.create_topic("bulk", 1, &[]);

    let mut raw = Raw::connect(&broker.addr);
    let mut kept = 0usize;
    let mut seq = 0;
    for _ in 0..10 {
        let (err, base) = raw.produce("keep", 0, idempotent_batch(-1, -1, seq, 10, "keep"));
        assert_eq!((err, base), (0, kept as i64));
        kept += 10;
        seq += 10;
    }
    // Fill the disk with the bulk topic's data, then whatever is left with a file.
    let mut bulk_seq = 0;
    let mut storage_errors = 0;
    for _ in 0..4000 {
        let batch = idempotent_batch(-1, -1, bulk_seq, 64, &"b".repeat(1000));
        match raw.produce("bulk", 0, batch).0 {
            0 => bulk_seq += 64,
            e => {
                assert_eq!(e, ResponseError::KafkaStorageError.code());
                storage_errors += 1;
                if storage_errors >= 3 {
                    break;
                }
            }
        }
    }
    assert!(storage_errors >= 3, "the disk filled up");
    fill(&disk.mount.join("filler"), disk.free_bytes() + (64 << 20));
    // The keep partition may still have a little preallocated room: use it up.
    let mut full = false;
    for _ in 0..1000 {
        let (err, base) = raw.produce("keep", 0, idempotent_batch(-1, -1, seq, 10, "keep"));
        if err != 0 {
            assert_eq!(err, ResponseError::KafkaStorageError.code());
            full = true;
            break;
        }
        assert_eq!(base, kept as i64);
        kept += 10;
        seq += 10;
    }
    assert!(full, "the disk is full");
    // Make the broker log more than a page while the disk is full (a tmpfs file still takes
    // bytes into its last, partly used page): each undecodable request is logged as it closes
    // its connection.
    for _ in 0..64 {
        let mut bad = Raw::connect(&broker.addr);
        bad.send_frame(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(
            bad.recv_frame().is_none(),
            "an undecodable request is not answered"
        );
    }

    // Deleting the topic works on the full disk and frees its space.
    let req = kafka_protocol::messages::DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(StrBytes::from_static_str("bulk"))])
        .with_timeout_ms(30_000);
    let r: kafka_protocol::messages::DeleteTopicsResponse = raw.call(ApiKey::DeleteTopics, 4, &req);
    assert_eq!(
        r.responses[0].error_code, 0,
        "DeleteTopics on a full disk: {r:?}"
    );
    assert!(disk.free_bytes() > 8 << 20, "the topic's space was freed");

    // Produce is acknowledged again, at the next offset, without a restart.
    let (err, base) = raw.produce("keep", 0, idempotent_batch(-1, -1, seq, 10, "keep"));
    assert_eq!((err, base), (0, kept as i64), "produce resumed");
    kept += 10;

    // Log lines written while the disk was full were dropped and counted, not fatal.
    let (status, metrics) = http_get(&broker.metrics_addr, "/metrics");
    assert_eq!(status, 200);
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluice_log_write_errors_total "))
        .and_then(|v| v.parse().ok())
        .expect("sluice_log_write_errors_total");
    assert!(
        dropped > 0.0,
        "log writes failed on the full disk and were counted"
    );

    assert_eq!(broker.stop(), Some(0), "clean stop, no panic or abort");
    broker.restart();
    let got = consume_n(&broker.consumer(&[]), "keep", 1, kept);
    assert_eq!(got.len(), kept);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
    }
    assert!(!broker.log().contains("panicked"));
}

/// Issue 20, item 9: empty partitions reserve no space (10,000 of them used 80 GB of
/// preallocation before), and a CreateTopics that does not fit the disk fails with
/// KAFKA_STORAGE_ERROR and leaves no half-made topic.
#[test]
fn empty_partitions_take_little_space_and_create_topics_fails_cleanly_when_full() {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    use rdkafka::consumer::Consumer;
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test mounts a filesystem and needs root (CI runs as root)"
    );
    let disk = SmallDisk::new(2048);
    let mut broker = Broker::start(&["--offsets-topic-num-partitions", "1"]);
    broker.stop();
    broker.data_dir = disk.mount.join("data");
    // The log outside the small disk, so it keeps what happened while the disk is full.
    let log_dir = tempfile::tempdir().expect("tempdir");
    broker.output = Some(log_dir.path().join("broker.out"));
    broker.restart();
    let before = disk.used_bytes();
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = broker
        .client_config()
        .set("socket.timeout.ms", "300000")
        .create()
        .expect("admin");
    let opts = AdminOptions::new()
        .operation_timeout(Some(std::time::Duration::from_secs(300)))
        .request_timeout(Some(std::time::Duration::from_secs(300)));
    let names: Vec<String> = (0..10).map(|i| format!("empty-{i}")).collect();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 1000, TopicReplication::Fixed(1)))
        .collect();
    for r in futures_executor::block_on(admin.create_topics(&topics, &opts)).unwrap() {
        r.expect("created");
    }
    let used = disk.used_bytes() - before;
    eprintln!("10,000 empty partitions use {} MiB", used >> 20);
    assert!(used < 1 << 30, "10,000 empty partitions use {used} bytes");
    assert_eq!(broker.stop(), Some(0));
    let started = std::time::Instant::now();
    broker.restart();
    eprintln!("restart with 10,000 partitions: {:?}", started.elapsed());

    // A topic that does not fit: the disk is full (root's reserved blocks too).
    fill(&disk.mount.join("filler"), u64::MAX);
    let big = NewTopic::new("no-room", 200, TopicReplication::Fixed(1));
    let r = futures_executor::block_on(admin.create_topics([&big], &opts)).unwrap();
    match &r[0] {
        Err((name, code)) => {
            assert_eq!(name, "no-room");
            assert_eq!(*code, rdkafka::types::RDKafkaErrorCode::KafkaStorageError);
        }
        Ok(_) => panic!("CreateTopics succeeded on a full disk"),
    }
    let md = broker
        .consumer(&[])
        .fetch_metadata(None, std::time::Duration::from_secs(10))
        .expect("metadata");
    assert!(
        md.topics().iter().all(|t| t.name() != "no-room"),
        "no half-made topic"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&broker.data_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("no-room"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "directories left: {leftovers:?}\n{}",
        broker.log()
    );
    // The broker still serves: space returns, the topic can be created.
    std::fs::remove_file(disk.mount.join("filler")).unwrap();
    for r in futures_executor::block_on(admin.create_topics([&big], &opts)).unwrap() {
        r.expect("created once space returned");
    }
    assert_eq!(broker.stop(), Some(0));
}
