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
use crate::kafka::handlers::on_partitions;
use crate::shard::ops::{PartitionOp, PartitionOpOutcome};
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: OffsetForLeaderEpochRequest, _ctx: Ctx) -> ResponseKind {
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    let (mut work, mut slots) = (Vec::new(), Vec::new());
    for (ti, t) in req.topics.into_iter().enumerate() {
        let meta = image.topic(t.topic.0.as_str()).cloned();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.into_iter().enumerate() {
            let base = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            let Some(meta) = meta.clone().filter(|m| m.has_partition(p.partition)) else {
                partitions
                    .push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let op = PartitionOp::EpochEnd {
                current: p.current_leader_epoch,
                wanted: p.leader_epoch,
            };
            work.push((meta, p.partition, op));
            slots.push((ti, pi));
            partitions.push(base);
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    for ((ti, pi), r) in slots.into_iter().zip(on_partitions(&shard, work).await) {
        let out = &mut topics[ti].partitions[pi];
        match r {
            Some(Ok(PartitionOpOutcome::EpochEnd(epoch, end))) => {
                out.leader_epoch = epoch;
                out.end_offset = end;
            }
            Some(Ok(_)) => out.error_code = ResponseError::UnknownServerError.code(),
            Some(Err(e)) => out.error_code = e.code(),
            None => out.error_code = ResponseError::NotLeaderOrFollower.code(),
        }
    }
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
