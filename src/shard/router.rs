//! Where a partition lives: which shard of this broker owns it, and its directory.

use std::path::PathBuf;

use crate::config::Config;

/// Which shard owns a partition. Stable for a given shard count; directories are not
/// shard-specific, so a restart with another core count simply re-maps.
pub fn owner(topic_id: &[u8; 16], partition: i32, shards: usize) -> usize {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(topic_id);
    key[16..].copy_from_slice(&partition.to_be_bytes());
    (crc32c::crc32c(&key) as usize) % shards.max(1)
}

pub fn partition_dir(config: &Config, topic: &str, partition: i32) -> PathBuf {
    config.args.data_dir.join(format!("{topic}-{partition}"))
}
