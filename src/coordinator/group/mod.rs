//! Consumer groups: the classic rebalance protocol and committed offsets.
//!
//! - [`coordinator`]: the pure state machine (`on_event(now_ms, event) -> Vec<Action>`).
//! - its thin per-shard driver is `crate::shard::groups`: it feeds the coordinator requests,
//!   timer ticks and load results, and carries out its actions (replies, appends to
//!   `__consumer_offsets`).
//! - [`records`]: the `__consumer_offsets` record layout (Kafka's).
//!
//! Routing: a group's coordinator is the shard that owns partition
//! `abs(java_hash(group)) % partitions` of `__consumer_offsets` (Kafka's rule), so every
//! shard reaches the same coordinator; handlers on other shards forward over the mesh.
//!
//! Must not touch: partitions of other topics, other shards' state.

pub mod coordinator;
pub mod records;

use std::collections::BTreeMap;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Period of the coordinator's timer tick: the resolution of session and rebalance timeouts.
pub const TICK_MS: u64 = 100;

pub use super::{java_string_hash, partition_for};

/// Topic configs of `__consumer_offsets`: compacted by the log cleaner, never deleted by time
/// or size, Kafka's 100 MiB segments.
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        ("retention.ms".to_owned(), "-1".to_owned()),
        ("retention.bytes".to_owned(), "-1".to_owned()),
        ("segment.bytes".to_owned(), (100 << 20).to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partition_matches_kafka() {
        // Values computed with Java's "…".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        for g in ["g", "group-1", "ü-ß", "polygenelubricants"] {
            let p = partition_for(g, 4);
            assert!((0..4).contains(&p));
        }
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE → Kafka's abs gives 0.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 7), 0);
    }
}
