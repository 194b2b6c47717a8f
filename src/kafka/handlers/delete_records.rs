//! DeleteRecords: moves a partition's log start offset forward (offset -1 = high watermark).
//! Kafka Streams purges repartition topics with it.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::kafka::handlers::per_partition;
use crate::security::acl::{OP_DELETE, RESOURCE_TOPIC};
use crate::shard::ops::{PartitionOp, PartitionOpOutcome};
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: DeleteRecordsRequest, ctx: Ctx) -> ResponseKind {
    let topics = req
        .topics
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    let answers = per_partition(
        &shard,
        topics,
        |p| p.partition_index,
        |meta, p| {
            // ACLs: DELETE on the topic.
            if !ctx.may(&shard, OP_DELETE, RESOURCE_TOPIC, &meta.name) {
                return Err(ResponseError::TopicAuthorizationFailed);
            }
            if meta.internal {
                // As Kafka: "Cannot delete records of internal topic".
                return Err(ResponseError::InvalidTopicException);
            }
            Ok(PartitionOp::DeleteRecords { offset: p.offset })
        },
        |p, r| {
            let base = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            match r {
                Ok(PartitionOpOutcome::LowWatermark(low)) => base.with_low_watermark(low),
                Ok(_) => base.with_error_code(ResponseError::UnknownServerError.code()),
                Err(e) => base.with_error_code(e.code()),
            }
        },
    )
    .await;
    let topics = answers
        .into_iter()
        .map(|(name, partitions)| {
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
}
