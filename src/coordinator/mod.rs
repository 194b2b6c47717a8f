//! Coordinators: pure state machines that own a slice of broker state and are driven by a
//! shard (`crate::shard`): consumer groups ([`group`]) and transactions ([`txn`]). Both are
//! routed the same way: by Kafka's hash of their key to a partition of their internal topic.

pub mod group;
pub mod txn;

/// Java's `String.hashCode` over UTF-16 code units (Kafka hashes group ids with it).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The partition of an internal topic that holds `key` (a group id in `__consumer_offsets`, a
/// transactional id in `__transaction_state`): Kafka's `Utils.abs(key.hashCode()) % n`.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let h = java_string_hash(key);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}
