//! Partitions: a partition's log and its state as a replica.

pub mod dir;

use std::rc::Rc;

use sluice_storage::Log;

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub topic_id: [u8; 16],
    pub index: i32,
    pub log: Rc<Log>,
    pub leader_epoch: i32,
}

/// A partition's name: (topic, index).
pub type PartitionKey = (String, i32);
