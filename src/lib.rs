//! The Sluice broker: configuration, shards and their mesh, connections, request dispatch with
//! one handler per Kafka API, the controller, and the mapping of errors to Kafka codes.
//!
//! It is the only crate that knows both `sluice-storage` (logs) and `sluice-net` (wire codec).

pub mod admin;
pub mod config;
pub mod connection;
pub mod controller;
pub mod dispatch;
pub mod errors;
pub mod group;
pub mod handlers;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod partition_dir;
pub mod records;
pub mod server;
pub mod shard;
pub mod topic_config;
pub mod util;
