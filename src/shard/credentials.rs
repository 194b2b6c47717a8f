//! `--add-scram`: the first SCRAM credentials, created at start (Kafka creates them when it
//! formats storage). A user who already has a credential for that mechanism keeps it, so a
//! password changed since is never reset by a restart. Runs on shard 0; in a cluster it waits
//! for an active controller, retrying every second.

use std::rc::Rc;
use std::time::Duration;

use tracing::{info, warn};

use crate::controller::ScramChange;
use crate::security::scram::ScramCredential;
use crate::shard::controller::{run, ControllerOp};
use crate::shard::Shard;

const RETRY: Duration = Duration::from_secs(1);
/// Attempts before giving up (about ten minutes): a cluster without a controller that long
/// has bigger problems, and the operator can add the user with `sluice user create`.
const ATTEMPTS_MAX: u32 = 600;

pub async fn bootstrap(shard: Rc<Shard>) {
    if shard.config.add_scram.is_empty() {
        return;
    }
    for attempt in 1..=ATTEMPTS_MAX {
        if shard.shutting_down.get() {
            return;
        }
        let image = shard.metadata();
        let missing: Vec<(String, Vec<ScramChange>)> = shard
            .config
            .add_scram
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
        if missing.is_empty() {
            return;
        }
        match run(&shard, ControllerOp::AlterScram(missing)).await.scram() {
            Ok(outcomes) if outcomes.iter().all(|o| o.1 == 0) => {
                let users: Vec<&String> = outcomes.iter().map(|o| &o.0).collect();
                info!(?users, "--add-scram: credentials created");
                return;
            }
            Ok(outcomes) => warn!(?outcomes, "--add-scram: some credentials were refused"),
            Err(e) if attempt % 10 == 1 => {
                info!(error = %e.message, "--add-scram: waiting for the controller")
            }
            Err(_) => {}
        }
        crate::runtime::sleep(RETRY).await;
    }
    warn!("--add-scram: gave up; create the users with `sluice user create`");
}
