//! ApiVersions: answered from the one version table. A request at a version we lack gets a v0
//! body with UNSUPPORTED_VERSION (35) and the table, so the client can retry lower.

use std::rc::Rc;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use sluice_net::{api_versions_table, unsupported_api_versions, ResponseFrame, ResponseKind};

use crate::kafka::dispatch::Ctx;
use crate::shard::Shard;

pub async fn handle(_shard: Rc<Shard>, _req: ApiVersionsRequest, _ctx: Ctx) -> ResponseKind {
    // Default-valued tagged fields stay out (librdkafka 2.0 fails on them): the defaults of
    // supported_features / finalized_features_epoch / finalized_features are omitted by the encoder.
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default().with_api_keys(api_versions_table(|_| true)),
    )
}

pub fn unsupported_version(correlation_id: i32) -> Option<ResponseFrame> {
    unsupported_api_versions(correlation_id, api_versions_table(|_| true))
}
