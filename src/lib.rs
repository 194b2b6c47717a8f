//! The Sluice broker. Layers, bottom to top (each may use only the ones before it; see
//! `docs/architecture.md`):
//!
//! - `config`, `limits`, `errors`, `util`, `runtime`, `metrics`: leaves.
//! - `cluster`: the metadata image, its records and their persistence.
//! - `controller`: the pure state machine that turns commands into metadata records.
//! - `coordinator`: the pure group coordinator and the `__consumer_offsets` record layout.
//! - `partition`: a partition's log, its replica state and the waiters on its high watermark.
//! - `shard`: the per-core context, the mesh between shards, and the thin drivers that run the
//!   controller, the group coordinator and metadata changes on a shard.
//! - `kafka`: connections, request dispatch and one handler per Kafka API.
//! - `server`: the process (start-up, shard threads, shutdown).
//!
//! It is the only crate that knows both `sluice-storage` (logs) and `sluice-net` (wire codec).

pub mod cluster;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod errors;
pub mod kafka;
pub mod limits;
pub mod metrics;
pub mod partition;
pub mod quorum;
pub mod runtime;
pub mod security;
pub mod server;
pub mod shard;
pub mod util;
