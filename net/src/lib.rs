//! Sluice's Kafka wire codec, sans-IO.
//!
//! Owns: frame boundaries (4-byte big-endian length, checked before anything is allocated),
//! request and response headers (flexible versions included), the one table of supported
//! `(api_key, min, max)` versions that both answers ApiVersions and gates dispatch, a facade
//! over the `kafka-protocol` crate for message bodies, and the SASL messages both ends of a
//! connection share (`scram`).
//!
//! Must not touch: sockets, files, runtimes, storage. It turns bytes into typed requests and
//! typed responses into bytes; nothing else.
//!
//! Invariants: no function here panics on any input bytes (decoders return [`DecodeError`]);
//! record data inside Produce requests and Fetch responses stays opaque, zero-copy `Bytes`.

pub mod codec;
pub mod fetch;
pub mod frame;
pub mod fuzzing;
pub mod records;
pub mod scram;
pub mod versions;

pub use codec::{decode_request, encode_response, DecodeError, Request, ResponseFrame};
pub use frame::{FrameError, FrameReader};
pub use kafka_protocol;
pub use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
pub use versions::{api_versions_table, supported_range, unsupported_api_versions, SUPPORTED_APIS};
