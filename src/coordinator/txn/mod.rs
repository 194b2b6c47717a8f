//! Transactions: Kafka's transaction coordinator.
//!
//! - [`coordinator`]: the pure state machine (`on_event(now_ms, event) -> Vec<Action>`): one
//!   record per transactional id in `__transaction_state`, Kafka's states and transitions,
//!   epoch fencing, timeouts, and the commit/abort markers it asks the driver to write.
//! - [`records`]: the `__transaction_state` record layout (Kafka's).
//!
//! Routing: a transactional id's coordinator is the owner of partition
//! `abs(java_hash(id)) % partitions` of `__transaction_state` (Kafka's rule, shared with groups:
//! [`crate::coordinator::partition_for`]).
//!
//! Must not touch: partitions of other topics, other shards' state.

pub mod coordinator;
pub mod records;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Kafka's default partition count of `__transaction_state`
/// (`transaction.state.log.num.partitions`).
pub const DEFAULT_PARTITIONS: i32 = 50;

/// Period of the coordinator's timer tick: the resolution of transaction timeouts and marker
/// retries (Kafka checks timeouts every `transaction.abort.timed.out.transaction.cleanup.interval.ms`,
/// 10 s by default; a finer tick costs a scan of the loaded ids).
pub const TICK_MS: u64 = 1_000;

/// Topic configs of `__transaction_state` (Kafka's): compacted, never deleted by time or size,
/// 100 MiB segments.
pub fn transaction_state_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        ("retention.ms".to_owned(), "-1".to_owned()),
        ("retention.bytes".to_owned(), "-1".to_owned()),
        ("segment.bytes".to_owned(), (100 << 20).to_string()),
    ])
}
