//! OffsetForLeaderEpoch: the end offset of a leader epoch, from each partition's epoch cache.
//! Consumers use it to validate their position after a leader change.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::kafka::handlers::per_partition;
use crate::shard::ops::{PartitionOp, PartitionOpOutcome};
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: OffsetForLeaderEpochRequest, ctx: Ctx) -> ResponseKind {
    // ACLs: a follower (replica id ≥ 0) needs CLUSTER_ACTION, a consumer DESCRIBE on the topic.
    let from_replica = req.replica_id.0 >= 0;
    let cluster_ok =
        !from_replica || ctx.may_cluster(&shard, crate::security::acl::OP_CLUSTER_ACTION);
    let topics = req
        .topics
        .into_iter()
        .map(|t| (t.topic, t.partitions))
        .collect();
    let answers = per_partition(
        &shard,
        topics,
        |p| p.partition,
        |m, p| {
            if !cluster_ok {
                return Err(ResponseError::ClusterAuthorizationFailed);
            }
            if !from_replica
                && !ctx.may(
                    &shard,
                    crate::security::acl::OP_DESCRIBE,
                    crate::security::acl::RESOURCE_TOPIC,
                    &m.name,
                )
            {
                return Err(ResponseError::TopicAuthorizationFailed);
            }
            Ok(PartitionOp::EpochEnd {
                current: p.current_leader_epoch,
                wanted: p.leader_epoch,
            })
        },
        |p, r| {
            let base = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            match r {
                Ok(PartitionOpOutcome::EpochEnd(epoch, end)) => {
                    base.with_leader_epoch(epoch).with_end_offset(end)
                }
                Ok(_) => base.with_error_code(ResponseError::UnknownServerError.code()),
                Err(e) => base.with_error_code(e.code()),
            }
        },
    )
    .await;
    let topics = answers
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetForLeaderTopicResult::default()
                .with_topic(topic)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
