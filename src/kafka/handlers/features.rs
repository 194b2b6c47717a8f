//! UpdateFeatures (KIP-584): changes the cluster's finalized feature levels
//! (`crate::cluster::features`) through the active controller, all or none; ApiVersions
//! (v3+) lists them. Needs ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED otherwise); an
//! unknown feature, a level out of range, a downgrade without a downgrade type, or one feature
//! twice answer INVALID_UPDATE_VERSION naming why. `validate_only` (v1+) checks against this
//! broker's image and changes nothing.

use std::rc::Rc;

use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::cluster::features::{plan, FeatureUpdate, UpgradeType};
use crate::controller::OpError;
use crate::kafka::dispatch::Ctx;
use crate::security::acl::OP_ALTER;
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::sb;

/// Updates one request may carry.
const UPDATES_MAX: usize = 64;

pub async fn handle(shard: Rc<Shard>, req: UpdateFeaturesRequest, ctx: Ctx) -> ResponseKind {
    let outcome = if !ctx.may_cluster(&shard, OP_ALTER) {
        Err(OpError::new(
            ResponseError::ClusterAuthorizationFailed,
            "not authorized to alter the cluster",
        ))
    } else {
        update(&shard, &req, ctx.version).await
    };
    // v0/v1 answer per feature as well; v2 only at the top.
    let (code, message) = match &outcome {
        Ok(()) => (0, None),
        Err(e) => (e.error.code(), Some(sb(e.message.clone()))),
    };
    let results = if ctx.version < 2 {
        req.feature_updates
            .iter()
            .map(|u| {
                UpdatableFeatureResult::default()
                    .with_feature(u.feature.clone())
                    .with_error_code(code)
                    .with_error_message(message.clone())
            })
            .collect()
    } else {
        Vec::new()
    };
    ResponseKind::UpdateFeatures(
        UpdateFeaturesResponse::default()
            .with_error_code(code)
            .with_error_message(message)
            .with_results(results),
    )
}

async fn update(
    shard: &Rc<Shard>,
    req: &UpdateFeaturesRequest,
    version: i16,
) -> Result<(), OpError> {
    let invalid = |why: String| OpError::new(ResponseError::InvalidUpdateVersion, why);
    if req.feature_updates.len() > UPDATES_MAX {
        return Err(OpError::new(
            ResponseError::InvalidRequest,
            "too many feature updates",
        ));
    }
    let mut updates: Vec<FeatureUpdate> = Vec::with_capacity(req.feature_updates.len());
    for u in &req.feature_updates {
        let name = u.feature.to_string();
        let kind = if version == 0 {
            if u.allow_downgrade {
                UpgradeType::SafeDowngrade
            } else {
                UpgradeType::Upgrade
            }
        } else {
            UpgradeType::from_wire(u.upgrade_type).ok_or_else(|| {
                invalid(format!("{name}: unknown upgrade type {}", u.upgrade_type))
            })?
        };
        if updates.iter().any(|o| o.name == name) {
            return Err(invalid(format!("{name} is updated twice")));
        }
        updates.push(FeatureUpdate {
            name,
            level: u.max_version_level,
            kind,
        });
    }
    if req.validate_only {
        return plan(&shard.metadata().features, &updates, false)
            .map(drop)
            .map_err(invalid);
    }
    if updates.is_empty() {
        return Ok(());
    }
    let op = ControllerOp::UpdateFeatures {
        updates,
        bootstrap: false,
    };
    on_controller(shard, op)
        .await
        .and_then(ControllerReply::done)
}
