//! Integration tests of `Log`: round trips, rolls, reopen, crash recovery, retention, errors.

mod common;

use common::*;
use sluice_storage::{FlushPolicy, IoMode, LogConfig, StorageError, TimestampType};

const TS: i64 = 1_700_000_000_000;

async fn round_trip(mode: IoMode) {
    let dir = tmpdir();
    let log = open(dir.path(), config(mode)).await;
    assert_eq!(log.log_end_offset(), 0);
    let mut expected_end = 0;
    let mut max_ts = 0;
    for i in 0..200 {
        let n = 1 + i % 7;
        max_ts = max_ts.max(TS + i as i64 + n as i64 - 1);
        let info = log
            .append(batch(n, TS + i as i64, 1 + (i as usize * 37) % 3000), 3, TS)
            .unwrap();
        assert_eq!(info.base_offset, expected_end);
        assert_eq!(info.last_offset, expected_end + n as i64 - 1);
        assert_eq!(info.log_append_time_ms, -1);
        expected_end += n as i64;
    }
    assert_eq!(log.log_end_offset(), expected_end);
    log.wait_written(expected_end - 1).await.unwrap();
    assert_eq!(log.written_offset(), expected_end);
    // One small read returns exactly one whole batch.
    let r = log.read(0, 1, i64::MAX).await.unwrap();
    assert_eq!(
        sluice_storage::validate_batches(&r.chunks[0])
            .unwrap()
            .len(),
        1
    );
    let hs = read_all(&log, 0, 10_000).await;
    assert_contiguous(&hs, 0, expected_end);
    assert!(hs.iter().all(|h| h.partition_leader_epoch == 3));
    // Reads from the middle of a batch return the containing batch.
    let r = log.read(5, 1, i64::MAX).await.unwrap();
    let h = sluice_storage::validate_batches(&r.chunks[0]).unwrap()[0];
    assert!(h.base_offset <= 5 && h.last_offset() >= 5);
    // At the written offset: empty; beyond: out of range.
    assert!(log
        .read(expected_end, 100, i64::MAX)
        .await
        .unwrap()
        .chunks
        .is_empty());
    assert!(matches!(
        log.read(expected_end + 1, 100, i64::MAX).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.max_timestamp().map(|(t, _)| t), Some(max_ts));
    log.close().await.unwrap();
    assert!(matches!(
        log.append(batch(1, TS, 1), 0, TS),
        Err(StorageError::Closed)
    ));
}

#[compio::test]
async fn round_trip_direct() {
    round_trip(IoMode::Direct).await;
}

#[compio::test]
async fn round_trip_buffered() {
    round_trip(IoMode::Buffered).await;
}

#[compio::test]
async fn direct_mode_is_really_used_on_ext4() {
    let dir = tmpdir();
    let log = open(dir.path(), config(IoMode::Direct)).await;
    // /tmp may be tmpfs on some machines: then the fallback must have kicked in.
    let m = log.io_mode();
    assert!(m == IoMode::Direct || m == IoMode::Buffered);
    log.close().await.unwrap();
}

async fn roll_and_read(mode: IoMode) {
    let dir = tmpdir();
    let cfg = LogConfig {
        segment_bytes: 8192,
        index_interval_bytes: 512,
        tail_cache_bytes: 0,
        ..config(mode)
    };
    let log = open(dir.path(), cfg.clone()).await;
    let mut end = 0;
    for i in 0..300 {
        let info = log
            .append(batch(2, TS + i, 100 + (i as usize % 5) * 50), 0, TS)
            .unwrap();
        end = info.last_offset + 1;
        if i % 17 == 0 {
            log.wait_written(info.last_offset).await.unwrap();
        }
    }
    log.wait_written(end - 1).await.unwrap();
    assert!(
        log.segment_count() > 10,
        "segments: {}",
        log.segment_count()
    );
    for max in [1, 300, 5000, 100_000] {
        let hs = read_all(&log, 0, max).await;
        assert_contiguous(&hs, 0, end);
    }
    for off in (0..end).step_by(7) {
        let r = log.read(off, 1, i64::MAX).await.unwrap();
        let h = sluice_storage::validate_batches(&r.chunks[0]).unwrap()[0];
        assert!(
            h.base_offset <= off && off <= h.last_offset(),
            "offset {off}"
        );
    }
    let data_bytes = log.size_bytes();
    log.close().await.unwrap();
    // Rolls and the close cut every segment to its exact length: no preallocation (run on
    // another thread) extended one after its cut.
    assert_eq!(log_files_bytes(dir.path()), data_bytes);
    // Reopen: same content, no data lost; segments sealed at exact lengths.
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_end_offset(), end);
    let hs = read_all(&log, 0, 4096).await;
    assert_contiguous(&hs, 0, end);
    log.close().await.unwrap();
}

/// Reads from the disk read the next chunk ahead; a truncation and new data at the offset it
/// was read for must not be served from it.
#[compio::test]
async fn a_read_ahead_never_serves_what_a_truncation_replaced() {
    let dir = tmpdir();
    let cfg = LogConfig {
        tail_cache_bytes: 0,
        ..config(IoMode::Direct)
    };
    let log = open(dir.path(), cfg).await;
    for _ in 0..100 {
        log.append(batch(1, TS, 1000), 0, TS).unwrap();
    }
    log.wait_written(99).await.unwrap();
    let first = log.read(0, 4000, i64::MAX).await.unwrap();
    let hs = sluice_storage::validate_batches(&first.chunks[0]).unwrap();
    let next = hs.last().unwrap().last_offset() + 1;
    if log.io_mode() == IoMode::Direct {
        assert!(sluice_storage::readahead_usage() > 0, "nothing read ahead");
    }
    log.truncate_to(next).await.unwrap();
    for _ in 0..10 {
        log.append(batch(1, TS, 200), 0, TS).unwrap();
    }
    log.wait_written(next + 9).await.unwrap();
    let r = log.read(next, 4000, i64::MAX).await.unwrap();
    let hs = sluice_storage::validate_batches(&r.chunks[0]).unwrap();
    assert_eq!(hs[0].base_offset, next);
    assert!(hs[0].total_size() < 400, "the old batch came back");
    // Sequential reads of the rest, from the read-ahead, hold every batch once.
    let all = read_all(&log, 0, 3000).await;
    assert_contiguous(&all, 0, next + 10);
    log.close().await.unwrap();
}

#[compio::test]
async fn roll_and_read_direct() {
    roll_and_read(IoMode::Direct).await;
}

#[compio::test]
async fn roll_and_read_buffered() {
    roll_and_read(IoMode::Buffered).await;
}

#[compio::test]
async fn reopen_after_crash_without_close() {
    for mode in [IoMode::Direct, IoMode::Buffered] {
        let dir = tmpdir();
        let cfg = LogConfig {
            segment_bytes: 16384,
            ..config(mode)
        };
        let log = open(dir.path(), cfg.clone()).await;
        let mut end = 0;
        for i in 0..100 {
            end = log
                .append(batch(3, TS + i, 200), 1, TS)
                .unwrap()
                .last_offset
                + 1;
        }
        log.wait_written(end - 1).await.unwrap();
        let max_ts = log.max_timestamp();
        drop(log); // crash: no close, no checkpoint, padded tail
        let log = open(dir.path(), cfg.clone()).await;
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.max_timestamp(), max_ts);
        assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end);
        // Appending after recovery continues at the right offset and position.
        let info = log.append(batch(1, TS, 10), 1, TS).unwrap();
        assert_eq!(info.base_offset, end);
        log.wait_written(end).await.unwrap();
        log.close().await.unwrap();
        let log = open(dir.path(), cfg).await;
        assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end + 1);
        log.close().await.unwrap();
    }
}

/// THE crash test: the last batch cut at every byte, and each of its bytes flipped.
#[compio::test]
async fn torn_and_corrupt_last_batch() {
    let dir = tmpdir();
    let cfg = config(IoMode::Buffered);
    let log = open(dir.path(), cfg.clone()).await;
    let mut end = 0;
    for i in 0..5 {
        end = log.append(batch(2, TS + i, 30), 0, TS).unwrap().last_offset + 1;
    }
    log.wait_written(end - 1).await.unwrap();
    log.close().await.unwrap();
    let seg = active_segment(dir.path());
    let good = std::fs::read(&seg).unwrap();
    let mut last = sluice_storage::test_util::build_batch(
        &sluice_storage::test_util::BatchSpec::new(2)
            .base_offset(end)
            .value_bytes(30),
    );
    // Patch leader epoch to 0 as the log would (outside the CRC).
    last[12..16].copy_from_slice(&0i32.to_be_bytes());
    let mut cases: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for cut in 0..last.len() {
        cases.push((format!("cut {cut}"), last[..cut].to_vec(), false));
    }
    for at in 0..last.len() {
        if (12..16).contains(&at) {
            continue; // leader epoch is not covered by the CRC
        }
        let mut b = last.clone();
        b[at] ^= 0x41;
        cases.push((format!("flip {at}"), b, false));
    }
    cases.push(("whole".into(), last.clone(), true));
    for (drop_checkpoint, (name, tail, whole)) in
        cases.into_iter().enumerate().map(|(i, c)| (i % 3 == 0, c))
    {
        let mut bytes = good.clone();
        bytes.extend_from_slice(&tail);
        std::fs::write(&seg, &bytes).unwrap();
        if drop_checkpoint {
            let _ = std::fs::remove_file(dir.path().join("sluice.checkpoint"));
        }
        let log = open(dir.path(), cfg.clone()).await;
        let want = if whole { end + 2 } else { end };
        assert_eq!(log.log_end_offset(), want, "{name}");
        assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, want);
        log.close().await.unwrap();
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len() as usize,
            good.len() + if whole { last.len() } else { 0 },
            "{name}"
        );
        if whole {
            std::fs::write(&seg, &good).unwrap();
        }
    }
}

#[compio::test]
async fn corrupt_index_and_checkpoint_are_rebuilt() {
    let dir = tmpdir();
    let cfg = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..config(IoMode::Buffered)
    };
    let log = open(dir.path(), cfg.clone()).await;
    let mut end = 0;
    for i in 0..100 {
        end = log
            .append(batch(1, TS + i, 100), 0, TS)
            .unwrap()
            .last_offset
            + 1;
    }
    log.wait_written(end - 1).await.unwrap();
    log.close().await.unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_owned();
        if ext == "index" || ext == "timeindex" || p.ends_with("sluice.checkpoint") {
            let mut b = std::fs::read(&p).unwrap();
            let at = b.len() / 2;
            b[at] ^= 0xff;
            std::fs::write(&p, b).unwrap();
        }
    }
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_end_offset(), end);
    assert_contiguous(&read_all(&log, 0, 1000).await, 0, end);
    assert_eq!(
        log.offset_for_timestamp(TS + 50).await.unwrap(),
        Some((50, TS + 50))
    );
    log.close().await.unwrap();
}

#[compio::test]
async fn malformed_and_too_large_leave_log_untouched() {
    let dir = tmpdir();
    let cfg = LogConfig {
        max_message_bytes: 1000,
        ..config(IoMode::Buffered)
    };
    let log = open(dir.path(), cfg).await;
    log.append(batch(1, TS, 10), 0, TS).unwrap();
    let mut bad = batch(1, TS, 10).to_vec();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        log.append(bad.into(), 0, TS),
        Err(StorageError::Batch(_))
    ));
    assert!(matches!(
        log.append(bytes::Bytes::new(), 0, TS),
        Err(StorageError::Batch(_))
    ));
    assert!(matches!(
        log.append(batch(1, TS, 2000), 0, TS),
        Err(StorageError::MessageTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), 1);
    log.close().await.unwrap();
}

#[compio::test]
async fn log_append_time_rewrites_timestamp_and_crc() {
    let dir = tmpdir();
    let cfg = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..config(IoMode::Direct)
    };
    let log = open(dir.path(), cfg).await;
    let now = TS + 12345;
    let info = log.append(batch(3, TS, 10), 0, now).unwrap();
    assert_eq!(info.log_append_time_ms, now);
    assert_eq!(info.max_timestamp, now);
    log.wait_written(2).await.unwrap();
    let hs = read_all(&log, 0, 1000).await;
    assert_eq!(hs[0].max_timestamp, now);
    assert_eq!(hs[0].attributes & 0x08, 0x08);
    log.close().await.unwrap();
}

#[compio::test]
async fn retention_by_time_and_bytes() {
    let dir = tmpdir();
    let cfg = LogConfig {
        segment_bytes: 4096,
        ..config(IoMode::Buffered)
    };
    let log = open(dir.path(), cfg.clone()).await;
    let mut end = 0;
    for i in 0..100 {
        end = log
            .append(batch(1, TS + i * 1000, 200), 0, TS)
            .unwrap()
            .last_offset
            + 1;
    }
    log.wait_written(end - 1).await.unwrap();
    let segs = log.segment_count();
    assert!(segs > 5);
    // Nothing configured: nothing deleted.
    assert_eq!(log.enforce_retention(TS + 1_000_000).await.unwrap(), 0);
    // By time: everything older than 50 s before "now" = TS + 100 s.
    log.set_config(LogConfig {
        retention_ms: 50_000,
        ..cfg.clone()
    });
    let n = log.enforce_retention(TS + 100_000).await.unwrap();
    assert!(n > 0 && n < segs);
    let lso = log.log_start_offset();
    assert!(lso > 0 && lso <= 50, "lso {lso}");
    assert!(matches!(
        log.read(lso - 1, 100, i64::MAX).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_contiguous(&read_all(&log, lso, 1000).await, lso, end);
    // By bytes.
    log.set_config(LogConfig {
        retention_bytes: 8192,
        ..cfg.clone()
    });
    log.enforce_retention(TS).await.unwrap();
    assert!(
        log.size_bytes() >= 8192 && log.size_bytes() < 8192 + 4096 + 300,
        "{}",
        log.size_bytes()
    );
    let lso = log.log_start_offset();
    log.close().await.unwrap();
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_start_offset(), lso);
    assert_contiguous(&read_all(&log, lso, 1000).await, lso, end);
    log.close().await.unwrap();
}

#[compio::test]
async fn delete_records_and_timestamps_and_epochs() {
    let dir = tmpdir();
    let cfg = LogConfig {
        segment_bytes: 4096,
        ..config(IoMode::Direct)
    };
    let log = open(dir.path(), cfg.clone()).await;
    let mut end = 0;
    for i in 0..60 {
        let epoch = (i / 20) as i32 * 2; // epochs 0, 2, 4 starting at 0, 20, 40
        end = log
            .append(batch(1, TS + i * 10, 150), epoch, TS)
            .unwrap()
            .last_offset
            + 1;
    }
    log.wait_written(end - 1).await.unwrap();
    assert_eq!(log.offset_for_timestamp(TS).await.unwrap(), Some((0, TS)));
    assert_eq!(
        log.offset_for_timestamp(TS + 255).await.unwrap(),
        Some((26, TS + 260))
    );
    assert_eq!(log.offset_for_timestamp(TS + 10_000).await.unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((TS + 590, 59)));
    assert_eq!(log.end_offset_for_epoch(0), (0, 20));
    assert_eq!(log.end_offset_for_epoch(1), (0, 20));
    assert_eq!(log.end_offset_for_epoch(2), (2, 40));
    assert_eq!(log.end_offset_for_epoch(4), (4, 60));
    assert_eq!(log.end_offset_for_epoch(9), (-1, -1));
    let segs = log.segment_count();
    assert_eq!(log.delete_records_before(33).await.unwrap(), 33);
    assert!(log.segment_count() < segs);
    assert_eq!(
        log.read(33, 1, i64::MAX).await.unwrap().log_start_offset,
        33
    );
    assert!(log.read(32, 1, i64::MAX).await.is_err());
    assert_eq!(
        log.delete_records_before(10_000).await.unwrap(),
        end,
        "clamped to the written offset"
    );
    log.close().await.unwrap();
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_start_offset(), end);
    assert_eq!(log.end_offset_for_epoch(2), (2, 40));
    assert_eq!(log.end_offset_for_epoch(4), (4, 60));
    log.close().await.unwrap();
}

#[compio::test]
async fn io_failure_keeps_log_consistent_and_recovers() {
    let dir = tmpdir();
    let log = open(dir.path(), config(IoMode::Direct)).await;
    log.append(batch(2, TS, 100), 0, TS).unwrap();
    log.wait_written(1).await.unwrap();
    log.inject_write_failure_after(0);
    let info = log.append(batch(3, TS, 100), 0, TS).unwrap();
    assert_eq!(info.base_offset, 2);
    let err = log.wait_written(info.last_offset).await.unwrap_err();
    assert!(err.is_no_space(), "{err:?}");
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.written_offset(), 2);
    // Retry succeeds at the same offsets; written data intact.
    let info = log.append(batch(3, TS, 100), 0, TS).unwrap();
    assert_eq!(info.base_offset, 2);
    log.wait_written(info.last_offset).await.unwrap();
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, 5);
    log.close().await.unwrap();
    let log = open(dir.path(), config(IoMode::Direct)).await;
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, 5);
    log.close().await.unwrap();
}

/// Yields to the runtime until the writer has dropped everything queued after a failure.
async fn until_failed(log: &sluice_storage::Log) {
    for _ in 0..5000 {
        if log.log_end_offset() == log.written_offset() {
            return;
        }
        compio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("the injected write failure never happened");
}

/// A wait created at append time but first polled after its append failed and another append
/// wrote other batches at the same offsets must still report the failure (issue 20, item 1).
#[compio::test]
async fn wait_for_a_failed_append_fails_even_after_offsets_are_reused() {
    let dir = tmpdir();
    let log = open(dir.path(), config(IoMode::Direct)).await;
    log.append(batch(2, TS, 100), 0, TS).unwrap();
    log.wait_written(1).await.unwrap();
    log.inject_write_failure_after(0);
    let a = log.append(batch(3, TS, 100), 0, TS).unwrap();
    let wait_a = log.wait_append_written(&a);
    let wait_a_offset = log.wait_written(a.last_offset);
    until_failed(&log).await;
    let b = log.append(batch(5, TS, 100), 0, TS).unwrap();
    assert_eq!(
        b.base_offset, a.base_offset,
        "offsets of the failed append are reused"
    );
    log.wait_append_written(&b).await.unwrap();
    assert!(log.written_offset() > a.last_offset);
    let err = wait_a.await.unwrap_err();
    assert!(err.is_no_space(), "{err:?}");
    let err = wait_a_offset.await.unwrap_err();
    assert!(err.is_no_space(), "{err:?}");

    // A later failure at higher offsets does not hide the first one from an older wait.
    log.inject_write_failure_after(0);
    let a2 = log.append(batch(2, TS, 100), 0, TS).unwrap();
    let wait_a2 = log.wait_append_durable(&a2);
    until_failed(&log).await;
    let b2 = log.append(batch(4, TS, 100), 0, TS).unwrap();
    assert_eq!(b2.base_offset, a2.base_offset);
    log.wait_append_written(&b2).await.unwrap();
    log.inject_write_failure_after(0);
    let c2 = log.append(batch(1, TS, 100), 0, TS).unwrap();
    assert!(c2.base_offset > a2.last_offset);
    until_failed(&log).await;
    assert!(wait_a2.await.unwrap_err().is_no_space());
    let hs = read_all(&log, 0, 1 << 20).await;
    assert_contiguous(&hs, 0, log.written_offset());
    log.close().await.unwrap();
}

/// A backlog of several writes' worth is written as a pipeline (the next write built while one
/// is on the device); a failure in the middle drops the write already built behind it.
#[compio::test]
async fn pipelined_writes_and_failure_mid_pipeline() {
    // About 20 MiB of 513 KiB batches: about ten writes of at most 2 MiB, appended before the
    // writer runs, so one writer step pipelines them.
    let big = || batch(512, TS, 1000);
    for fail_after in [None, Some(0), Some(1), Some(2)] {
        let dir = tmpdir();
        let log = open(dir.path(), config(IoMode::Direct)).await;
        log.append(batch(3, TS, 100), 0, TS).unwrap();
        log.wait_written(2).await.unwrap();
        if let Some(ok) = fail_after {
            log.inject_write_failure_after(ok);
        }
        let mut end = 0;
        for _ in 0..40 {
            end = log.append(big(), 0, TS).unwrap().last_offset + 1;
        }
        let res = log.wait_written(end - 1).await;
        let written = log.written_offset();
        match fail_after {
            None => {
                res.unwrap();
                assert_eq!(written, end);
            }
            Some(ok) => {
                assert!(res.unwrap_err().is_no_space());
                assert_eq!(
                    log.log_end_offset(),
                    written,
                    "LEO back to the written offset"
                );
                assert!(written >= 3 && written < end, "written {written} end {end}");
                assert_eq!(
                    written == 3,
                    ok == 0,
                    "{ok} writes before the failure landed"
                );
                // A retry lands right after the last good write.
                let info = log.append(big(), 0, TS).unwrap();
                assert_eq!(info.base_offset, written);
                end = info.last_offset + 1;
                log.wait_written(end - 1).await.unwrap();
            }
        }
        assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end);
        let data_bytes = log.size_bytes();
        // The active segment is preallocated past its data (zeros), which recovery truncates.
        assert!(log_files_bytes(dir.path()) > data_bytes);
        drop(log); // crash: what is on disk must be exactly the same batches
        let log = open(dir.path(), config(IoMode::Direct)).await;
        assert_eq!(log.log_end_offset(), end);
        assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end);
        log.close().await.unwrap();
        assert_eq!(
            log_files_bytes(dir.path()),
            data_bytes,
            "close cuts to the exact length"
        );
    }
}

/// Preallocation runs on another thread while the writer goes on; a roll or the close cuts a
/// segment to its exact length only after it finished, or it would extend the file again.
#[compio::test]
async fn a_slow_preallocation_never_extends_a_segment_after_its_cut() {
    let dir = tmpdir();
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        ..config(IoMode::Direct)
    };
    let log = open(dir.path(), cfg.clone()).await;
    log.delay_preallocation(std::time::Duration::from_millis(20));
    let mut end = 0;
    // About 5 MiB in 100 KiB batches, each written before the next: windows are reserved
    // (and held up) all along, and segments roll every 10 or so.
    for i in 0..50 {
        let info = log.append(batch(100, TS + i, 1000), 0, TS).unwrap();
        end = info.last_offset + 1;
        log.wait_written(info.last_offset).await.unwrap();
    }
    assert!(
        log.segment_count() >= 4,
        "segments: {}",
        log.segment_count()
    );
    let data_bytes = log.size_bytes();
    log.close().await.unwrap();
    assert_eq!(log_files_bytes(dir.path()), data_bytes);
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_end_offset(), end);
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end);
    log.close().await.unwrap();
}

/// Total length of the `.log` files in `dir`.
fn log_files_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[compio::test]
async fn flush_always_and_interval() {
    for flush in [
        FlushPolicy::Always,
        FlushPolicy::Interval(std::time::Duration::from_millis(5)),
    ] {
        let dir = tmpdir();
        let log = open(
            dir.path(),
            LogConfig {
                flush,
                ..config(IoMode::Direct)
            },
        )
        .await;
        let mut last = 0;
        for _ in 0..20 {
            last = log.append(batch(1, TS, 100), 0, TS).unwrap().last_offset;
        }
        log.wait_durable(last).await.unwrap();
        assert_eq!(log.written_offset(), last + 1);
        if flush == FlushPolicy::Always {
            assert_eq!(log.durable_offset(), last + 1);
        }
        log.close().await.unwrap();
    }
}

#[compio::test]
async fn truncate_to_and_time_roll() {
    let dir = tmpdir();
    let cfg = LogConfig {
        segment_bytes: 4096,
        segment_ms: 1000,
        ..config(IoMode::Direct)
    };
    let log = open(dir.path(), cfg.clone()).await;
    let mut end = 0;
    for i in 0..50 {
        end = log
            .append(batch(2, TS + i, 120), (i / 10) as i32, TS)
            .unwrap()
            .last_offset
            + 1;
    }
    log.wait_written(end - 1).await.unwrap();
    log.truncate_to(41).await.unwrap(); // inside batch 40..41 → 40
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(log.written_offset(), 40);
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, 40);
    assert_eq!(log.end_offset_for_epoch(1), (1, 40));
    let info = log.append(batch(1, TS, 10), 7, TS).unwrap();
    assert_eq!(info.base_offset, 40);
    log.wait_written(40).await.unwrap();
    // Time-based roll.
    let segs = log.segment_count();
    log.maybe_roll(TS + 10).await.unwrap();
    assert_eq!(log.segment_count(), segs);
    log.maybe_roll(TS + 5000).await.unwrap();
    assert_eq!(log.segment_count(), segs + 1);
    log.close().await.unwrap();
    let log = open(dir.path(), cfg).await;
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, 41);
    assert_eq!(log.end_offset_for_epoch(7), (7, 41));
    log.delete().await.unwrap();
    assert!(!dir.path().exists());
}

#[compio::test]
async fn wait_written_beyond_wakes_on_write_and_close() {
    let dir = tmpdir();
    let log = open(dir.path(), config(IoMode::Buffered)).await;
    let l2 = log.clone();
    let waiter = compio::runtime::spawn(async move { l2.wait_written_beyond(0).await });
    log.append(batch(1, TS, 10), 0, TS).unwrap();
    waiter.await.unwrap();
    assert!(log.written_offset() > 0);
    // Cancel safety: dropping a pending wait is fine.
    drop(log.wait_written_beyond(100));
    // Closing ends a wait for offsets never written.
    let l2 = log.clone();
    let waiter = compio::runtime::spawn(async move { l2.wait_written_beyond(100).await });
    log.close().await.unwrap();
    waiter.await.unwrap();
}

/// `read` returns only batches whose base offset is below the upper bound, from the tail cache
/// and from disk alike.
#[compio::test]
async fn read_stops_below_the_upper_bound() {
    for tail_cache_bytes in [0, 1 << 20] {
        let dir = tmpdir();
        let cfg = LogConfig {
            segment_bytes: 4096,
            tail_cache_bytes,
            ..config(IoMode::Buffered)
        };
        let log = open(dir.path(), cfg).await;
        // Batches of 3 records: bases 0, 3, 6, ...
        let mut end = 0;
        for i in 0..40 {
            end = log
                .append(batch(3, TS + i, 200), 0, TS)
                .unwrap()
                .last_offset
                + 1;
        }
        log.wait_written(end - 1).await.unwrap();
        assert!(log.segment_count() > 2);
        for at in [0, 4, 29, 100] {
            for bound in [0, 3, 4, 6, 30, 31, 99, end, i64::MAX] {
                let r = log.read(at, 1 << 20, bound).await.unwrap();
                assert_eq!(r.written_offset, end);
                let hs: Vec<_> = r
                    .chunks
                    .iter()
                    .flat_map(|c| sluice_storage::validate_batches(c).unwrap())
                    .collect();
                assert_eq!(hs.is_empty(), at >= bound, "at {at} bound {bound}");
                assert!(
                    hs.iter().all(|h| h.base_offset < bound),
                    "at {at} bound {bound}"
                );
                if let Some(last) = hs.last() {
                    assert!(hs[0].base_offset <= at && at <= hs[0].last_offset());
                    // Reads end at a segment end on disk; otherwise at the bound.
                    let next = last.last_offset() + 1;
                    assert!(
                        next >= bound.min(end) || tail_cache_bytes == 0,
                        "at {at} bound {bound}"
                    );
                }
            }
        }
        assert!(matches!(
            log.read(end + 1, 100, i64::MAX).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.close().await.unwrap();
    }
}

/// Writes a small log to `$SLUICE_FIXTURE_DIR` for manual tool checks (segdump). Ignored by default.
#[compio::test]
#[ignore]
async fn write_fixture_dir() {
    let Ok(path) = std::env::var("SLUICE_FIXTURE_DIR") else {
        return;
    };
    let cfg = LogConfig {
        segment_bytes: 4096,
        ..config(IoMode::Direct)
    };
    let log = open(std::path::Path::new(&path), cfg).await;
    let mut last = 0;
    for i in 0..40 {
        last = log
            .append(batch(2, TS + i, 100), 1, TS)
            .unwrap()
            .last_offset;
    }
    log.wait_written(last).await.unwrap();
    drop(log);
}

/// Every stored byte of `log` from offset 0, as read.
async fn bytes_of(log: &sluice_storage::Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = 0;
    while next < log.written_offset() {
        let r = log.read(next, 1 << 20, i64::MAX).await.unwrap();
        for c in &r.chunks {
            out.extend_from_slice(c);
            let hs = sluice_storage::validate_batches(c).unwrap();
            next = hs.last().map_or(next, |h| h.last_offset() + 1);
        }
    }
    out
}

#[compio::test]
async fn a_follower_copy_keeps_offsets_epochs_and_bytes_and_survives_reopen() {
    let (ld, fd) = (tmpdir(), tmpdir());
    let mut cfg = config(IoMode::Direct);
    cfg.segment_bytes = 64 << 10;
    let leader = open(ld.path(), cfg.clone()).await;
    let follower = open(fd.path(), cfg.clone()).await;
    for i in 0..60 {
        let epoch = i / 20; // epochs 0, 1, 2
        leader
            .append(batch(1 + i % 4, TS + i as i64, 900), epoch, TS)
            .unwrap();
    }
    leader
        .wait_written(leader.log_end_offset() - 1)
        .await
        .unwrap();

    // Copy in fetch-sized pieces, as a follower does.
    let mut next = 0;
    while next < leader.written_offset() {
        let r = leader.read(next, 5000, i64::MAX).await.unwrap();
        for chunk in r.chunks {
            let info = follower.append_replicated(chunk, TS).unwrap();
            assert_eq!(info.base_offset, next);
            next = info.last_offset + 1;
        }
    }
    follower.wait_written(next - 1).await.unwrap();
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(
        bytes_of(&follower).await,
        bytes_of(&leader).await,
        "byte-identical copies"
    );
    for epoch in 0..3 {
        assert_eq!(
            follower.end_offset_for_epoch(epoch),
            leader.end_offset_for_epoch(epoch)
        );
    }

    // A gap or an overlap is refused and changes nothing.
    let end = follower.log_end_offset();
    let again = leader.read(0, 1, i64::MAX).await.unwrap().chunks[0].clone();
    assert!(matches!(
        follower.append_replicated(again, TS),
        Err(StorageError::NotContiguous { expected, got: 0 }) if expected == end
    ));
    assert_eq!(follower.log_end_offset(), end);

    // Truncate (as after a leader change) and copy the tail again; reopen keeps it all.
    let cut = end - 10;
    follower.truncate_to(cut).await.unwrap();
    let mut next = follower.log_end_offset();
    while next < leader.written_offset() {
        let r = leader.read(next, 5000, i64::MAX).await.unwrap();
        for chunk in r.chunks {
            let hs = sluice_storage::validate_batches(&chunk).unwrap();
            // Reads return whole batches: skip those the truncation kept.
            let keep: usize = hs
                .iter()
                .take_while(|h| h.base_offset < next)
                .map(|h| h.total_size())
                .sum();
            let rest = chunk.slice(keep..);
            if rest.is_empty() {
                continue;
            }
            let info = follower.append_replicated(rest, TS).unwrap();
            next = info.last_offset + 1;
        }
    }
    follower.close().await.unwrap();
    let follower = open(fd.path(), cfg).await;
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(bytes_of(&follower).await, bytes_of(&leader).await);
    assert_eq!(
        follower.end_offset_for_epoch(1),
        leader.end_offset_for_epoch(1)
    );
}

#[compio::test]
async fn malformed_replicated_batches_are_refused_and_change_nothing() {
    let dir = tmpdir();
    let log = open(dir.path(), config(IoMode::Buffered)).await;
    log.append(batch(3, TS, 10), 0, TS).unwrap();
    let good = {
        log.wait_written(2).await.unwrap();
        log.read(0, 1 << 20, i64::MAX).await.unwrap().chunks[0].clone()
    };
    let follower_dir = tmpdir();
    let f = open(follower_dir.path(), config(IoMode::Buffered)).await;
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff; // inside the records: CRC mismatch
    for bad in [
        bytes::Bytes::from_static(b"garbage"),
        good.slice(..good.len() - 1),
        bytes::Bytes::from(flipped),
    ] {
        assert!(f.append_replicated(bad, TS).is_err());
        assert_eq!(f.log_end_offset(), 0);
    }
    f.append_replicated(good, TS).unwrap();
    assert_eq!(f.log_end_offset(), 3);
}

/// A leader that began an epoch and wrote nothing, then follows again: truncating to its log
/// end drops that epoch (Kafka's `truncateTo`); kept, its new leader — which never had the
/// epoch — would answer every fetch with the same divergence (found by the replica
/// simulation, `src/partition/replica/sim.rs`).
#[compio::test]
async fn truncating_at_the_end_drops_an_epoch_that_wrote_nothing() {
    let dir = tmpdir();
    let log = open(dir.path(), config(IoMode::Direct)).await;
    let info = log.append(batch(3, TS, 10), 4, TS).unwrap();
    log.wait_written(info.last_offset).await.unwrap();
    log.begin_epoch(5).await.unwrap();
    assert_eq!(log.latest_epoch(), 5);
    assert_eq!(log.end_offset_for_epoch(4), (4, 3));
    log.truncate_to(log.log_end_offset()).await.unwrap();
    assert_eq!(log.latest_epoch(), 4, "the begun epoch is gone");
    assert_eq!(log.log_end_offset(), 3, "nothing else changed");
    log.close().await.unwrap();
    let log = open(dir.path(), config(IoMode::Direct)).await;
    assert_eq!(log.latest_epoch(), 4, "and stays gone after a restart");
}

/// The logs of one thread keep at most the thread's cache budget together: writing to one log
/// evicts what another cached earlier, the counts go back to zero when the logs are gone, and
/// every read still returns every batch (from disk once evicted).
#[compio::test]
async fn tail_caches_of_a_thread_share_one_budget() {
    const BUDGET: usize = 64 << 10;
    const VALUE: usize = 2000;
    sluice_storage::set_cache_budget(BUDGET);
    let (da, db) = (tmpdir(), tmpdir());
    let cfg = LogConfig {
        tail_cache_bytes: 1 << 20,
        ..config(IoMode::Buffered)
    };
    let a = open(da.path(), cfg.clone()).await;
    let b = open(db.path(), cfg).await;
    let mut ends = [0i64, 0];
    for round in 0..3 {
        for (i, log) in [&a, &b].into_iter().enumerate() {
            for j in 0..60 {
                ends[i] = log
                    .append(batch(1, TS + j, VALUE), 0, TS)
                    .unwrap()
                    .last_offset
                    + 1;
                log.wait_written(ends[i] - 1).await.unwrap();
            }
            let (bytes, batches) = sluice_storage::cache_usage();
            assert!(
                bytes <= BUDGET && batches > 0,
                "round {round} log {i}: {bytes} bytes in {batches} batches"
            );
        }
    }
    // b wrote last: the budget holds b's newest batches only, all of a's went first.
    assert_eq!(a.cached_bytes(), 0);
    assert_eq!(b.cached_bytes(), sluice_storage::cache_usage().0);
    let newest_b = read_all(&b, ends[1] - 20, 1 << 20).await;
    assert_contiguous(&newest_b, ends[1] - 20, ends[1]);
    for (log, end) in [(&a, ends[0]), (&b, ends[1])] {
        let hs = read_all(log, 0, 1 << 20).await;
        assert_contiguous(&hs, 0, end);
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
    drop((a, b));
    // The writer tasks hold only weak references; give them a turn to finish.
    for _ in 0..100 {
        if sluice_storage::cache_usage() == (0, 0) {
            break;
        }
        compio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(sluice_storage::cache_usage(), (0, 0));
    sluice_storage::set_cache_budget(usize::MAX);
}

/// Without `min_one`, a read whose first batch is larger than `max_bytes` returns nothing, from
/// the tail cache and from the disk alike; with it, that batch whole. Reading the same offset
/// again with room for it returns it.
#[compio::test]
async fn a_read_without_min_one_returns_no_batch_larger_than_asked() {
    for cache in [8 << 20, 0] {
        for mode in [IoMode::Buffered, IoMode::Direct] {
            let dir = tmpdir();
            let log = open(
                dir.path(),
                LogConfig {
                    tail_cache_bytes: cache,
                    ..config(mode)
                },
            )
            .await;
            for _ in 0..4 {
                log.append(batch(10, TS, 10_000), 0, TS).unwrap();
            }
            log.wait_written(39).await.unwrap();
            let size = log.read(0, 1, i64::MAX).await.unwrap().bytes;
            assert!(size > 100_000, "one batch of 10 x 10 kB: {size}");
            let what = format!("cache {cache}, {mode:?}");
            let read = |offset: i64, max_bytes: usize, min_one: bool| {
                let log = log.clone();
                async move {
                    let r = log.read_limited(offset, max_bytes, min_one, i64::MAX);
                    r.await.unwrap().bytes
                }
            };
            assert_eq!(read(10, size - 1, false).await, 0, "{what}");
            assert_eq!(read(10, size - 1, true).await, size, "{what}");
            assert_eq!(read(10, size, false).await, size, "{what}");
            assert_eq!(read(10, 2 * size + 1, false).await, 2 * size, "{what}");
            // Twice in a row (the second read finds what the first one kept: from the disk
            // with O_DIRECT, what it read is held as the chunk read ahead).
            assert_eq!(read(20, 5, false).await, 0, "{what}");
            if cache == 0 && mode == IoMode::Direct {
                assert!(
                    sluice_storage::readahead_usage() > 0,
                    "{what}: nothing kept"
                );
            }
            assert_eq!(read(20, 5, false).await, 0, "{what}");
            assert_eq!(read(20, 3 * size, false).await, 2 * size, "{what}");
            log.close().await.unwrap();
        }
    }
}

/// The log size the boot checkpoint's index covers (its layout: checkpoint.rs, index.rs), 0
/// when there is none.
fn boot_covered(dir: &std::path::Path) -> u64 {
    let at = 8 + 36 + 4 + 16;
    std::fs::read(dir.join("boot.checkpoint"))
        .ok()
        .and_then(|b| Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?)))
        .unwrap_or(0)
}

fn boot_config() -> LogConfig {
    LogConfig {
        boot_checkpoint_interval_ms: 1,
        ..config(IoMode::Direct)
    }
}

/// Appends idempotent batches (pid 9, 4 records each, from sequence `*seq`) until the boot
/// checkpoint covers at least `bytes` of the active segment; returns the log end.
async fn write_until_boot_covers(log: &sluice_storage::Log, seq: &mut i32, bytes: u64) -> i64 {
    let dir = log.dir().to_owned();
    for _ in 0..5_000 {
        let info = log
            .append(idempotent_batch(9, *seq, 4, 1000), 0, TS)
            .unwrap();
        *seq += 4;
        log.wait_written(info.last_offset).await.unwrap();
        if boot_covered(&dir) >= bytes {
            return info.last_offset + 1;
        }
        compio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("the boot checkpoint never covered {bytes} bytes");
}

/// A log written until its boot checkpoint covers `bytes`, then dropped (a crash): its
/// directory and log end.
async fn crashed_after_a_boot_checkpoint(bytes: u64) -> (tempfile::TempDir, i64) {
    let dir = tmpdir();
    let log = open(dir.path(), boot_config()).await;
    let end = write_until_boot_covers(&log, &mut 0, bytes).await;
    drop(log);
    (dir, end)
}

#[compio::test]
async fn after_a_process_crash_recovery_scans_only_past_the_boot_checkpoint() {
    let dir = tmpdir();
    let cfg = boot_config();
    let log = open(dir.path(), cfg.clone()).await;
    let mut seq = 0;
    write_until_boot_covers(&log, &mut seq, 1 << 20).await;
    let covered = boot_covered(dir.path());
    // Written after the checkpoint: only the scan finds these (and a later checkpoint may).
    let mut end = 0;
    for _ in 0..20 {
        end = log
            .append(idempotent_batch(9, seq, 4, 1000), 0, TS)
            .unwrap()
            .last_offset
            + 1;
        seq += 4;
    }
    log.wait_written(end - 1).await.unwrap();
    drop(log); // crash: no close, so no durable index of the active segment
    let file_len = std::fs::metadata(active_segment(dir.path())).unwrap().len();
    let log = open(dir.path(), cfg.clone()).await;
    let scanned = log.stats().recovery_scanned_bytes.get();
    // (The file is longer than the log while preallocated: the scan reads less than the log.)
    assert!(
        scanned <= file_len - covered && scanned < log.size_bytes(),
        "scanned {scanned} of {file_len} bytes; the boot checkpoint covered {covered}"
    );
    assert_eq!(log.log_end_offset(), end);
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end);
    // The producer state came back: the last batch retried is a duplicate, the next is next.
    let again = log
        .append(idempotent_batch(9, seq - 4, 4, 1000), 0, TS)
        .unwrap();
    assert_eq!((again.base_offset, again.last_offset), (end - 4, end - 1));
    let next = log
        .append(idempotent_batch(9, seq, 4, 1000), 0, TS)
        .unwrap();
    assert_eq!(next.base_offset, end);
    log.wait_written(end + 3).await.unwrap();
    log.close().await.unwrap();
    let log = open(dir.path(), cfg).await;
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end + 4);
    log.close().await.unwrap();
}

#[compio::test]
async fn the_boot_checkpoint_is_rewritten_in_place_and_what_follows_it_is_ignored() {
    use std::io::Write;
    let dir = tmpdir();
    let cfg = boot_config();
    let path = dir.path().join("boot.checkpoint");
    let log = open(dir.path(), cfg.clone()).await;
    let mut seq = 0;
    write_until_boot_covers(&log, &mut seq, 128 << 10).await;
    // Its birth time: a file replaced by a rename is another file, born later.
    let born = std::fs::metadata(&path).unwrap().created().unwrap();
    let first = boot_covered(dir.path());
    let end = write_until_boot_covers(&log, &mut seq, first + (256 << 10)).await;
    // Rewritten (it covers more) in the same file: a file replaced by a rename frees its
    // blocks, which a filesystem mounted with `discard` sends to the device as a discard.
    assert_eq!(std::fs::metadata(&path).unwrap().created().unwrap(), born);
    // A crash, then what a longer checkpoint before this one leaves behind its end.
    drop(log);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&[0xA5; 5000]).unwrap();
    drop(f);
    let covered = boot_covered(dir.path());
    let log = open(dir.path(), cfg).await;
    let scanned = log.stats().recovery_scanned_bytes.get();
    // The scan reads whole chunks from where the checkpoint ends; without it, everything.
    assert!(
        scanned < log.size_bytes(),
        "scanned {scanned} of {} bytes; the boot checkpoint covered {covered}",
        log.size_bytes()
    );
    assert_eq!(log.log_end_offset(), end);
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end);
    log.close().await.unwrap();
}

#[compio::test]
async fn a_boot_checkpoint_from_another_boot_is_ignored() {
    let (dir, end) = crashed_after_a_boot_checkpoint(256 << 10).await;
    // The same file as another boot would have left it: another id, a valid CRC.
    let path = dir.path().join("boot.checkpoint");
    let mut b = std::fs::read(&path).unwrap();
    b[8..44].copy_from_slice(b"00000000-0000-0000-0000-000000000000");
    // The CRC follows the three length-prefixed parts (bytes after it are left over).
    let mut n = 44;
    for _ in 0..3 {
        n += 4 + u32::from_be_bytes(b[n..n + 4].try_into().unwrap()) as usize;
    }
    let crc = crc32c::crc32c(&b[..n]);
    b[n..n + 4].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    let log = open(dir.path(), boot_config()).await;
    let scanned = log.stats().recovery_scanned_bytes.get();
    assert!(scanned >= log.size_bytes(), "scanned {scanned} bytes");
    assert_eq!(log.log_end_offset(), end);
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end);
    log.close().await.unwrap();
}

#[compio::test]
async fn a_truncation_removes_the_boot_checkpoint_that_covered_what_it_cut() {
    let dir = tmpdir();
    let cfg = boot_config();
    let log = open(dir.path(), cfg.clone()).await;
    let mut seq = 0;
    write_until_boot_covers(&log, &mut seq, 256 << 10).await;
    log.truncate_to(40).await.unwrap();
    assert!(!dir.path().join("boot.checkpoint").exists());
    // No checkpoint from now on, and batches of another size where the cut ones were: a
    // checkpoint left behind would put batch boundaries in the wrong places.
    log.set_config(LogConfig {
        boot_checkpoint_interval_ms: 0,
        ..cfg.clone()
    });
    let mut end = 40;
    for i in 0..300 {
        end = log.append(batch(3, TS + i, 77), 0, TS).unwrap().last_offset + 1;
    }
    log.wait_written(end - 1).await.unwrap();
    drop(log);
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_end_offset(), end);
    let hs = read_all(&log, 0, 1 << 20).await;
    assert_contiguous(&hs, 0, end);
    assert!(hs
        .iter()
        .filter(|h| h.base_offset >= 40)
        .all(|h| h.records_count == 3));
    log.close().await.unwrap();
}

#[compio::test]
async fn a_close_after_a_restart_on_a_boot_checkpoint_makes_the_segment_durable() {
    let (dir, end) = crashed_after_a_boot_checkpoint(256 << 10).await;
    let cfg = boot_config();
    let log = open(dir.path(), cfg.clone()).await;
    // Closed without a write since: the close syncs the segment and writes its index.
    log.close().await.unwrap();
    // What a restart after a reboot sees: no boot checkpoint; nothing is left to scan.
    std::fs::remove_file(dir.path().join("boot.checkpoint")).unwrap();
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.stats().recovery_scanned_bytes.get(), 0);
    assert_eq!(log.log_end_offset(), end);
    assert_contiguous(&read_all(&log, 0, 1 << 20).await, 0, end);
    log.close().await.unwrap();
}
