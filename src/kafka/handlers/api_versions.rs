//! ApiVersions: answered from the one version table. A request at a version we lack gets a v0
//! body with UNSUPPORTED_VERSION (35) and the table, so the client can retry lower.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use std::rc::Rc;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;
use sluice_net::{ResponseFrame, ResponseKind, SUPPORTED_APIS};

use crate::kafka::dispatch::Ctx;
use crate::shard::Shard;

fn table() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub async fn handle(_shard: Rc<Shard>, _req: ApiVersionsRequest, _ctx: Ctx) -> ResponseKind {
    // Default-valued tagged fields stay out (librdkafka 2.0 fails on them): the defaults of
    // supported_features / finalized_features_epoch / finalized_features are omitted by the encoder.
    ResponseKind::ApiVersions(ApiVersionsResponse::default().with_api_keys(table()))
}

pub fn unsupported_version(correlation_id: i32) -> Option<ResponseFrame> {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(table());
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    body.encode(&mut buf, 0).ok()?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Some(vec![buf.freeze()])
}
