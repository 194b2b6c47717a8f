//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), or the first
//! offset whose timestamp is at or after a given time.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::errors::storage_error;
use crate::kafka::handlers::on_partition;
use crate::kafka::records;
use crate::shard::Shard;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub async fn handle(shard: Rc<Shard>, req: ListOffsetsRequest, version: i16) -> ResponseKind {
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = image.topic(t.name.0.as_str()).cloned();
        let parts = t.partitions.into_iter().map(|p| {
            let shard = shard.clone();
            let meta = meta.clone();
            async move {
                let base = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(-1);
                let Some(meta) = meta.filter(|m| m.has_partition(p.partition_index)) else {
                    return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                };
                let ts = p.timestamp;
                let r = on_partition(&shard, &meta, p.partition_index, move |part| async move {
                    let part = part.ok_or(ResponseError::NotLeaderOrFollower)?;
                    let log = &part.log;
                    let found = match ts {
                        LATEST => Some((-1, part.high_watermark())),
                        EARLIEST | EARLIEST_LOCAL => Some((-1, log.log_start_offset())),
                        MAX_TIMESTAMP => match log.max_timestamp() {
                            Some((ts, offset)) => Some(
                                first_batch(&part, offset)
                                    .await
                                    .and_then(records::max_timestamp_record)
                                    .map_or((ts, offset), |(o, t)| (t, o)),
                            ),
                            None => None,
                        },
                        t if t >= 0 => match log
                            .offset_for_timestamp(t)
                            .await
                            .map_err(|e| storage_error(&e))?
                        {
                            // The batch is the first whose max timestamp reaches `t`; Kafka
                            // answers with the first *record* at or after `t` inside it.
                            Some((offset, batch_ts)) => Some(
                                first_batch(&part, offset)
                                    .await
                                    .and_then(|b| records::first_at_or_after(b, t))
                                    .map_or((batch_ts, offset), |(o, ts)| {
                                        (ts, o.max(log.log_start_offset()))
                                    }),
                            ),
                            None => None,
                        },
                        _ => return Err(ResponseError::InvalidRequest),
                    };
                    Ok((found, part.leader_epoch))
                })
                .await;
                match r {
                    Some(Ok((Some((ts, offset)), epoch))) => base
                        .with_timestamp(ts)
                        .with_offset(offset)
                        // leader_epoch exists from v4; older encodings refuse a non-default value.
                        .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                    Some(Ok((None, _))) => base,
                    Some(Err(e)) => base.with_error_code(e.code()),
                    None => base.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                }
            }
        });
        let partitions = join_all(parts).await;
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
}

/// The stored batch containing `offset` (whole, as written).
async fn first_batch(part: &crate::partition::Partition, offset: i64) -> Option<bytes::Bytes> {
    let r = part.read(offset, 1).await.ok()?;
    let first = r.chunks.into_iter().next()?;
    let h = sluice_storage::BatchHeader::parse(&first).ok()?;
    first
        .get(..h.total_size())
        .map(|_| first.slice(..h.total_size()))
}
