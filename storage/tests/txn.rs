//! Transactions in one partition log: transactional batches open a producer's transaction,
//! markers close it, aborted ranges and the first unstable offset survive a clean reopen, a
//! crash and a truncation; markers fence older epochs and coordinators.

mod common;

use bytes::Bytes;
use common::{batch, config, open, read_all, tmpdir, txn_batch};
use sluice_storage::test_util::{build_batch, set_crc, BatchSpec};
use sluice_storage::txn::{parse_marker, ControlType};
use sluice_storage::{IoMode, Log, ProducerError, StorageError};

const TS: i64 = 1_700_000_000_000;

async fn aborted(log: &Log, from: i64, to: i64) -> Vec<(i64, i64)> {
    log.aborted_transactions(from, to).await.unwrap()
}

#[compio::test]
async fn markers_close_transactions_and_aborts_are_remembered_across_reopen_and_crash() {
    let dir = tmpdir();
    let cfg = config(IoMode::Direct);
    let log = open(dir.path(), cfg.clone()).await;
    assert_eq!(
        log.append(txn_batch(1, 0, 0, 3), 0, TS)
            .unwrap()
            .base_offset,
        0
    ); // 0..=2
    assert_eq!(
        log.append(txn_batch(2, 0, 0, 2), 0, TS)
            .unwrap()
            .base_offset,
        3
    ); // 3..=4
    assert_eq!(log.append(batch(1, TS, 10), 0, TS).unwrap().base_offset, 5);
    assert_eq!(log.first_unstable_offset(), Some(0));
    let commit = log.append_marker(1, 0, true, 0, 0, TS).unwrap();
    assert_eq!(commit.base_offset, 6);
    assert_eq!(log.first_unstable_offset(), Some(3));
    // A second transaction of producer 1 opens at its first batch.
    assert_eq!(
        log.append(txn_batch(1, 0, 3, 1), 0, TS)
            .unwrap()
            .base_offset,
        7
    );
    let abort = log.append_marker(2, 0, false, 0, 0, TS).unwrap();
    assert_eq!(abort.base_offset, 8);
    assert_eq!(log.first_unstable_offset(), Some(7));
    assert_eq!(
        log.append_marker(1, 0, false, 0, 0, TS)
            .unwrap()
            .base_offset,
        9
    );
    assert_eq!(log.first_unstable_offset(), None);
    log.wait_written(9).await.unwrap();

    async fn check(log: &Log) {
        assert_eq!(log.first_unstable_offset(), None);
        assert_eq!(aborted(log, 0, 100).await, vec![(2, 3), (1, 7)]);
        assert_eq!(aborted(log, 0, 3).await, vec![]);
        assert_eq!(aborted(log, 8, 100).await, vec![(2, 3), (1, 7)]); // 8 is the marker
        assert_eq!(aborted(log, 9, 100).await, vec![(1, 7)]);
        assert_eq!(aborted(log, 10, 100).await, vec![]);
    }
    check(&log).await;
    // The markers are in the log as control batches.
    let hs = read_all(&log, 0, 1 << 20).await;
    let controls: Vec<i64> = hs
        .iter()
        .filter(|h| h.is_control())
        .map(|h| h.base_offset)
        .collect();
    assert_eq!(controls, vec![6, 8, 9]);

    log.close().await.unwrap();
    let log = open(dir.path(), cfg.clone()).await;
    check(&log).await;
    // A crash (no close: the snapshot is older than the tail) replays the markers' records.
    assert_eq!(
        log.append(txn_batch(3, 0, 0, 1), 0, TS)
            .unwrap()
            .base_offset,
        10
    );
    log.append_marker(3, 0, false, 0, 0, TS).unwrap();
    assert_eq!(
        log.append(txn_batch(4, 0, 0, 1), 0, TS)
            .unwrap()
            .base_offset,
        12
    );
    log.wait_written(12).await.unwrap();
    drop(log);
    let log = open(dir.path(), cfg).await;
    assert_eq!(aborted(&log, 0, 100).await, vec![(2, 3), (1, 7), (3, 10)]);
    assert_eq!(log.first_unstable_offset(), Some(12));
    log.close().await.unwrap();
}

#[compio::test]
async fn a_truncated_marker_reopens_its_transaction() {
    let dir = tmpdir();
    let log = open(dir.path(), config(IoMode::Direct)).await;
    log.append(txn_batch(1, 0, 0, 2), 0, TS).unwrap(); // 0..=1
    log.append(batch(1, TS, 10), 0, TS).unwrap(); // 2
    log.append_marker(1, 0, false, 0, 0, TS).unwrap(); // 3
    log.append(txn_batch(2, 0, 0, 1), 0, TS).unwrap(); // 4
    log.wait_written(4).await.unwrap();
    assert_eq!(log.first_unstable_offset(), Some(4));
    // A restart in between: the snapshot keeps what a truncation can reopen.
    log.close().await.unwrap();
    let log = open(dir.path(), config(IoMode::Direct)).await;
    log.truncate_to(3).await.unwrap();
    // The abort marker and producer 2's transaction are gone; producer 1's is open again.
    assert_eq!(log.first_unstable_offset(), Some(0));
    assert_eq!(aborted(&log, 0, 100).await, vec![]);
    assert_eq!(
        log.append_marker(1, 0, true, 0, 0, TS).unwrap().base_offset,
        3
    );
    assert_eq!(log.first_unstable_offset(), None);
    log.close().await.unwrap();
}

#[compio::test]
async fn markers_fence_old_epochs_and_coordinators() {
    let dir = tmpdir();
    let log = open(dir.path(), config(IoMode::Direct)).await;
    log.append(txn_batch(1, 0, 0, 1), 0, TS).unwrap();
    // Non-transactional data while the transaction is open: refused.
    let mut plain = build_batch(&BatchSpec::new(1).base_timestamp(TS));
    plain[43..51].copy_from_slice(&1i64.to_be_bytes());
    plain[51..53].copy_from_slice(&0i16.to_be_bytes());
    plain[53..57].copy_from_slice(&1i32.to_be_bytes());
    set_crc(&mut plain);
    assert!(matches!(
        log.append(Bytes::from(plain), 0, TS),
        Err(StorageError::Producer(
            ProducerError::InvalidTxnState { .. }
        ))
    ));
    // A transactional batch without a producer id or sequence: refused.
    assert!(matches!(
        log.append(txn_batch(-1, -1, -1, 1), 0, TS),
        Err(StorageError::Producer(
            ProducerError::TransactionalWithoutIdempotence { .. }
        ))
    ));
    // The coordinator fences the producer: abort with the epoch bumped.
    log.append_marker(1, 1, false, 5, 0, TS).unwrap();
    assert!(matches!(
        log.append(txn_batch(1, 0, 1, 1), 0, TS),
        Err(StorageError::Producer(ProducerError::InvalidEpoch { .. }))
    ));
    assert!(matches!(
        log.append_marker(1, 0, false, 5, 0, TS),
        Err(StorageError::Producer(ProducerError::InvalidEpoch { .. }))
    ));
    assert!(matches!(
        log.append_marker(1, 1, true, 4, 0, TS),
        Err(StorageError::Producer(
            ProducerError::CoordinatorFenced { .. }
        ))
    ));
    // The new epoch starts its own sequence.
    let info = log.append(txn_batch(1, 1, 0, 1), 0, TS).unwrap();
    assert_eq!(log.first_unstable_offset(), Some(info.base_offset));
    log.wait_written(info.base_offset).await.unwrap();
    let r = log.read(1, 1 << 20, i64::MAX).await.unwrap();
    let chunk = &r.chunks[0];
    assert_eq!(parse_marker(chunk), Some((ControlType::Abort, 5)));
    log.close().await.unwrap();
}

fn txn_index(dir: &std::path::Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.txnindex"))
}

/// The aborted transactions of the producer snapshot written at the last checkpoint.
fn snapshot_aborted(dir: &std::path::Path) -> Vec<(i64, i64)> {
    let bytes = std::fs::read(dir.join("producer.snapshot")).unwrap();
    let (_, states) = sluice_storage::producer::ProducerStates::decode(&bytes).unwrap();
    states.aborted_between(0, i64::MAX)
}

/// Three segments: [0, 4) and [4, 8) sealed, 8.. active. Producer 2's transaction spans the
/// first two; producer 3's the second and the active one.
async fn three_segments(log: &Log) {
    log.append(txn_batch(1, 0, 0, 2), 0, TS).unwrap(); // 0..=1
    log.append(txn_batch(2, 0, 0, 1), 0, TS).unwrap(); // 2
    log.append_marker(1, 0, false, 0, 0, TS).unwrap(); // 3
    log.wait_written(3).await.unwrap();
    log.maybe_roll(i64::MAX).await.unwrap();
    log.append(batch(1, TS, 10), 0, TS).unwrap(); // 4
    log.append_marker(2, 0, false, 0, 0, TS).unwrap(); // 5
    log.append(txn_batch(3, 0, 0, 2), 0, TS).unwrap(); // 6..=7
    log.wait_written(7).await.unwrap();
    log.maybe_roll(i64::MAX).await.unwrap();
    log.append_marker(3, 0, false, 0, 0, TS).unwrap(); // 8
    log.append(txn_batch(4, 0, 0, 1), 0, TS).unwrap(); // 9
    log.append_marker(4, 0, false, 0, 0, TS).unwrap(); // 10
    log.wait_written(10).await.unwrap();
    assert_eq!(log.segment_count(), 3);
}

async fn check_three_segments(log: &Log) {
    assert_eq!(
        aborted(log, 0, 11).await,
        vec![(1, 0), (2, 2), (3, 6), (4, 9)]
    );
    // A fetch of 2..4 names producer 2, whose marker is in the next segment.
    assert_eq!(aborted(log, 2, 4).await, vec![(1, 0), (2, 2)]);
    assert_eq!(aborted(log, 4, 6).await, vec![(2, 2)]);
    assert_eq!(aborted(log, 6, 8).await, vec![(3, 6)]);
    assert_eq!(aborted(log, 9, 11).await, vec![(4, 9)]);
}

#[compio::test]
async fn a_roll_moves_its_segments_aborts_to_an_index_that_reopen_crash_and_retention_keep() {
    let dir = tmpdir();
    let cfg = config(IoMode::Direct);
    let log = open(dir.path(), cfg.clone()).await;
    three_segments(&log).await;
    check_three_segments(&log).await;
    assert_eq!(aborted(&log, 11, 100).await, vec![]);
    // Each sealed segment has its index; the active segment's aborts are in the snapshot only.
    assert!(txn_index(dir.path(), 0).exists());
    assert!(txn_index(dir.path(), 4).exists());
    assert!(!txn_index(dir.path(), 8).exists());
    log.close().await.unwrap();
    assert_eq!(snapshot_aborted(dir.path()), vec![(3, 6), (4, 9)]);
    let log = open(dir.path(), cfg.clone()).await;
    check_three_segments(&log).await;
    // A crash: the tail after the last snapshot is replayed.
    log.append(txn_batch(5, 0, 0, 1), 0, TS).unwrap(); // 11
    log.append_marker(5, 0, false, 0, 0, TS).unwrap(); // 12
    log.wait_written(12).await.unwrap();
    drop(log);
    let log = open(dir.path(), cfg.clone()).await;
    check_three_segments(&log).await;
    assert_eq!(aborted(&log, 11, 100).await, vec![(5, 11)]);
    // Retention takes the first segment and its index.
    assert_eq!(log.delete_records_before(4).await.unwrap(), 4);
    assert!(!txn_index(dir.path(), 0).exists());
    assert_eq!(aborted(&log, 4, 8).await, vec![(2, 2), (3, 6)]);
    log.close().await.unwrap();
}

#[compio::test]
async fn a_truncation_into_a_sealed_segment_brings_its_aborts_back() {
    let dir = tmpdir();
    let cfg = config(IoMode::Direct);
    let log = open(dir.path(), cfg.clone()).await;
    three_segments(&log).await;
    // Into the second segment, past producer 2's marker: producer 3's transaction is open
    // again and the second segment active, its index gone to memory.
    log.truncate_to(6).await.unwrap();
    assert!(!txn_index(dir.path(), 4).exists());
    assert!(txn_index(dir.path(), 0).exists());
    assert_eq!(aborted(&log, 0, 100).await, vec![(1, 0), (2, 2)]);
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(snapshot_aborted(dir.path()), vec![(2, 2)]);
    // Before producer 2's marker: its transaction is open again.
    log.truncate_to(5).await.unwrap();
    assert_eq!(aborted(&log, 0, 100).await, vec![(1, 0)]);
    assert_eq!(log.first_unstable_offset(), Some(2));
    log.append_marker(2, 0, false, 0, 0, TS).unwrap(); // 5 again
    log.wait_written(5).await.unwrap();
    log.maybe_roll(i64::MAX).await.unwrap();
    assert!(txn_index(dir.path(), 4).exists());
    assert_eq!(aborted(&log, 0, 100).await, vec![(1, 0), (2, 2)]);
    drop(log);
    let log = open(dir.path(), cfg.clone()).await;
    assert_eq!(aborted(&log, 0, 100).await, vec![(1, 0), (2, 2)]);
    log.close().await.unwrap();
}

#[compio::test]
async fn missing_damaged_and_orphaned_indexes_are_rebuilt_on_open() {
    let dir = tmpdir();
    let cfg = config(IoMode::Direct);
    let log = open(dir.path(), cfg.clone()).await;
    three_segments(&log).await;
    log.close().await.unwrap();
    // An older release's data: no index files, every abort in the snapshot. Here the
    // snapshot is gone too, so opening replays the whole log.
    std::fs::remove_file(txn_index(dir.path(), 0)).unwrap();
    std::fs::remove_file(txn_index(dir.path(), 4)).unwrap();
    std::fs::remove_file(dir.path().join("producer.snapshot")).unwrap();
    let log = open(dir.path(), cfg.clone()).await;
    check_three_segments(&log).await;
    assert!(txn_index(dir.path(), 0).exists() && txn_index(dir.path(), 4).exists());
    assert_eq!(snapshot_aborted(dir.path()), vec![(3, 6), (4, 9)]);
    log.close().await.unwrap();
    // A damaged index is rebuilt from the log.
    let path = txn_index(dir.path(), 4);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let log = open(dir.path(), cfg.clone()).await;
    check_three_segments(&log).await;
    log.close().await.unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), bytes);
    // The segments after the second one gone (a crash before a roll's new segment, or a
    // damaged segment removed): the second one is active again, with an index beside it
    // that opening takes into the producer state and removes.
    for name in ["log", "index", "timeindex"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{:020}.{name}", 8)));
    }
    let log = open(dir.path(), cfg).await;
    assert_eq!(log.log_end_offset(), 8);
    assert!(!txn_index(dir.path(), 4).exists());
    assert_eq!(aborted(&log, 0, 100).await, vec![(1, 0), (2, 2)]);
    assert_eq!(snapshot_aborted(dir.path()), vec![(2, 2)]);
    log.close().await.unwrap();
}

/// After a crash, producer state for the tail the recovery scan read comes from that scan (not
/// from reading the log again): a retried batch is still a duplicate, a gap is still refused,
/// and the open transaction is still open.
#[compio::test]
async fn a_retried_batch_is_still_a_duplicate_after_a_crash() {
    let dir = tmpdir();
    let cfg = config(IoMode::Direct);
    let log = open(dir.path(), cfg.clone()).await;
    for i in 0..3 {
        let at = log.append(txn_batch(7, 0, i * 2, 2), 0, TS).unwrap();
        assert_eq!(at.base_offset, i64::from(i) * 2);
    }
    assert_eq!(
        log.append_marker(7, 0, true, 0, 0, TS).unwrap().base_offset,
        6
    );
    log.close().await.unwrap();
    let log = open(dir.path(), cfg.clone()).await;
    // Past the snapshot the close wrote: only the crash recovery's scan reads these.
    assert_eq!(
        log.append(txn_batch(7, 0, 6, 2), 0, TS)
            .unwrap()
            .base_offset,
        7
    );
    assert_eq!(
        log.append(txn_batch(7, 0, 8, 2), 0, TS)
            .unwrap()
            .base_offset,
        9
    );
    log.wait_written(10).await.unwrap();
    drop(log);
    let log = open(dir.path(), cfg).await;
    let again = log.append(txn_batch(7, 0, 8, 2), 0, TS).unwrap();
    assert_eq!((again.base_offset, again.last_offset), (9, 10));
    assert!(
        log.append(txn_batch(7, 0, 11, 1), 0, TS).is_err(),
        "a sequence gap"
    );
    assert_eq!(log.first_unstable_offset(), Some(7));
    assert_eq!(
        log.append(txn_batch(7, 0, 10, 1), 0, TS)
            .unwrap()
            .base_offset,
        11
    );
    log.close().await.unwrap();
}
