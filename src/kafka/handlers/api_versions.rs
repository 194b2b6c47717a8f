//! ApiVersions: answered from the one version table, and from v3 on with the features (the
//! `transaction.version` level, `--transaction-version`). A request at a version we lack gets
//! a v0 body with UNSUPPORTED_VERSION (35) and the table, so the client can retry lower.

use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_net::{api_versions_table, unsupported_api_versions, ResponseFrame, ResponseKind};

use crate::coordinator::txn::coordinator::TRANSACTION_VERSION_MAX;
use crate::kafka::dispatch::Ctx;
use crate::shard::Shard;

/// The one feature Sluice finalizes: Kafka's `transaction.version` (KIP-890 part 2 at level 2).
const TRANSACTION_VERSION: &str = "transaction.version";

pub async fn handle(shard: Rc<Shard>, _req: ApiVersionsRequest, ctx: Ctx) -> ResponseKind {
    let resp = ApiVersionsResponse::default().with_api_keys(api_versions_table(|_| true));
    if ctx.version < 3 {
        return ResponseKind::ApiVersions(resp);
    }
    // v3+ (tagged fields): the features, as Kafka's brokers list them. The finalized level
    // is `--transaction-version`; a level of 0 is not listed, as in Kafka. The epoch does not
    // change while a broker runs: a client takes the level its first ApiVersions shows.
    let level = shard.config.args.transaction_version;
    let finalized = (level > 0)
        .then(|| {
            FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .into_iter()
        .collect();
    ResponseKind::ApiVersions(
        resp.with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION_MAX)])
            .with_finalized_features_epoch(0)
            .with_finalized_features(finalized),
    )
}

pub fn unsupported_version(correlation_id: i32) -> Option<ResponseFrame> {
    unsupported_api_versions(correlation_id, api_versions_table(|_| true))
}
