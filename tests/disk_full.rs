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
        let out = Command::new("df")
            .arg("-B1")
            .arg("--output=avail")
            .arg(&self.mount)
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
