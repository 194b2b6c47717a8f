//! Shared helpers for the storage integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use sluice_storage::test_util::{build_batch, BatchSpec};
use sluice_storage::{validate_batches, BatchHeader, FlushPolicy, IoMode, Log, LogConfig};

pub fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sluice-storage-test")
        .tempdir_in(std::env::temp_dir())
        .unwrap()
}

pub fn config(mode: IoMode) -> LogConfig {
    LogConfig {
        io_mode: mode,
        flush: FlushPolicy::Never,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

pub fn batch(records: i32, ts: i64, value_bytes: usize) -> Bytes {
    Bytes::from(build_batch(
        &BatchSpec::new(records)
            .base_timestamp(ts)
            .value_bytes(value_bytes),
    ))
}

/// A transactional batch of `n` records from (pid, epoch) starting at sequence `seq`.
pub fn txn_batch(pid: i64, epoch: i16, seq: i32, n: i32) -> Bytes {
    producer_batch(&BatchSpec::new(n), 0x10, pid, epoch, seq)
}

/// An idempotent (not transactional) batch of `n` records of `value_bytes` each from
/// (pid, epoch 0) starting at sequence `seq`.
pub fn idempotent_batch(pid: i64, seq: i32, n: i32, value_bytes: usize) -> Bytes {
    producer_batch(&BatchSpec::new(n).value_bytes(value_bytes), 0, pid, 0, seq)
}

/// A batch of `spec` with `attributes` and a producer's id, epoch and first sequence.
fn producer_batch(spec: &BatchSpec, attributes: i16, pid: i64, epoch: i16, seq: i32) -> Bytes {
    let mut b = build_batch(spec);
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    sluice_storage::test_util::set_crc(&mut b);
    Bytes::from(b)
}

pub async fn open(dir: &Path, cfg: LogConfig) -> Rc<Log> {
    Log::open(PathBuf::from(dir), cfg).await.unwrap()
}

/// Reads everything from `from` to the written offset; returns the batch headers.
pub async fn read_all(log: &Log, from: i64, max_bytes: usize) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut next = from;
    for _ in 0..100_000 {
        if next >= log.written_offset() {
            break;
        }
        let r = log.read(next, max_bytes, i64::MAX).await.unwrap();
        assert!(
            !r.chunks.is_empty(),
            "empty read at {next} below the written offset"
        );
        for c in &r.chunks {
            let hs = validate_batches(c).expect("stored batches must be valid");
            for h in hs {
                assert!(h.last_offset() >= next);
                next = h.last_offset() + 1;
                out.push(h);
            }
        }
    }
    out
}

/// Checks headers are contiguous from `from` and end at `end`.
pub fn assert_contiguous(hs: &[BatchHeader], from: i64, end: i64) {
    let mut next = from;
    for (i, h) in hs.iter().enumerate() {
        if i == 0 {
            assert!(h.base_offset <= next && h.last_offset() >= next);
        } else {
            assert_eq!(h.base_offset, next, "gap or overlap at batch {i}");
        }
        next = h.last_offset() + 1;
    }
    assert_eq!(next, end);
}

pub fn active_segment(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}
