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
pub mod describe_quorum;
pub mod elect_leaders;
pub mod features;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod reassignments;
// security
pub mod acls;
pub mod client_quotas;
pub mod sasl;
pub mod scram_credentials;
// transactions (transaction coordinator)
pub mod transactions;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::join_all;
use kafka_protocol::messages::TopicName;
use kafka_protocol::ResponseError;

use crate::cluster::image::TopicMeta;
use crate::shard::ops::{PartitionOp, PartitionOpOutcome};
use crate::shard::{MeshMsg, Shard};

/// Whether a request may create topic `name` (auto-creation, CreateTopics): CREATE on the
/// cluster or on the topic, as Kafka checks it.
pub fn may_create(shard: &Shard, ctx: &crate::kafka::dispatch::Ctx, name: &str) -> bool {
    use crate::security::acl::{CLUSTER_NAME, OP_CREATE, RESOURCE_CLUSTER, RESOURCE_TOPIC};
    ctx.allowed(shard, OP_CREATE, RESOURCE_CLUSTER, CLUSTER_NAME)
        || ctx.may(shard, OP_CREATE, RESOURCE_TOPIC, name)
}

/// The shape of the per-partition admin requests (ListOffsets, DeleteRecords,
/// OffsetForLeaderEpoch): `topics` holds each topic's name and partition entries; `plan` turns
/// an entry of a known partition into the op to run (or the error to answer); `answer` builds
/// the entry's response from the outcome. Unknown topics and partitions answer
/// UNKNOWN_TOPIC_OR_PARTITION; an unreachable owner shard NOT_LEADER_OR_FOLLOWER. The answers
/// keep the request's order.
pub async fn per_partition<P, R>(
    shard: &Rc<Shard>,
    topics: Vec<(TopicName, Vec<P>)>,
    index: impl Fn(&P) -> i32,
    plan: impl Fn(&TopicMeta, &P) -> Result<PartitionOp, ResponseError>,
    answer: impl Fn(&P, Result<PartitionOpOutcome, ResponseError>) -> R,
) -> Vec<(TopicName, Vec<R>)> {
    let image = shard.metadata();
    let mut outcomes: Vec<Vec<Option<Result<PartitionOpOutcome, ResponseError>>>> = Vec::new();
    let (mut work, mut slots) = (Vec::new(), Vec::new());
    for (ti, (name, parts)) in topics.iter().enumerate() {
        let meta = image.topic(name.0.as_str());
        let mut row = Vec::with_capacity(parts.len());
        for (pi, p) in parts.iter().enumerate() {
            let planned = match meta.filter(|m| m.has_partition(index(p))) {
                None => Err(ResponseError::UnknownTopicOrPartition),
                Some(m) if !shard.leads(m, index(p)) => Err(ResponseError::NotLeaderOrFollower),
                Some(m) => plan(m, p).map(|op| (m.clone(), op)),
            };
            row.push(match planned {
                Ok((m, op)) => {
                    work.push((m, index(p), op));
                    slots.push((ti, pi));
                    None
                }
                Err(e) => Some(Err(e)),
            });
        }
        outcomes.push(row);
    }
    for ((ti, pi), r) in slots.into_iter().zip(on_partitions(shard, work).await) {
        outcomes[ti][pi] = Some(r.unwrap_or(Err(ResponseError::NotLeaderOrFollower)));
    }
    topics
        .into_iter()
        .zip(outcomes)
        .map(|((name, parts), row)| {
            let answers = parts
                .iter()
                .zip(row)
                .map(|(p, r)| answer(p, r.unwrap_or(Err(ResponseError::NotLeaderOrFollower))))
                .collect();
            (name, answers)
        })
        .collect()
}

/// One op for a partition of a shard's: (topic, partition, op).
type ShardOp = (String, i32, PartitionOp);

/// Runs each `(topic, partition, op)` on the partition's owner shard: one mesh message per
/// owner shard, however many partitions it owns; the partitions of one shard run concurrently
/// there. Results come back in input order; `None` where the owner shard could not be reached.
async fn on_partitions(
    shard: &Rc<Shard>,
    work: Vec<(Arc<TopicMeta>, i32, PartitionOp)>,
) -> Vec<Option<Result<PartitionOpOutcome, ResponseError>>> {
    let mut results: Vec<Option<_>> = work.iter().map(|_| None).collect();
    let mut by_owner: BTreeMap<usize, (Vec<usize>, Vec<ShardOp>)> = BTreeMap::new();
    for (pos, (topic, index, op)) in work.into_iter().enumerate() {
        let owner = shard.owner_of(&topic, index);
        let (positions, ops) = by_owner.entry(owner).or_default();
        positions.push(pos);
        ops.push((topic.name.clone(), index, op));
    }
    let calls = by_owner
        .into_iter()
        .map(|(owner, (positions, ops))| async move {
            let r = shard
                .request(owner, |reply| MeshMsg::PartitionOps { ops, reply })
                .await;
            (positions, r.ok())
        });
    for (positions, outcomes) in join_all(calls).await {
        for (pos, outcome) in positions.into_iter().zip(outcomes.into_iter().flatten()) {
            results[pos] = Some(outcome);
        }
    }
    results
}
