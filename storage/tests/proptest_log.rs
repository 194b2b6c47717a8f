//! Property test: random appends, reads, rolls, clean restarts and crashes against a model.

mod common;

use common::*;
use proptest::prelude::*;
use sluice_storage::{IoMode, LogConfig};

#[derive(Debug, Clone)]
enum Op {
    Append {
        batches: u8,
        records: u8,
        value: u16,
    },
    Wait,
    Read {
        at_permille: u16,
        max_bytes: u16,
        /// Where the read's upper bound falls between `at` and the written offset.
        bound_permille: u16,
    },
    Close,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..4, 1u8..6, 0u16..1500).prop_map(|(batches, records, value)| Op::Append { batches, records, value }),
        2 => Just(Op::Wait),
        3 => (0u16..1000, 1u16..9000, 0u16..=1000).prop_map(|(at_permille, max_bytes, bound_permille)| Op::Read { at_permille, max_bytes, bound_permille }),
        1 => Just(Op::Close),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_ops_match_model(ops in proptest::collection::vec(op(), 1..40), direct in any::<bool>()) {
        let rt = compio::runtime::Runtime::new().unwrap();
        rt.block_on(run(ops, if direct { IoMode::Direct } else { IoMode::Buffered }));
    }
}

fn headers(chunks: &[bytes::Bytes]) -> Vec<sluice_storage::BatchHeader> {
    chunks
        .iter()
        .flat_map(|c| sluice_storage::validate_batches(c).unwrap())
        .collect()
}

async fn run(ops: Vec<Op>, mode: IoMode) {
    let dir = tmpdir();
    let cfg = LogConfig {
        segment_bytes: 6000,
        index_interval_bytes: 700,
        tail_cache_bytes: 3000,
        ..config(mode)
    };
    let mut log = open(dir.path(), cfg.clone()).await;
    let mut end = 0i64; // model: offsets [0, end) reported written
    for op in ops {
        match op {
            Op::Append {
                batches,
                records,
                value,
            } => {
                let mut v = Vec::new();
                for _ in 0..batches {
                    v.extend_from_slice(&batch(records as i32, 1, value as usize));
                }
                let info = log.append(v.into(), 0, 1).unwrap();
                assert_eq!(info.base_offset, end);
                end = info.last_offset + 1;
            }
            Op::Wait => {
                if end > 0 {
                    log.wait_written(end - 1).await.unwrap();
                }
            }
            Op::Read {
                at_permille,
                max_bytes,
                bound_permille,
            } => {
                let written = log.written_offset();
                let at = written * at_permille as i64 / 1000;
                let r = log.read(at, max_bytes as usize, i64::MAX).await.unwrap();
                let hs = headers(&r.chunks);
                if at < written {
                    assert!(!hs.is_empty());
                    assert!(hs[0].base_offset <= at && hs[0].last_offset() >= at);
                    assert!(hs.len() == 1 || r.bytes <= max_bytes as usize);
                }
                // Bounded: a prefix of the batches below the bound (the writer may have evicted
                // cached batches since, so a disk read may stop earlier at a segment end).
                let bound = at + (written - at) * bound_permille as i64 / 1000;
                let b = log.read(at, max_bytes as usize, bound).await.unwrap();
                let bs = headers(&b.chunks);
                let below: Vec<_> = hs.iter().take_while(|h| h.base_offset < bound).collect();
                assert!(
                    bs.len() <= below.len(),
                    "bound {bound}: {bs:?} vs {below:?}"
                );
                assert!(bs.iter().zip(&below).all(|(x, y)| x == *y));
                assert_eq!(at < bound, !bs.is_empty(), "at {at} bound {bound}");
            }
            Op::Close => {
                if end > 0 {
                    log.wait_written(end - 1).await.unwrap();
                }
                log.close().await.unwrap();
                log = open(dir.path(), cfg.clone()).await;
                assert_eq!(log.log_end_offset(), end);
            }
            Op::Crash => {
                if end > 0 {
                    log.wait_written(end - 1).await.unwrap();
                }
                drop(log);
                log = open(dir.path(), cfg.clone()).await;
                assert_eq!(log.log_end_offset(), end);
            }
        }
    }
    if end > 0 {
        log.wait_written(end - 1).await.unwrap();
    }
    assert_contiguous(&read_all(&log, 0, 5000).await, 0, end);
    log.close().await.unwrap();
}
