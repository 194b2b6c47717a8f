//! Coordinators: pure state machines that own a slice of broker state and are driven by a
//! shard (`crate::shard`). Today: consumer groups.

pub mod group;
