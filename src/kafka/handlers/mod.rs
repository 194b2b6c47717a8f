//! One file per Kafka API. Each handler takes the decoded request and returns the response
//! body; partition work runs on the partition's owner shard through the mesh.

pub mod alter_configs;
// --- consumer groups (group coordinator) ---
pub mod delete_groups;
pub mod describe_groups;
pub mod find_coordinator;
pub mod heartbeat;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod sync_group;
// --- end consumer groups ---
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::join_all;

use crate::cluster::image::TopicMeta;
use crate::partition::Partition;
use crate::shard::Shard;

/// Work for one partition: its topic, index and what to run on it (see [`on_partitions`]).
pub type PartitionWork<F> = (Arc<TopicMeta>, i32, F);

/// Runs each item's `f` with its partition on the partition's owner shard: one mesh message per
/// owner shard, however many partitions it owns; the partitions of one shard run concurrently
/// there. Results come back in input order; `None` where the owner shard could not be reached.
pub async fn on_partitions<R, F, Fut>(
    shard: &Rc<Shard>,
    work: Vec<PartitionWork<F>>,
) -> Vec<Option<R>>
where
    R: Send + 'static,
    F: FnOnce(Option<Rc<Partition>>) -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
{
    let mut results: Vec<Option<R>> = work.iter().map(|_| None).collect();
    let mut by_owner: BTreeMap<usize, Vec<(usize, String, i32, F)>> = BTreeMap::new();
    for (pos, (topic, index, f)) in work.into_iter().enumerate() {
        let owner = shard.owner_of(&topic, index);
        by_owner
            .entry(owner)
            .or_default()
            .push((pos, topic.name.clone(), index, f));
    }
    let calls = by_owner.into_iter().map(|(owner, items)| {
        shard.call(owner, move |s: &Rc<Shard>| {
            let runs: Vec<_> = items
                .into_iter()
                .map(|(pos, name, index, f)| {
                    let fut = f(s.partition(&name, index));
                    async move { (pos, fut.await) }
                })
                .collect();
            join_all(runs)
        })
    });
    for done in join_all(calls).await.into_iter().flatten() {
        for (pos, r) in done {
            results[pos] = Some(r);
        }
    }
    results
}
