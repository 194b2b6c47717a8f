//! DeleteRecords: moves a partition's log start offset forward (offset -1 = high watermark).
//! Kafka Streams purges repartition topics with it.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::errors::storage_error;
use crate::kafka::handlers::on_partition;
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: DeleteRecordsRequest) -> ResponseKind {
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = image.topic(t.name.0.as_str()).cloned();
        let parts = t.partitions.into_iter().map(|p| {
            let shard = shard.clone();
            let meta = meta.clone();
            async move {
                let base = DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1);
                let Some(meta) = meta.filter(|m| m.has_partition(p.partition_index)) else {
                    return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                };
                if meta.internal {
                    // As Kafka: "Cannot delete records of internal topic".
                    return base.with_error_code(ResponseError::InvalidTopicException.code());
                }
                let offset = p.offset;
                let r = on_partition(&shard, &meta, p.partition_index, move |part| async move {
                    let part = part.ok_or(ResponseError::NotLeaderOrFollower)?;
                    let log = &part.log;
                    let hw = part.high_watermark();
                    let target = if offset == -1 { hw } else { offset };
                    if target < 0 || target > hw {
                        return Err(ResponseError::OffsetOutOfRange);
                    }
                    log.delete_records_before(target)
                        .await
                        .map_err(|e| storage_error(&e))
                })
                .await;
                match r {
                    Some(Ok(low)) => base.with_low_watermark(low),
                    Some(Err(e)) => base.with_error_code(e.code()),
                    None => base.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                }
            }
        });
        let partitions = join_all(parts).await;
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
}
