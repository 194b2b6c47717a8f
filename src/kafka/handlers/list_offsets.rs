//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), or the first
//! offset whose timestamp is at or after a given time.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::kafka::handlers::on_partitions;
use crate::shard::ops::{PartitionOp, PartitionOpOutcome};
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: ListOffsetsRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    let (mut work, mut slots) = (Vec::new(), Vec::new());
    for (ti, t) in req.topics.into_iter().enumerate() {
        let meta = image.topic(t.name.0.as_str()).cloned();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.into_iter().enumerate() {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let Some(meta) = meta.clone().filter(|m| m.has_partition(p.partition_index)) else {
                partitions
                    .push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let op = PartitionOp::ListOffset {
                timestamp: p.timestamp,
            };
            work.push((meta, p.partition_index, op));
            slots.push((ti, pi));
            partitions.push(base);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    for ((ti, pi), r) in slots.into_iter().zip(on_partitions(&shard, work).await) {
        let out = &mut topics[ti].partitions[pi];
        match r {
            Some(Ok(PartitionOpOutcome::Offset(Some((ts, offset)), epoch))) => {
                out.timestamp = ts;
                out.offset = offset;
                // leader_epoch exists from v4; older encodings refuse a non-default value.
                out.leader_epoch = if version >= 4 { epoch } else { -1 };
            }
            Some(Ok(PartitionOpOutcome::Offset(None, _))) => {}
            Some(Ok(_)) => out.error_code = ResponseError::UnknownServerError.code(),
            Some(Err(e)) => out.error_code = e.code(),
            None => out.error_code = ResponseError::NotLeaderOrFollower.code(),
        }
    }
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
}
