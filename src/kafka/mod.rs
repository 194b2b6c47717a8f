//! The Kafka protocol side of the broker: client connections, request dispatch and one handler
//! per API. Handlers touch no partition, controller or coordinator state: they send typed
//! messages through `crate::shard` (partition work runs in `crate::shard::ops` on the owner
//! shard) and turn the outcomes into Kafka responses. See docs/architecture.md §2.7.

pub mod connection;
pub mod dispatch;
pub mod handlers;
pub mod transport;
