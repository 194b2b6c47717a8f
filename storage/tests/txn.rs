//! Transactions in one partition log: transactional batches open a producer's transaction,
//! markers close it, aborted ranges and the first unstable offset survive a clean reopen, a
//! crash and a truncation; markers fence older epochs and coordinators.

mod common;

use bytes::Bytes;
use common::{batch, config, open, read_all, tmpdir};
use sluice_storage::test_util::{build_batch, set_crc, BatchSpec};
use sluice_storage::txn::{parse_marker, ControlType};
use sluice_storage::{IoMode, ProducerError, StorageError};

const TS: i64 = 1_700_000_000_000;

/// A transactional batch of `n` records from (pid, epoch) starting at sequence `seq`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, n: i32) -> Bytes {
    let mut b = build_batch(&BatchSpec::new(n).base_timestamp(TS));
    b[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    set_crc(&mut b);
    Bytes::from(b)
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

    let check = |log: &sluice_storage::Log| {
        assert_eq!(log.first_unstable_offset(), None);
        assert_eq!(log.aborted_transactions(0, 100), vec![(2, 3), (1, 7)]);
        assert_eq!(log.aborted_transactions(0, 3), vec![]);
        assert_eq!(log.aborted_transactions(8, 100), vec![(2, 3), (1, 7)]); // 8 is the marker
        assert_eq!(log.aborted_transactions(9, 100), vec![(1, 7)]);
        assert_eq!(log.aborted_transactions(10, 100), vec![]);
    };
    check(&log);
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
    check(&log);
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
    assert_eq!(
        log.aborted_transactions(0, 100),
        vec![(2, 3), (1, 7), (3, 10)]
    );
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
    log.truncate_to(3).await.unwrap();
    // The abort marker and producer 2's transaction are gone; producer 1's is open again.
    assert_eq!(log.first_unstable_offset(), Some(0));
    assert_eq!(log.aborted_transactions(0, 100), vec![]);
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
