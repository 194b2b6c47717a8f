//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), or the first
//! offset whose timestamp is at or after a given time.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::errors::storage_error;
use crate::kafka::dispatch::Ctx;
use crate::kafka::handlers::on_partitions;
use crate::kafka::records;
use crate::partition::Partition;
use crate::shard::Shard;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

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
            let ts = p.timestamp;
            work.push((
                meta,
                p.partition_index,
                move |part: Option<Rc<Partition>>| async move {
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
                },
            ));
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
            Some(Ok((Some((ts, offset)), epoch))) => {
                out.timestamp = ts;
                out.offset = offset;
                // leader_epoch exists from v4; older encodings refuse a non-default value.
                out.leader_epoch = if version >= 4 { epoch } else { -1 };
            }
            Some(Ok((None, _))) => {}
            Some(Err(e)) => out.error_code = e.code(),
            None => out.error_code = ResponseError::NotLeaderOrFollower.code(),
        }
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
