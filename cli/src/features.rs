//! `sluice features describe|upgrade|downgrade`, as Kafka's `kafka-features.sh`: the
//! cluster's supported and finalized feature levels (ApiVersions v3), and UpdateFeatures on the
//! bootstrap broker (it forwards the change to the active controller).

use clap::{Args, Subcommand};
use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, UpdateFeaturesRequest, UpdateFeaturesResponse,
};
use serde::Serialize;

use crate::client::{sb, versions};
use crate::output::{emit, Table};
use crate::{AdminError, ClientArgs};

#[derive(Debug, Args)]
pub struct FeaturesCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: FeaturesAction,
}

#[derive(Debug, Subcommand)]
pub enum FeaturesAction {
    /// Each feature's supported range and finalized level.
    Describe,
    /// Raise finalized levels: `--feature transaction.version=2` (repeatable).
    Upgrade {
        #[arg(long = "feature", required = true)]
        features: Vec<String>,
        /// Check the change without making it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Lower finalized levels (`--feature transaction.version=1`; 0 disables the feature).
    Downgrade {
        #[arg(long = "feature", required = true)]
        features: Vec<String>,
        /// Kafka's unsafe downgrade (metadata may be lost); a safe one otherwise.
        #[arg(long)]
        unsafe_downgrade: bool,
        /// Check the change without making it.
        #[arg(long)]
        dry_run: bool,
    },
}

/// UpdateFeatures' upgrade types.
const UPGRADE: i8 = 1;
const SAFE_DOWNGRADE: i8 = 2;
const UNSAFE_DOWNGRADE: i8 = 3;

pub fn run(cmd: FeaturesCmd) -> Result<(), AdminError> {
    match cmd.action {
        FeaturesAction::Describe => describe(&cmd.client),
        FeaturesAction::Upgrade { features, dry_run } => {
            update(&cmd.client, &features, UPGRADE, dry_run)
        }
        FeaturesAction::Downgrade {
            features,
            unsafe_downgrade,
            dry_run,
        } => {
            let kind = if unsafe_downgrade {
                UNSAFE_DOWNGRADE
            } else {
                SAFE_DOWNGRADE
            };
            update(&cmd.client, &features, kind, dry_run)
        }
    }
}

#[derive(Serialize)]
struct Feature {
    feature: String,
    supported_min: i16,
    supported_max: i16,
    /// 0: not finalized.
    finalized: i16,
    epoch: i64,
}

fn describe(c: &ClientArgs) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let r: ApiVersionsResponse = s.bootstrap().call(
        ApiKey::ApiVersions,
        versions::API_VERSIONS,
        &ApiVersionsRequest::default()
            .with_client_software_name(sb("sluice-cli"))
            .with_client_software_version(sb(env!("CARGO_PKG_VERSION"))),
    )?;
    AdminError::check(r.error_code, None, "ApiVersions")?;
    let out: Vec<Feature> = r
        .supported_features
        .iter()
        .map(|f| Feature {
            feature: f.name.to_string(),
            supported_min: f.min_version,
            supported_max: f.max_version,
            finalized: r
                .finalized_features
                .iter()
                .find(|x| x.name == f.name)
                .map_or(0, |x| x.max_version_level),
            epoch: r.finalized_features_epoch,
        })
        .collect();
    emit(c.format, &out, || {
        let mut t = Table::new(&["FEATURE", "SUPPORTED", "FINALIZED", "EPOCH"]);
        for f in &out {
            t.row(vec![
                f.feature.clone(),
                format!("{}-{}", f.supported_min, f.supported_max),
                f.finalized.to_string(),
                f.epoch.to_string(),
            ]);
        }
        t.render()
    })
}

fn update(c: &ClientArgs, features: &[String], kind: i8, dry_run: bool) -> Result<(), AdminError> {
    let updates = features
        .iter()
        .map(|f| {
            let (name, level) = f
                .split_once('=')
                .and_then(|(n, l)| Some((n.trim(), l.trim().parse::<i16>().ok()?)))
                .ok_or_else(|| AdminError::Usage(format!("--feature {f:?} is not NAME=LEVEL")))?;
            Ok(FeatureUpdateKey::default()
                .with_feature(sb(name))
                .with_max_version_level(level)
                .with_upgrade_type(kind))
        })
        .collect::<Result<Vec<_>, AdminError>>()?;
    let mut s = c.session()?;
    let r: UpdateFeaturesResponse = s.bootstrap().call(
        ApiKey::UpdateFeatures,
        versions::UPDATE_FEATURES,
        &UpdateFeaturesRequest::default()
            .with_timeout_ms(c.timeout_ms as i32)
            .with_feature_updates(updates)
            .with_validate_only(dry_run),
    )?;
    AdminError::check(r.error_code, r.error_message.as_deref(), "UpdateFeatures")?;
    let what = if dry_run { "validated" } else { "finalized" };
    for f in features {
        println!("{f} {what}");
    }
    Ok(())
}
