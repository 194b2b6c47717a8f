//! The Kafka protocol side of the broker: client connections, request dispatch and one handler
//! per API. Handlers reach partitions, the controller and group coordinators only through
//! `crate::shard`.

pub mod connection;
pub mod dispatch;
pub mod handlers;
pub mod records;
