//! The Kafka protocol side of the broker: client connections, request dispatch and one handler
//! per API. Handlers reach partitions (on their owner shard), the controller and group
//! coordinators only through `crate::shard`; on a partition, records are read, appended and
//! acknowledged through `crate::partition::Partition` (the high watermark lives there), while
//! log facts that do not depend on it (log start, timestamps, epochs, DeleteRecords) come from
//! its storage log. See docs/architecture.md §2.7.

pub mod connection;
pub mod dispatch;
pub mod handlers;
