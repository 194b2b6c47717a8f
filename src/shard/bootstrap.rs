//! What a node writes to the cluster metadata at start when the cluster lacks it, as Kafka
//! does when it formats storage: `--add-scram`'s first SCRAM credentials (a user who already
//! has a credential for that mechanism keeps it, so a password changed since is never reset by
//! a restart) and `--transaction-version` as the finalized `transaction.version` (a level the
//! cluster already has stays: UpdateFeatures changes it). Runs on shard 0; in a cluster it
//! waits for an active controller, retrying every second.

use std::rc::Rc;
use std::time::Duration;

use tracing::{info, warn};

use crate::cluster::features::{FeatureUpdate, UpgradeType, TRANSACTION_VERSION};
use crate::cluster::image::MetadataImage;
use crate::controller::ScramChange;
use crate::security::scram::ScramCredential;
use crate::shard::controller::{run as run_op, ControllerOp, ControllerReply};
use crate::shard::Shard;

const RETRY: Duration = Duration::from_secs(1);
/// Attempts before giving up (about ten minutes): a cluster without a controller that long
/// has bigger problems, and the operator can make the change with the CLI.
const ATTEMPTS_MAX: u32 = 600;

pub async fn run(shard: Rc<Shard>) {
    let add_scram = &shard.config.add_scram;
    // The credentials `--add-scram` names that the image lacks, as one change.
    let scram = |image: &MetadataImage| {
        let missing: Vec<(String, Vec<ScramChange>)> = add_scram
            .iter()
            .filter(|b| image.scram_credential(&b.user, b.mechanism).is_none())
            .map(|b| {
                let credential =
                    ScramCredential::from_password(b.mechanism, &b.password, b.iterations);
                let change = ScramChange::Upsert {
                    mechanism: b.mechanism,
                    credential,
                };
                (b.user.clone(), vec![change])
            })
            .collect();
        (!missing.is_empty()).then_some(ControllerOp::AlterScram(missing))
    };
    until_done(&shard, "--add-scram", scram, |reply| match reply.scram() {
        Ok(outcomes) if outcomes.iter().all(|o| o.1 == 0) => {
            let users: Vec<&String> = outcomes.iter().map(|o| &o.0).collect();
            info!(?users, "--add-scram: credentials created");
            Ok(true)
        }
        Ok(outcomes) => {
            warn!(?outcomes, "--add-scram: some credentials were refused");
            Ok(false)
        }
        Err(e) => Err(e.message),
    })
    .await;
    let level = shard.config.args.transaction_version;
    let features = |image: &MetadataImage| {
        (!image.features.contains_key(TRANSACTION_VERSION)).then(|| ControllerOp::UpdateFeatures {
            updates: vec![FeatureUpdate {
                name: TRANSACTION_VERSION.to_owned(),
                level,
                kind: UpgradeType::Upgrade,
            }],
            bootstrap: true,
        })
    };
    until_done(&shard, "--transaction-version", features, |reply| {
        reply.done().map_err(|e| e.message)?;
        info!(
            level,
            "--transaction-version: transaction.version finalized"
        );
        Ok(true)
    })
    .await;
}

/// Runs the op `op` builds from the current image until `settled` says the reply is final or
/// the image needs nothing (`op` answers `None`); waits out a missing controller.
async fn until_done(
    shard: &Rc<Shard>,
    what: &str,
    op: impl Fn(&MetadataImage) -> Option<ControllerOp>,
    settled: impl Fn(ControllerReply) -> Result<bool, String>,
) {
    for attempt in 1..=ATTEMPTS_MAX {
        if shard.shutting_down.get() {
            return;
        }
        let Some(op) = op(&shard.metadata()) else {
            return;
        };
        match settled(run_op(shard, op).await) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) if attempt % 10 == 1 => info!(error = %e, "{what}: waiting for the controller"),
            Err(_) => {}
        }
        crate::runtime::sleep(RETRY).await;
    }
    warn!("{what}: gave up; make the change with the `sluice` CLI");
}
