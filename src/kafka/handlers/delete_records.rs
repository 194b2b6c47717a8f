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
use crate::kafka::handlers::on_partitions;
use crate::shard::ops::{PartitionOp, PartitionOpOutcome};
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: DeleteRecordsRequest, _ctx: Ctx) -> ResponseKind {
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    let (mut work, mut slots) = (Vec::new(), Vec::new());
    for (ti, t) in req.topics.into_iter().enumerate() {
        let meta = image.topic(t.name.0.as_str()).cloned();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.into_iter().enumerate() {
            let base = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let error = match meta.clone().filter(|m| m.has_partition(p.partition_index)) {
                None => Some(ResponseError::UnknownTopicOrPartition),
                // As Kafka: "Cannot delete records of internal topic".
                Some(m) if m.internal => Some(ResponseError::InvalidTopicException),
                Some(m) => {
                    let op = PartitionOp::DeleteRecords { offset: p.offset };
                    work.push((m, p.partition_index, op));
                    slots.push((ti, pi));
                    None
                }
            };
            partitions.push(match error {
                Some(e) => base.with_error_code(e.code()),
                None => base,
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    for ((ti, pi), r) in slots.into_iter().zip(on_partitions(&shard, work).await) {
        let out = &mut topics[ti].partitions[pi];
        match r {
            Some(Ok(PartitionOpOutcome::LowWatermark(low))) => out.low_watermark = low,
            Some(Ok(_)) => out.error_code = ResponseError::UnknownServerError.code(),
            Some(Err(e)) => out.error_code = e.code(),
            None => out.error_code = ResponseError::NotLeaderOrFollower.code(),
        }
    }
    ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
}
