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

pub async fn handle(shard: Rc<Shard>, req: OffsetForLeaderEpochRequest, _ctx: Ctx) -> ResponseKind {
    let (names, parts): (Vec<_>, Vec<_>) = req
        .topics
        .into_iter()
        .map(|t| (t.topic, t.partitions))
        .unzip();
    let topics = names
        .iter()
        .map(|n| n.0.as_str().to_owned())
        .zip(parts)
        .collect();
    let answers = per_partition(
        &shard,
        topics,
        |p| p.partition,
        |_, p| {
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
    let topics = names
        .into_iter()
        .zip(answers)
        .map(|(topic, partitions)| {
            OffsetForLeaderTopicResult::default()
                .with_topic(topic)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
