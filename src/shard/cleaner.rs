//! The log cleaner's driver (docs/architecture.md §8.1): one task per shard, cleaning that
//! shard's compacted partitions one at a time, the dirtiest first, with the shard's share of
//! the key-map memory (`--log-cleaner-dedupe-buffer-size`) and of the I/O budget
//! (`--log-cleaner-io-max-bytes-per-second`). What a clean does is storage's
//! (`sluice_storage::Log::clean`); this picks the partition, bounds the clean by the
//! partition's high watermark (records not yet committed are never cleaned) and counts.

use std::rc::Rc;
use std::time::Duration;

use sluice_base::now_ms;
use sluice_storage::{CleanConfig, Throttle};
use tracing::{info, warn};

use super::Shard;
use crate::partition::records::{KafkaCodecs, BATCH_BYTES_MAX};
use crate::partition::Partition;

/// The shard's cleaner: sleeps `--log-cleaner-backoff-ms` whenever no compacted partition is
/// due (dirty ratio at min.cleanable.dirty.ratio, or dirty records past
/// max.compaction.lag.ms), cleans the dirtiest one otherwise.
pub async fn run(shard: Rc<Shard>) {
    let args = &shard.config.args;
    if !args.log_cleaner_enable {
        return;
    }
    let shards = shard.config.shards.max(1) as u64;
    let rate = match args.log_cleaner_io_max_bytes_per_second {
        u64::MAX => u64::MAX,
        r => (r / shards).max(1),
    };
    let throttle = Throttle::new(rate);
    let map_bytes =
        usize::try_from(args.log_cleaner_dedupe_buffer_size / shards).unwrap_or(usize::MAX);
    let backoff = Duration::from_millis(args.log_cleaner_backoff_ms.max(10));
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let Some(p) = dirtiest(&shard) else {
            crate::runtime::sleep(backoff).await;
            continue;
        };
        let cfg = CleanConfig {
            now_ms: now_ms(),
            clean_below: p.high_watermark(),
            map_bytes,
            batch_bytes_max: BATCH_BYTES_MAX,
        };
        match p.log.clean(&cfg, &KafkaCodecs, &throttle).await {
            Ok(Some(s)) if s.groups_abandoned > 0 => {
                // The log changed under the clean (truncation, retention): its clean point
                // did not move; try again later, not at once.
                info!(topic = %p.topic, partition = p.index, abandoned = s.groups_abandoned, "clean abandoned");
                crate::runtime::sleep(backoff).await;
            }
            Ok(Some(s)) => info!(
                topic = %p.topic,
                partition = p.index,
                read = s.bytes_read,
                written = s.bytes_written,
                removed = s.records_removed,
                segments_before = s.segments_before,
                segments_after = s.segments_after,
                cleaned_to = s.cleaned_to,
                elapsed_ms = s.elapsed_ms,
                "cleaned"
            ),
            // Due but nothing done (the key map could not hold one segment): wait.
            Ok(None) => crate::runtime::sleep(backoff).await,
            Err(e) => {
                warn!(topic = %p.topic, partition = p.index, error = %e, "cleaning failed");
                crate::runtime::sleep(backoff).await;
            }
        }
    }
}

/// The compacted partition due for cleaning with the highest dirty ratio.
fn dirtiest(shard: &Shard) -> Option<Rc<Partition>> {
    let now = now_ms();
    shard
        .partitions()
        .into_iter()
        .filter_map(|p| {
            let cfg = p.log.config();
            if !cfg.cleanup_compact || p.log.is_closed() {
                return None;
            }
            let c = p.log.cleanable(now, p.high_watermark());
            c.due(
                cfg.min_cleanable_dirty_ratio,
                cfg.max_compaction_lag_ms,
                now,
            )
            .then(|| (c.dirty_ratio(), p))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, p)| p)
}
