//! Request decoding and response encoding around the `kafka-protocol` message types.
//!
//! Request frame body layout (header v1; v2 adds tagged fields after `client_id`):
//! ```text
//! api_key: i16 | api_version: i16 | correlation_id: i32 | client_id: nullable string | body
//! ```
//! Response frame: `size: i32 | correlation_id: i32 | [tagged fields if header v1] | body`.
//! ApiVersions responses always use header v0 so an old client can read the error.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::versions::supported_range;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub body: RequestKind,
}

/// Why a request frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("request frame of {0} bytes is shorter than a request header")]
    TooShort(usize),
    #[error("unknown api key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("unsupported version {api_version} of {api_key:?} (correlation id {correlation_id})")]
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
    },
    #[error(
        "malformed {api_key:?} v{api_version} request (correlation id {correlation_id}): {reason}"
    )]
    Malformed {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Bytes of one response, ready for a vectored write (size prefix included).
pub type ResponseFrame = Vec<Bytes>;

/// Decodes a whole request frame body (without its size prefix). Never panics.
pub fn decode_request(frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    match supported_range(api_key) {
        Some((min, max)) if (min..=max).contains(&api_version) => {}
        _ => {
            return Err(DecodeError::UnsupportedVersion {
                api_key,
                api_version,
                correlation_id,
            })
        }
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        api_version,
        correlation_id,
        reason,
    };
    let mut buf = frame;
    let header_version = api_key.request_header_version(api_version);
    let header = guard(|| RequestHeader::decode(&mut buf, header_version)).map_err(malformed)?;
    let body = guard(|| RequestKind::decode(api_key, &mut buf, api_version)).map_err(malformed)?;
    Ok(Request {
        api_key,
        api_version,
        correlation_id,
        client_id: header.client_id.map(|s| s.as_str().to_owned()),
        body,
    })
}

/// Runs a `kafka-protocol` decoder, turning both errors and (defensively) panics into a reason.
fn guard<T, E: std::fmt::Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("decoder panicked".to_owned()),
    }
}

/// Errors while encoding a response: always a bug (a field outside its version), never input.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub reason: String,
}

/// Encodes a response with its header and size prefix.
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<ResponseFrame, EncodeError> {
    let err = |reason: String| EncodeError {
        api_key,
        api_version,
        reason,
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    encode_response_header(&mut buf, api_key, api_version, correlation_id)
        .map_err(|e| err(e.to_string()))?;
    body.encode(&mut buf, api_version)
        .map_err(|e| err(e.to_string()))?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(vec![buf.freeze()])
}

/// Writes the response header for `api_key`/`api_version` into `buf`.
pub fn encode_response_header(
    buf: &mut BytesMut,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
) -> Result<(), String> {
    let header_version = api_key.response_header_version(api_version);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(buf, header_version)
        .map_err(|e| e.to_string())
}
