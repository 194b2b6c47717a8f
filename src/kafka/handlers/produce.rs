//! Produce: appends happen in the dispatch stage, in connection order (locally, or on the
//! owner shard through the FIFO mesh); the response waits for acks (1: written, all: durable
//! per the flush policy) and is omitted for acks=0.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::controller::validate_topic_name;
use crate::kafka::dispatch::{encode, Ctx, Dispatched};
use crate::kafka::handlers::may_create;
use crate::limits::PARTITIONS_PER_REQUEST_MAX;
use crate::security::acl::{OP_WRITE, RESOURCE_TOPIC, RESOURCE_TRANSACTIONAL_ID};
use crate::security::quota::QuotaKind;
use crate::shard::controller::{self};
use crate::shard::ops::{self, AppendFuture, AppendOutcome};
use crate::shard::txns::{self, TxnCheck};
use crate::shard::{MeshMsg, Shard};
use crate::util::{sb, topic_name};

/// Position of a partition in the request: (topic index, partition index).
type Slot = (usize, usize);
/// Per topic: its name and, per partition, its index and a result (or its future).
type Rows<T> = Vec<(String, Vec<(i32, Option<T>)>)>;
/// Forwarded partitions of one shard and the receiver of their results.
type Remote = (Vec<Slot>, Option<flume::Receiver<Vec<AppendOutcome>>>);
/// Work forwarded to one shard: (topic, partition, records, verification guard).
type Forward = Vec<(String, i32, Bytes, Option<u64>)>;
/// An append the request asks for: where its result goes, its owner shard, topic, partition
/// and records.
type Wanted = (Slot, usize, String, i32, Bytes);

/// Batches a client may not write: control batches (Kafka: INVALID_RECORD); transactional
/// batches outside a transactional request (INVALID_TXN_STATE) or without a producer id and
/// sequence (INVALID_RECORD). Malformed sets are left to storage.
fn refused_batch(records: &[u8], transactional: bool) -> Option<ResponseError> {
    let mut pos = 0usize;
    while let Some(h) = records
        .get(pos..)
        .and_then(|rest| sluice_storage::BatchHeader::parse(rest).ok())
    {
        if h.is_control() {
            return Some(ResponseError::InvalidRecord);
        }
        if h.is_transactional() && !transactional {
            return Some(ResponseError::InvalidTxnState);
        }
        if h.is_transactional() && (h.producer_id < 0 || h.base_sequence < 0) {
            return Some(ResponseError::InvalidRecord);
        }
        pos += h.total_size();
    }
    None
}

struct Item {
    topic: String,
    index: i32,
    /// Where the result goes in the response.
    slot: Slot,
}

pub async fn handle(shard: Rc<Shard>, req: ProduceRequest, ctx: Ctx) -> Dispatched {
    let shard = &shard;
    let reply_to = ctx.reply_to();
    let acks = req.acks;
    let count: usize = req.topic_data.iter().map(|t| t.partition_data.len()).sum();
    if count > PARTITIONS_PER_REQUEST_MAX {
        return Dispatched::Close(format!("produce request names {count} partitions"));
    }
    if !matches!(acks, -1..=1) {
        return respond_all(ctx, &req, ResponseError::InvalidRequiredAcks);
    }
    // A transactional producer's batches (its coordinator tracks the transaction; the
    // partition's producer state opens it at the first batch, see sluice_storage::producer).
    let transactional_id = req
        .transactional_id
        .as_ref()
        .map(|t| t.0.as_str().to_owned());
    let transactional = transactional_id.is_some();
    // ACLs: WRITE on the transactional id (all or nothing), WRITE on each topic.
    if let Some(id) = &req.transactional_id {
        if !ctx.may(shard, OP_WRITE, RESOURCE_TRANSACTIONAL_ID, id.0.as_str()) {
            return respond_all(ctx, &req, ResponseError::TransactionalIdAuthorizationFailed);
        }
    }
    let writable: std::collections::BTreeSet<String> = req
        .topic_data
        .iter()
        .map(|t| t.name.0.as_str())
        .filter(|n| ctx.may(shard, OP_WRITE, RESOURCE_TOPIC, n))
        .map(str::to_owned)
        .collect();
    let mut image = shard.metadata();
    if shard.config.args.auto_create_topics_enable {
        let missing: Vec<String> = req
            .topic_data
            .iter()
            .map(|t| t.name.0.as_str().to_owned())
            .filter(|n| image.topic(n).is_none() && validate_topic_name(n).is_ok())
            .filter(|n| writable.contains(n) && may_create(shard, &ctx, n))
            .collect();
        if !missing.is_empty() {
            controller::auto_create(shard, missing).await;
            image = shard.metadata();
        }
    }

    // Per topic: its name and, per partition, (index, local future or None if forwarded).
    let mut rows: Rows<AppendFuture> = Vec::with_capacity(req.topic_data.len());
    let mut wanted: Vec<Wanted> = Vec::new();
    for (ti, t) in req.topic_data.into_iter().enumerate() {
        let name = t.name.0.as_str().to_owned();
        let meta = image.topic(&name).cloned();
        let mut row = Vec::with_capacity(t.partition_data.len());
        for (pi, p) in t.partition_data.into_iter().enumerate() {
            let records = p.records.unwrap_or_default();
            let refused = refused_batch(&records, transactional);
            let fail =
                |e| Some(Box::pin(std::future::ready(AppendOutcome::err(e, None))) as AppendFuture);
            let fut = match &meta {
                _ if !writable.contains(&name) => fail(ResponseError::TopicAuthorizationFailed),
                None => fail(ResponseError::UnknownTopicOrPartition),
                Some(m) if !m.has_partition(p.index) => {
                    fail(ResponseError::UnknownTopicOrPartition)
                }
                Some(m) if !shard.leads(m, p.index) => fail(ResponseError::NotLeaderOrFollower),
                // Kafka refuses acks=all when fewer replicas than min.insync.replicas are in
                // sync (the write could not be kept if the leader failed).
                Some(m) if acks == -1 && in_sync(m, p.index) < min_insync(shard, m) => {
                    fail(ResponseError::NotEnoughReplicas)
                }
                // Internal topics (__consumer_offsets) are written by the broker only, as in Kafka.
                Some(m) if m.internal => fail(ResponseError::InvalidTopicException),
                Some(_) if records.is_empty() => fail(ResponseError::CorruptMessage),
                Some(_) if refused.is_some() => refused.and_then(fail),
                Some(m) => {
                    let owner = shard.owner_of(m, p.index);
                    wanted.push(((ti, pi), owner, name.clone(), p.index, records));
                    None
                }
            };
            row.push((p.index, fut));
        }
        rows.push((name, row));
    }

    // KIP-890: a transactional producer's batch that would open its transaction in a
    // partition goes in only once the coordinator confirmed the partition is in it (part 1),
    // or, for a transaction version 2 producer (Produce v12), added it (part 2, always on:
    // such a producer sends no AddPartitionsToTxn).
    let check = txns::check_for(shard, ctx.version >= FIRST_IMPLICIT_ADD_PRODUCE_VERSION);
    let verdicts = match (&transactional_id, check) {
        (Some(id), Some(check)) => verify(shard, id, ctx.version, check, &wanted).await,
        _ => vec![Ok(None); wanted.len()],
    };
    let mut by_shard: BTreeMap<usize, Vec<(Item, Bytes, Option<u64>)>> = BTreeMap::new();
    for (((ti, pi), owner, topic, index, records), verdict) in wanted.into_iter().zip(verdicts) {
        let fut: AppendFuture = match verdict {
            Err(refused) => Box::pin(std::future::ready(refused)),
            Ok(guard) if owner == shard.id => {
                ops::append(shard, &topic, index, records, acks, guard)
            }
            Ok(guard) => {
                let item = Item {
                    topic,
                    index,
                    slot: (ti, pi),
                };
                by_shard
                    .entry(owner)
                    .or_default()
                    .push((item, records, guard));
                continue;
            }
        };
        if let Some(cell) = rows.get_mut(ti).and_then(|(_, row)| row.get_mut(pi)) {
            cell.1 = Some(fut);
        }
    }

    // Forward each remote shard's slice; the appends run there in mesh order. Only the enqueue
    // is awaited here (bounded queue = backpressure); answers are awaited in the second stage.
    let mut remote: Vec<Remote> = Vec::with_capacity(by_shard.len());
    for (owner, items) in by_shard {
        let (slots, work): (Vec<Slot>, Forward) = items
            .into_iter()
            .map(|(it, b, guard)| (it.slot, (it.topic, it.index, b, guard)))
            .unzip();
        let rx = shard
            .start_request(owner, |reply| MeshMsg::Append {
                parts: work,
                acks,
                reply,
            })
            .await
            .ok();
        remote.push((slots, rx));
    }

    // A producer_byte_rate quota counts the request's size (all of it, as Kafka does); over
    // it, the client is told to wait and its connection reads nothing more until then.
    let throttle_ms = ctx.quota(shard, QuotaKind::Produce).map_or(0, |applied| {
        ctx.record_quota(
            shard,
            QuotaKind::Produce,
            &applied,
            ctx.request_bytes as f64,
        )
    });
    let metrics_shard = shard.clone();
    let listener = ctx.listener;
    let request_clock = ctx.request_clock.clone();
    Dispatched::Respond(Box::pin(async move {
        let mut parts: Rows<AppendOutcome> = Vec::with_capacity(rows.len());
        for (name, row) in rows {
            let mut done = Vec::with_capacity(row.len());
            for (index, fut) in row {
                let r = match fut {
                    Some(f) => Some(f.await),
                    None => None,
                };
                done.push((index, r));
            }
            parts.push((name, done));
        }
        for (slots, rx) in remote {
            let answers = match rx {
                Some(rx) => rx.recv_async().await.ok(),
                None => None,
            };
            for (i, (ti, pi)) in slots.into_iter().enumerate() {
                let res = answers
                    .as_ref()
                    .and_then(|v| v.get(i).cloned())
                    .unwrap_or_else(|| {
                        AppendOutcome::err(ResponseError::NotLeaderOrFollower, None)
                    });
                if let Some(cell) = parts.get_mut(ti).and_then(|(_, row)| row.get_mut(pi)) {
                    cell.1 = Some(res);
                }
            }
        }
        for (_, row) in &parts {
            for (_, r) in row {
                if let Some(r) = r {
                    metrics_shard
                        .metrics
                        .error(kafka_protocol::messages::ApiKey::Produce, r.error);
                }
            }
        }
        if acks == 0 {
            // Kafka closes the connection when an acks=0 produce fails, so the client notices
            // and refreshes its metadata; an empty frame tells the writer to close.
            let failed = parts
                .iter()
                .flat_map(|(_, row)| row)
                .find_map(|(_, r)| r.as_ref().filter(|r| r.error != 0));
            if let Some(r) = failed {
                tracing::info!(
                    error = r.error,
                    "acks=0 produce failed; closing the connection"
                );
                return Some(Vec::new());
            }
            return None;
        }
        // KIP-951: a NOT_LEADER_OR_FOLLOWER names the leader this broker knows, and how to
        // reach it, so the client need not wait for a metadata refresh.
        let image = metrics_shard.metadata();
        let mut leaders = std::collections::BTreeSet::new();
        let topics = parts
            .into_iter()
            .map(|(name, row)| {
                let partitions = row
                    .into_iter()
                    .map(|(index, r)| {
                        let r = r.unwrap_or_else(|| {
                            AppendOutcome::err(ResponseError::UnknownServerError, None)
                        });
                        let not_leader = r.error == ResponseError::NotLeaderOrFollower.code();
                        let mut out = to_wire(r).with_index(index);
                        if let Some(hint) = not_leader
                            .then(|| leader_hint(&image, &name, index))
                            .flatten()
                        {
                            leaders.insert(hint.leader_id.0);
                            out = out.with_current_leader(hint);
                        }
                        out
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(topic_name(&name))
                    .with_partition_responses(partitions)
            })
            .collect();
        let endpoints = leaders
            .into_iter()
            .filter_map(|id| metrics_shard.broker(id, listener))
            .map(|b| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(sb(b.host))
                    .with_port(b.port)
                    .with_rack(b.rack.map(sb))
            })
            .collect();
        // The longer of the byte-rate and request_percentage throttles, as in Kafka.
        let request_ms = request_clock.map_or(0, |c| c.throttle(&metrics_shard));
        encode(
            reply_to,
            ResponseKind::Produce(
                ProduceResponse::default()
                    .with_throttle_time_ms(throttle_ms.max(request_ms))
                    .with_responses(topics)
                    .with_node_endpoints(endpoints),
            ),
        )
    }))
}

/// Produce v12 is transaction version 2's (KIP-890 part 2): the leader adds the partition.
const FIRST_IMPLICIT_ADD_PRODUCE_VERSION: i16 = 12;

/// KIP-890 for one request's appends: per append, the verification guard to append under
/// (`None`: none needed), or the outcome that refuses it. Asks the owner shards for guards,
/// then the coordinator about the partitions that need one (`check`: verify or add them).
async fn verify(
    shard: &Rc<Shard>,
    transactional_id: &str,
    version: i16,
    check: TxnCheck,
    wanted: &[Wanted],
) -> Vec<Result<Option<u64>, AppendOutcome>> {
    let mut out = vec![Ok(None); wanted.len()];
    let Some(producer) = wanted
        .iter()
        .find_map(|(_, _, _, _, records)| ops::transactional_producer(records))
    else {
        return out;
    };
    let mut by_owner: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, (_, owner, ..)) in wanted.iter().enumerate() {
        by_owner.entry(*owner).or_default().push(i);
    }
    let epoch_bump = check == TxnCheck::Add;
    let mut guards: Vec<Option<u64>> = vec![None; wanted.len()];
    for (owner, idxs) in by_owner {
        let parts: Vec<(String, i32)> = idxs
            .iter()
            .map(|&i| (wanted[i].2.clone(), wanted[i].3))
            .collect();
        let answer = if owner == shard.id {
            Ok(ops::txn_guards(shard, &parts, producer, epoch_bump))
        } else {
            shard
                .request(owner, |reply| MeshMsg::TxnGuards {
                    parts,
                    producer,
                    epoch_bump,
                    reply,
                })
                .await
        };
        let Ok(answer) = answer else {
            // That shard did not answer: its appends are refused, to be retried.
            for i in idxs {
                out[i] = Err(not_verified(
                    ResponseError::NetworkException.code(),
                    version,
                ));
            }
            continue;
        };
        for (k, i) in idxs.into_iter().enumerate() {
            guards[i] = answer.get(k).copied().flatten();
        }
    }
    let need: Vec<usize> = (0..wanted.len()).filter(|&i| guards[i].is_some()).collect();
    if need.is_empty() {
        return out;
    }
    let parts = need
        .iter()
        .map(|&i| (wanted[i].2.clone(), wanted[i].3))
        .collect();
    let codes = txns::verify(shard, transactional_id, producer, parts, check, true).await;
    let m = &shard.metrics;
    crate::metrics::ShardMetrics::add(&m.txn_verifications, need.len() as u64);
    for (i, code) in need.into_iter().zip(codes) {
        out[i] = if code == 0 {
            Ok(guards[i])
        } else {
            crate::metrics::ShardMetrics::add(&m.txn_verification_failures, 1);
            tracing::debug!(transactional_id, topic = %wanted[i].2, partition = wanted[i].3, code, "transactional batch not verified");
            Err(not_verified(code, version))
        };
    }
    out
}

/// The refusal of an append its coordinator did not verify (see [`verification_error`]).
fn not_verified(code: i16, version: i16) -> AppendOutcome {
    let (error, message) = verification_error(code, version);
    AppendOutcome {
        error,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        message,
    }
}

/// Produce v11 is the first to know TRANSACTION_ABORTABLE (KIP-890).
const FIRST_TRANSACTION_ABORTABLE_PRODUCE_VERSION: i16 = 11;

/// What a producer is told when its coordinator did not verify the partition (Kafka's
/// translation): a fenced epoch as INVALID_PRODUCER_EPOCH; a partition not in the transaction
/// as TRANSACTION_ABORTABLE (INVALID_TXN_STATE before Produce v11); a coordinator that could
/// not answer as NOT_ENOUGH_REPLICAS, which every client retries without a metadata refresh.
fn verification_error(code: i16, version: i16) -> (i16, Option<String>) {
    use ResponseError as E;
    let e = ResponseError::try_from_code(code);
    if txns::verification_unanswered(code) {
        let underlying = e.map_or_else(|| code.to_string(), |e| format!("{e:?}"));
        return (
            E::NotEnoughReplicas.code(),
            Some(format!(
                "Unable to verify the partition has been added to the transaction. Underlying error: {underlying}"
            )),
        );
    }
    match e {
        Some(E::ProducerFenced) => (E::InvalidProducerEpoch.code(), None),
        Some(E::TransactionAbortable) if version < FIRST_TRANSACTION_ABORTABLE_PRODUCE_VERSION => (
            E::InvalidTxnState.code(),
            Some("Partition was not added to the transaction".to_owned()),
        ),
        Some(E::TransactionAbortable | E::InvalidTxnState) => (
            code,
            Some("Partition was not added to the transaction".to_owned()),
        ),
        _ => (code, None),
    }
}

fn to_wire(r: AppendOutcome) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_error_code(r.error)
        .with_base_offset(r.base_offset)
        .with_log_append_time_ms(r.log_append_time_ms)
        .with_log_start_offset(r.log_start_offset)
        .with_error_message(r.message.map(sb))
}

fn respond_all(ctx: Ctx, req: &ProduceRequest, error: ResponseError) -> Dispatched {
    if req.acks == 0 {
        // No answer to carry the error: close, as for a failed acks=0 append.
        return Dispatched::Close(format!("acks=0 produce refused: {error:?}"));
    }
    let topics = req
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| to_wire(AppendOutcome::err(error, None)).with_index(p.index))
                        .collect(),
                )
        })
        .collect();
    let frame = encode(
        ctx.reply_to(),
        ResponseKind::Produce(ProduceResponse::default().with_responses(topics)),
    );
    Dispatched::Respond(Box::pin(std::future::ready(frame)))
}

/// In-sync replicas of `partition` (the leader alone on a single node).
fn in_sync(t: &crate::cluster::image::TopicMeta, partition: i32) -> usize {
    t.partitions
        .get(partition as usize)
        .map_or(1, |p| p.isr.len().max(1))
}

/// The topic's `min.insync.replicas` (its override, else the broker's default).
fn min_insync(shard: &Shard, t: &crate::cluster::image::TopicMeta) -> usize {
    crate::cluster::topic_config::effective(&shard.config, &t.configs, "min.insync.replicas")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
}

/// The leader and leader epoch of `partition` of `topic` as this broker knows them (KIP-951's
/// `CurrentLeader`); `None` when it has none.
fn leader_hint(
    image: &crate::cluster::image::MetadataImage,
    topic: &str,
    partition: i32,
) -> Option<LeaderIdAndEpoch> {
    let (leader, epoch) = image.leader_of(topic, partition)?;
    Some(
        LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(epoch),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_errors_reach_the_producer_as_kafka_translates_them() {
        use ResponseError as E;
        let code = |e: E| e.code();
        // Fenced: the epoch error producers expect.
        assert_eq!(
            verification_error(code(E::ProducerFenced), 9).0,
            code(E::InvalidProducerEpoch)
        );
        // Not in the transaction: TRANSACTION_ABORTABLE from Produce v11, before it
        // INVALID_TXN_STATE; both with Kafka's message.
        let (e, m) = verification_error(code(E::TransactionAbortable), 10);
        assert_eq!(e, code(E::InvalidTxnState));
        assert_eq!(
            m.as_deref(),
            Some("Partition was not added to the transaction")
        );
        assert_eq!(
            verification_error(code(E::TransactionAbortable), 11).0,
            code(E::TransactionAbortable)
        );
        // The coordinator could not answer: retriable, naming why.
        for unanswered in [
            E::NetworkException,
            E::CoordinatorLoadInProgress,
            E::CoordinatorNotAvailable,
            E::NotCoordinator,
            E::ConcurrentTransactions,
        ] {
            let (e, m) = verification_error(code(unanswered), 9);
            assert_eq!(e, code(E::NotEnoughReplicas));
            let m = m.unwrap_or_default();
            assert!(
                m.ends_with(&format!("Underlying error: {unanswered:?}")),
                "{m}"
            );
        }
        // Anything else passes through.
        assert_eq!(
            verification_error(code(E::InvalidProducerIdMapping), 9),
            (code(E::InvalidProducerIdMapping), None)
        );
    }
}
