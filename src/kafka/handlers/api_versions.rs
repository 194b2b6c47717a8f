//! ApiVersions: answered from the one version table, and from v3 on with the features (the
//! cluster's finalized `transaction.version`, see `crate::cluster::features`). A request at a
//! version we lack gets a v0 body with UNSUPPORTED_VERSION (35) and the table, so the client
//! can retry lower.

use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_net::{api_versions_table, unsupported_api_versions, ResponseFrame, ResponseKind};

use crate::cluster::features::{transaction_version, SUPPORTED, TRANSACTION_VERSION};
use crate::kafka::dispatch::Ctx;
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, _req: ApiVersionsRequest, ctx: Ctx) -> ResponseKind {
    let resp = ApiVersionsResponse::default().with_api_keys(api_versions_table(|_| true));
    if ctx.version < 3 {
        return ResponseKind::ApiVersions(resp);
    }
    // v3+ (tagged fields): the features, as Kafka's brokers list them. A level of 0 is not
    // listed, as in Kafka. The epoch is the metadata offset the levels were read at (Kafka's
    // too): it only grows, so a client keeps the newest view it saw.
    // The level and its epoch from one image.
    let image = shard.metadata();
    let level = transaction_version(&image.features, shard.config.args.transaction_version);
    let finalized = (level > 0)
        .then(|| {
            FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .into_iter()
        .collect();
    let supported = SUPPORTED
        .iter()
        .map(|&(name, min, max)| {
            SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str(name))
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ResponseKind::ApiVersions(
        resp.with_supported_features(supported)
            .with_finalized_features_epoch(image.epoch as i64)
            .with_finalized_features(finalized),
    )
}

pub fn unsupported_version(correlation_id: i32) -> Option<ResponseFrame> {
    unsupported_api_versions(correlation_id, api_versions_table(|_| true))
}
