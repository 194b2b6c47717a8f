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

use std::future::Future;
use std::rc::Rc;

use crate::cluster::image::TopicMeta;
use crate::partition::Partition;
use crate::shard::Shard;

/// Runs `f` with the partition on its owner shard (`None` if that shard does not have it).
pub async fn on_partition<R, F, Fut>(
    shard: &Rc<Shard>,
    topic: &TopicMeta,
    index: i32,
    f: F,
) -> Option<R>
where
    R: Send + 'static,
    F: FnOnce(Option<Rc<Partition>>) -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
{
    let owner = shard.owner_of(topic, index);
    let name = topic.name.clone();
    shard
        .call(owner, move |s: &Rc<Shard>| f(s.partition(&name, index)))
        .await
        .ok()
}
