//! OffsetForLeaderEpoch: the end offset of a leader epoch, from each partition's epoch cache.
//! Consumers use it to validate their position after a leader change.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::handlers::on_partition;
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: OffsetForLeaderEpochRequest) -> ResponseKind {
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = image.topic(t.topic.0.as_str()).cloned();
        let parts = t.partitions.into_iter().map(|p| {
            let shard = shard.clone();
            let meta = meta.clone();
            async move {
                let base = EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_leader_epoch(-1)
                    .with_end_offset(-1);
                let Some(meta) = meta.filter(|m| m.has_partition(p.partition)) else {
                    return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                };
                let (current, wanted) = (p.current_leader_epoch, p.leader_epoch);
                let r = on_partition(&shard, &meta, p.partition, move |part| async move {
                    let part = part.ok_or(ResponseError::NotLeaderOrFollower)?;
                    if current > part.leader_epoch {
                        return Err(ResponseError::UnknownLeaderEpoch);
                    }
                    if current >= 0 && current < part.leader_epoch {
                        return Err(ResponseError::FencedLeaderEpoch);
                    }
                    Ok(part.log.end_offset_for_epoch(wanted))
                })
                .await;
                match r {
                    Some(Ok((epoch, end))) => base.with_leader_epoch(epoch).with_end_offset(end),
                    Some(Err(e)) => base.with_error_code(e.code()),
                    None => base.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                }
            }
        });
        let partitions = join_all(parts).await;
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
