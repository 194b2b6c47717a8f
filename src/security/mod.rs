//! Authentication: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) exchanges and the listener
//! each connection arrived on. Pure: no I/O, no shard state; the connection drives it and
//! the credentials come from the metadata image.

pub mod acl;
pub mod quota;
pub mod sasl;
pub mod scram;
pub mod tls;
