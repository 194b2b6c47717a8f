//! Fetch: long-poll reads. Partitions are read on their owner shards; if fewer than
//! `min_bytes` came back, every involved shard waits (until the deadline) for new data on its
//! partitions and the first wake-up triggers another round. The response carries the stored
//! batches' `Bytes` straight to the socket (see `sluice_net::fetch`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{join_all, select_all};
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::ResponseError;
use sluice_net::fetch::{
    encode_fetch_response, FetchPartitionOut, FetchResponseOut, FetchTopicOut, NodeEndpointOut,
};
use sluice_net::ResponseFrame;

use crate::kafka::dispatch::{Ctx, Dispatched};
use crate::limits::{FETCH_MAX_WAIT_MS, PARTITIONS_PER_REQUEST_MAX};
use crate::security::acl::{OP_CLUSTER_ACTION, OP_READ, RESOURCE_TOPIC};
use crate::security::quota::QuotaKind;
use crate::shard::ops::{ReadOutcome, ReadRequest, ReplicaFetch, WaitPart};
use crate::shard::{MeshMsg, Shard};

struct Slot {
    ti: usize,
    req: ReadRequest,
}

pub async fn handle(shard: Rc<Shard>, req: FetchRequest, ctx: Ctx) -> Dispatched {
    Dispatched::Respond(Box::pin(answer(shard, req, ctx)))
}

async fn answer(shard: Rc<Shard>, req: FetchRequest, ctx: Ctx) -> Option<ResponseFrame> {
    let version = ctx.version;
    let started = crate::runtime::now();
    let max_wait =
        Duration::from_millis(i64::from(req.max_wait_ms).clamp(0, FETCH_MAX_WAIT_MS) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    }
    .min(shard.config.args.fetch_max_bytes.max(1));
    let image = shard.metadata();
    // A follower's fetch (clusters): it reads past the high watermark and reports its position.
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let from_replica = replica_id >= 0 && shard.config.clustered();
    // isolation_level (v4+): 1 = READ_COMMITTED.
    let read_committed = !from_replica && req.isolation_level == 1;
    // A consumer_byte_rate quota (consumers only; followers are not throttled): no response
    // is larger than one second of it, as in Kafka.
    let fetch_quota = if from_replica {
        None
    } else {
        ctx.quota(&shard, QuotaKind::Fetch)
    };
    let max_bytes = fetch_quota
        .as_ref()
        .map_or(max_bytes, |q| max_bytes.min((q.limit as usize).max(1)));

    let mut resp = FetchResponseOut::default();
    // ACLs: a follower needs CLUSTER_ACTION on the cluster, a consumer READ on each topic.
    if from_replica && !ctx.may_cluster(&shard, OP_CLUSTER_ACTION) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return Some(encode_fetch_response(version, ctx.correlation_id, &resp));
    }
    if version >= 7 && req.session_epoch > 0 {
        // We never hand out fetch sessions, so an incremental fetch names an unknown one.
        resp.error_code = ResponseError::FetchSessionIdNotFound.code();
        return Some(encode_fetch_response(version, ctx.correlation_id, &resp));
    }
    let count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    if count > PARTITIONS_PER_REQUEST_MAX {
        // As for Produce: the request is refused by closing the connection (an empty frame
        // tells the writer to close), never by leaving the client waiting for an answer.
        tracing::info!(
            count,
            "fetch request names too many partitions; closing the connection"
        );
        return Some(Vec::new());
    }

    // Resolve topics; unknown ones answer with an error per partition.
    let mut slots: Vec<Slot> = Vec::new();
    let mut pending_errors: Vec<(usize, usize, i16)> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let meta = if version >= 13 {
            image.topic_by_id(t.topic_id.as_bytes())
        } else {
            image.topic(t.topic.0.as_str())
        };
        resp.topics.push(FetchTopicOut {
            name: meta.map_or_else(|| t.topic.0.as_str().to_owned(), |m| m.name.clone()),
            topic_id: *t.topic_id.as_bytes(),
            partitions: Vec::with_capacity(t.partitions.len()),
        });
        let readable = from_replica
            || ctx.may(
                &shard,
                OP_READ,
                RESOURCE_TOPIC,
                meta.map_or(t.topic.0.as_str(), |m| m.name.as_str()),
            );
        for (pi, p) in t.partitions.iter().enumerate() {
            let known = meta.filter(|m| m.has_partition(p.partition));
            match known {
                _ if !readable => {
                    pending_errors.push((ti, pi, ResponseError::TopicAuthorizationFailed.code()));
                }
                Some(m) if !shard.leads(m, p.partition) => {
                    pending_errors.push((ti, pi, ResponseError::NotLeaderOrFollower.code()));
                }
                Some(m) => slots.push(Slot {
                    ti,
                    req: ReadRequest {
                        topic: m.name.clone(),
                        index: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                        min_one: true,
                        current_leader_epoch: if version >= 9 {
                            p.current_leader_epoch
                        } else {
                            -1
                        },
                        replica: from_replica.then_some(ReplicaFetch {
                            replica_id,
                            current_leader_epoch: p.current_leader_epoch,
                            last_fetched_epoch: if version >= 12 {
                                p.last_fetched_epoch
                            } else {
                                -1
                            },
                        }),
                        read_committed,
                    },
                }),
                None => {
                    let code = if version >= 13 && meta.is_none() {
                        ResponseError::UnknownTopicId.code()
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    pending_errors.push((ti, pi, code));
                }
            }
        }
    }

    // Group by owner shard, remembering each slot's position.
    let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in slots.iter().enumerate() {
        if let Some(meta) = image.topic(&s.req.topic) {
            by_shard
                .entry(shard.owner_of(meta, s.req.index))
                .or_default()
                .push(i);
        }
    }

    let mut outs: Vec<ReadOutcome>;
    loop {
        outs = read_shared_out(&shard, &slots, &by_shard, max_bytes).await;
        let total: usize = outs.iter().map(|o| o.bytes).sum();
        let any_error = outs.iter().any(|o| o.error != 0 || o.diverging.is_some());
        let elapsed = started.elapsed();
        // min_bytes 0 answers at once, as in Kafka.
        if total >= min_bytes
            || any_error
            || !pending_errors.is_empty()
            || elapsed >= max_wait
            || slots.is_empty()
        {
            break;
        }
        let remaining = max_wait - elapsed;
        let waits = by_shard.iter().map(|(&owner, idxs)| {
            let reqs: Vec<WaitPart> = idxs
                .iter()
                .map(|&i| WaitPart {
                    topic: slots[i].req.topic.clone(),
                    index: slots[i].req.index,
                    offset: slots[i].req.offset,
                    replica: from_replica,
                    read_committed,
                })
                .collect();
            let shard = shard.clone();
            Box::pin(async move {
                let _ = shard
                    .request(owner, |reply| MeshMsg::WaitForData {
                        parts: reqs,
                        wait: remaining,
                        reply,
                    })
                    .await;
            })
        });
        let waits: Vec<_> = waits.collect();
        if waits.is_empty() {
            break;
        }
        // Woken by new data or the deadline: the next round reads again and then answers.
        select_all(waits).await;
    }

    // Trim to the response's max_bytes in request order; the first data always goes out whole.
    let mut used = 0usize;
    let mut slot_outs: Vec<Option<ReadOutcome>> = outs.into_iter().map(Some).collect();
    for (i, s) in slots.iter().enumerate() {
        let Some(mut o) = slot_outs[i].take() else {
            continue;
        };
        if used > 0 && used + o.bytes > max_bytes {
            crate::metrics::ShardMetrics::add(&shard.metrics.fetch_dropped_bytes, o.bytes as u64);
            o.records.clear();
            o.bytes = 0;
        }
        used += o.bytes;
        resp.topics[s.ti].partitions.push(FetchPartitionOut {
            partition_index: s.req.index,
            error_code: o.error,
            high_watermark: o.high_watermark,
            last_stable_offset: o.last_stable_offset,
            log_start_offset: o.log_start_offset,
            aborted_transactions: o.aborted,
            records: o.records,
            current_leader: None,
            diverging_epoch: o.diverging,
        });
    }
    for (ti, pi, code) in pending_errors {
        let t = &req.topics[ti];
        let p = &t.partitions[pi];
        resp.topics[ti].partitions.push(FetchPartitionOut {
            partition_index: p.partition,
            error_code: code,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: Vec::new(),
            records: Vec::new(),
            current_leader: None,
            diverging_epoch: None,
        });
    }
    // Over the consumer_byte_rate or request_percentage quota: the bytes are taken back and
    // the answer is empty with the longer time to wait (Kafka's way: the data is fetched
    // again once the client may have it).
    let byte_ms = fetch_quota.as_ref().map_or(0, |applied| {
        ctx.record_quota(&shard, QuotaKind::Fetch, applied, used as f64)
    });
    let request_ms = ctx.request_clock.as_ref().map_or(0, |c| c.throttle(&shard));
    let throttle_ms = byte_ms.max(request_ms);
    if throttle_ms > 0 {
        if let Some(applied) = &fetch_quota {
            shard
                .shared
                .quotas
                .unrecord(QuotaKind::Fetch, applied, used as f64);
        }
        let empty = FetchResponseOut {
            throttle_time_ms: throttle_ms,
            ..FetchResponseOut::default()
        };
        return Some(encode_fetch_response(version, ctx.correlation_id, &empty));
    }
    add_leader_hints(&shard, &mut resp, ctx.listener);
    for p in resp.topics.iter().flat_map(|t| &t.partitions) {
        shard
            .metrics
            .error(kafka_protocol::messages::ApiKey::Fetch, p.error_code);
    }
    Some(encode_fetch_response(version, ctx.correlation_id, &resp))
}

/// Reads every slot on its owner shard without reading more than the response can carry.
/// The response's `max_bytes` is shared out in request order, each partition counted at its own
/// maximum, as Kafka's one-after-another reads would; a partition left without a share is
/// answered without data (its offsets only). A partition given only part of its maximum returns
/// no batch larger than that part, unless nothing was read before it (Kafka's minOneMessage).
/// If the partitions read came back with so much less than their shares that a partition with
/// data (by what the round answered for it) now fits whole, or with nothing, another round
/// shares out what is left: one round while a backlog fills the response, more while
/// partitions hold less than their maximum (no cap on the rounds: a follower's fetch does not
/// rotate its partitions as consumers do, and the last ones would never be read). Before the
/// sharing, every shard read up to the whole `max_bytes` and the response dropped what did not
/// fit: a consumer of 100 partitions with 16 MiB fetches had the disk read each byte 2.5 times
/// (see `docs/architecture.md`, §5).
async fn read_shared_out(
    shard: &Rc<Shard>,
    slots: &[Slot],
    by_shard: &BTreeMap<usize, Vec<usize>>,
    max_bytes: usize,
) -> Vec<ReadOutcome> {
    let mut outs: Vec<ReadOutcome> = vec![ReadOutcome::default(); slots.len()];
    // Slots to read with data (all of them before the first round).
    let mut unread: Vec<bool> = slots.iter().map(|s| s.req.max_bytes > 0).collect();
    let mut left = max_bytes;
    // Bounded: every round after the first reads at least one more partition.
    for round in 0..=slots.len() {
        let mut room = left;
        let mut shares = vec![0usize; slots.len()];
        let mut min_one = vec![false; slots.len()];
        for (i, s) in slots.iter().enumerate().filter(|&(i, _)| unread[i]) {
            shares[i] = s.req.max_bytes.min(room);
            // Whole shares, and the first one while nothing has been read (the response's
            // first partition with data gets at least one batch, however large).
            min_one[i] = shares[i] == s.req.max_bytes || room == max_bytes;
            if room == max_bytes {
                shares[i] = shares[i].max(1);
            }
            room = room.saturating_sub(shares[i]);
        }
        // The first round reads every slot (those without a share for their offsets); later
        // ones only those with a share.
        let reads = by_shard.iter().map(|(&owner, idxs)| {
            let idxs: Vec<usize> = idxs
                .iter()
                .copied()
                .filter(|&i| round == 0 || shares[i] > 0)
                .collect();
            let reqs: Vec<ReadRequest> = idxs
                .iter()
                .map(|&i| ReadRequest {
                    max_bytes: shares[i],
                    min_one: min_one[i],
                    ..slots[i].req.clone()
                })
                .collect();
            let shard = shard.clone();
            async move {
                if reqs.is_empty() {
                    return (idxs, None);
                }
                let r = shard
                    .request(owner, |reply| MeshMsg::Read { parts: reqs, reply })
                    .await
                    .ok();
                (idxs, r)
            }
        });
        for (idxs, r) in join_all(reads).await {
            for (k, i) in idxs.into_iter().enumerate() {
                let o = r
                    .as_ref()
                    .and_then(|v| v.get(k).cloned())
                    .unwrap_or_else(ReadOutcome::not_leader);
                left = left.saturating_sub(o.bytes);
                unread[i] = shares[i] == 0 && o.has_more;
                outs[i] = o;
            }
        }
        // Another round if a partition with data fits whole, or nothing was read at all (its
        // first partition then gets a batch: an answer without data would leave a long poll
        // waking at once, again and again, on the data it did not read).
        let worth = |i: usize| unread[i] && (slots[i].req.max_bytes <= left || left == max_bytes);
        if !(0..slots.len()).any(worth) {
            break;
        }
    }
    outs
}

/// KIP-951: every partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH names the
/// leader this broker knows (v12+), and the response says how to reach those leaders (v16+).
fn add_leader_hints(shard: &Shard, resp: &mut FetchResponseOut, listener: &str) {
    let image = shard.metadata();
    let mut leaders = std::collections::BTreeSet::new();
    for t in &mut resp.topics {
        for p in &mut t.partitions {
            let moved = [
                ResponseError::NotLeaderOrFollower.code(),
                ResponseError::FencedLeaderEpoch.code(),
            ];
            if !moved.contains(&p.error_code) {
                continue;
            }
            p.current_leader = image.leader_of(&t.name, p.partition_index);
            leaders.extend(p.current_leader.map(|(leader, _)| leader));
        }
    }
    resp.node_endpoints = leaders
        .into_iter()
        .filter_map(|id| shard.broker(id, listener))
        .map(|b| NodeEndpointOut {
            node_id: b.id,
            host: b.host,
            port: b.port,
            rack: b.rack,
        })
        .collect();
}
