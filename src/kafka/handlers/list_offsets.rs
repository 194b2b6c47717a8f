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
use crate::kafka::handlers::per_partition;
use crate::security::acl::{OP_DESCRIBE, RESOURCE_TOPIC};
use crate::shard::ops::{PartitionOp, PartitionOpOutcome};
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: ListOffsetsRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    // isolation_level (v2+): 1 = READ_COMMITTED, whose "latest" is the last stable offset.
    let read_committed = version >= 2 && req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    let answers = per_partition(
        &shard,
        topics,
        |p| p.partition_index,
        |m, p| {
            // ACLs: DESCRIBE on the topic.
            if !ctx.may(&shard, OP_DESCRIBE, RESOURCE_TOPIC, &m.name) {
                return Err(ResponseError::TopicAuthorizationFailed);
            }
            Ok(PartitionOp::ListOffset {
                timestamp: p.timestamp,
                read_committed,
            })
        },
        |p, r| {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            match r {
                Ok(PartitionOpOutcome::Offset(Some((ts, offset)), epoch)) => base
                    .with_timestamp(ts)
                    .with_offset(offset)
                    // leader_epoch exists from v4; older encodings refuse a non-default value.
                    .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                Ok(PartitionOpOutcome::Offset(None, _)) => base,
                Ok(_) => base.with_error_code(ResponseError::UnknownServerError.code()),
                Err(e) => base.with_error_code(e.code()),
            }
        },
    )
    .await;
    let topics = answers
        .into_iter()
        .map(|(name, partitions)| {
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
}
