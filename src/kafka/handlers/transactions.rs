//! The transaction APIs (docs/architecture.md §7.1): AddPartitionsToTxn (v0–3 from clients,
//! v4 from brokers: a partition leader's KIP-890 verification), AddOffsetsToTxn, EndTxn,
//! TxnOffsetCommit, DescribeTransactions, ListTransactions, and WriteTxnMarkers (markers for
//! partitions this broker leads: Kafka's coordinator-to-broker API, which `sluice txn abort`
//! also uses to end a hanging transaction). Each goes to the coordinator of its transactional
//! id (`shard::txns::call`); TxnOffsetCommit goes to the group's coordinator, which keeps the
//! offsets pending until the transaction's marker reaches its `__consumer_offsets` partition.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::CommitRequest;
use crate::coordinator::group::OFFSETS_TOPIC;
use crate::coordinator::partition_for;
use crate::coordinator::txn::coordinator::{AddRequest, EndRequest, ListFilter, Reply, Request};
use crate::coordinator::txn::records::TxnState;
use crate::kafka::dispatch::Ctx;
use crate::kafka::handlers::offset_commit::commit_offsets;
use crate::security::acl::{
    OP_DESCRIBE, OP_READ, OP_WRITE, RESOURCE_GROUP, RESOURCE_TOPIC, RESOURCE_TRANSACTIONAL_ID,
};
use crate::shard::{txns, Shard};
use crate::util::sb;

/// Adds `partitions` to `transactional_id`'s transaction; an error per partition.
async fn add_partitions(
    shard: &Rc<Shard>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
) -> Vec<(String, i32, i16)> {
    let all = |e: ResponseError| {
        partitions
            .iter()
            .map(|(t, p)| (t.clone(), *p, e.code()))
            .collect::<Vec<_>>()
    };
    let reply = txns::call(shard, transactional_id, |partition| {
        Request::Add(AddRequest {
            transactional_id: transactional_id.to_owned(),
            partition,
            producer_id,
            producer_epoch,
            partitions: partitions.clone(),
            verify_only: false,
        })
    })
    .await;
    let results = match reply {
        Ok(Reply::Add(results)) => results,
        Ok(_) => all(ResponseError::UnknownServerError),
        Err(e) => all(e),
    };
    tracing::debug!(
        transactional_id,
        producer_id,
        producer_epoch,
        ?results,
        "AddPartitionsToTxn"
    );
    results
}

/// One transaction of an AddPartitionsToTxn request.
struct AddOne<'a> {
    transactional_id: &'a str,
    producer: (i64, i16),
    topics:
        &'a [kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic],
    /// v4+ from a partition leader (KIP-890 part 1): only check.
    verify_only: bool,
    /// A client's request (v0–3): the ACLs on the id and topics apply; a broker's (v4+) was
    /// allowed by CLUSTER_ACTION.
    from_client: bool,
}

/// AddPartitionsToTxn of v0–3 (a client's, one transaction) and v4+ (a broker's, batched,
/// `verify_only` when a partition leader verifies a producer's first transactional batch,
/// KIP-890 part 1; it needs CLUSTER_ACTION on the cluster, as in Kafka).
pub async fn add_partitions_to_txn(
    shard: Rc<Shard>,
    req: AddPartitionsToTxnRequest,
    ctx: Ctx,
) -> ResponseKind {
    if ctx.version < 4 {
        let topics = add_one(
            &shard,
            &ctx,
            AddOne {
                transactional_id: req.v3_and_below_transactional_id.0.as_str(),
                producer: (
                    req.v3_and_below_producer_id.0,
                    req.v3_and_below_producer_epoch,
                ),
                topics: &req.v3_and_below_topics,
                verify_only: false,
                from_client: true,
            },
        )
        .await;
        return ResponseKind::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics),
        );
    }
    use kafka_protocol::messages::add_partitions_to_txn_response::AddPartitionsToTxnResult;
    let resp = AddPartitionsToTxnResponse::default();
    if !ctx.may_cluster(&shard, crate::security::acl::OP_CLUSTER_ACTION) {
        return ResponseKind::AddPartitionsToTxn(
            resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let mut results = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let topic_results = add_one(
            &shard,
            &ctx,
            AddOne {
                transactional_id: t.transactional_id.0.as_str(),
                producer: (t.producer_id.0, t.producer_epoch),
                topics: &t.topics,
                verify_only: t.verify_only,
                from_client: false,
            },
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    ResponseKind::AddPartitionsToTxn(resp.with_results_by_transaction(results))
}

async fn add_one(
    shard: &Rc<Shard>,
    ctx: &Ctx,
    one: AddOne<'_>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let transactional_id = one.transactional_id;
    let image = shard.metadata();
    // ACLs: WRITE on the transactional id, WRITE on each topic.
    let id_ok =
        !one.from_client || ctx.may(shard, OP_WRITE, RESOURCE_TRANSACTIONAL_ID, transactional_id);
    let mut unwritable = std::collections::BTreeSet::new();
    // Kafka: any unknown (or unauthorized) partition fails the request; the others are not
    // attempted.
    let mut wanted = Vec::new();
    let mut unknown = false;
    for t in one.topics {
        let meta = image.topic(t.name.0.as_str());
        if one.from_client && !ctx.may(shard, OP_WRITE, RESOURCE_TOPIC, t.name.0.as_str()) {
            unwritable.insert(t.name.0.as_str().to_owned());
        }
        for &p in &t.partitions {
            unknown |= !meta.is_some_and(|m| m.has_partition(p));
            wanted.push((t.name.0.as_str().to_owned(), p));
        }
    }
    let results: Vec<(String, i32, i16)> = if !id_ok || unknown || !unwritable.is_empty() {
        wanted
            .iter()
            .map(|(t, p)| {
                let known = image.topic(t).is_some_and(|m| m.has_partition(*p));
                let e = if !id_ok {
                    ResponseError::TransactionalIdAuthorizationFailed
                } else if unwritable.contains(t) {
                    ResponseError::TopicAuthorizationFailed
                } else if known {
                    ResponseError::OperationNotAttempted
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                (t.clone(), *p, e.code())
            })
            .collect()
    } else if one.verify_only {
        let codes = txns::verify(
            shard,
            transactional_id,
            one.producer,
            wanted.clone(),
            txns::TxnCheck::Verify,
            false,
        )
        .await;
        wanted
            .into_iter()
            .zip(codes)
            .map(|((t, p), e)| (t, p, e))
            .collect()
    } else {
        add_partitions(
            shard,
            transactional_id,
            one.producer.0,
            one.producer.1,
            wanted,
        )
        .await
    };
    let mut by_topic: BTreeMap<String, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for (t, p, e) in results {
        by_topic.entry(t).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(p)
                .with_partition_error_code(e),
        );
    }
    by_topic
        .into_iter()
        .map(|(name, rs)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(sb(name)))
                .with_results_by_partition(rs)
        })
        .collect()
}

pub async fn add_offsets_to_txn(
    shard: Rc<Shard>,
    req: AddOffsetsToTxnRequest,
    ctx: Ctx,
) -> ResponseKind {
    let resp = AddOffsetsToTxnResponse::default();
    // ACLs: WRITE on the transactional id, READ on the group.
    if !ctx.may(
        &shard,
        OP_WRITE,
        RESOURCE_TRANSACTIONAL_ID,
        req.transactional_id.0.as_str(),
    ) {
        return ResponseKind::AddOffsetsToTxn(
            resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
        );
    }
    if !ctx.may(&shard, OP_READ, RESOURCE_GROUP, req.group_id.0.as_str()) {
        return ResponseKind::AddOffsetsToTxn(
            resp.with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let Some(offsets) = shard.metadata().topic(OFFSETS_TOPIC).cloned() else {
        return ResponseKind::AddOffsetsToTxn(
            resp.with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        );
    };
    // The group's offsets partition joins the transaction: its marker completes the
    // transaction's offset commits there.
    let partition = partition_for(req.group_id.0.as_str(), offsets.partition_count());
    let results = add_partitions(
        &shard,
        req.transactional_id.0.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        vec![(OFFSETS_TOPIC.to_owned(), partition)],
    )
    .await;
    let error = results.first().map_or(0, |r| r.2);
    ResponseKind::AddOffsetsToTxn(resp.with_error_code(error))
}

/// EndTxn v5 is the first of transaction version 2 (KIP-890 part 2): its completion bumps the
/// producer's epoch and the response names the next one.
const FIRST_EPOCH_BUMP_END_TXN_VERSION: i16 = 5;

pub async fn end_txn(shard: Rc<Shard>, req: EndTxnRequest, ctx: Ctx) -> ResponseKind {
    let transactional_id = req.transactional_id.0.as_str().to_owned();
    if !ctx.may(
        &shard,
        OP_WRITE,
        RESOURCE_TRANSACTIONAL_ID,
        &transactional_id,
    ) {
        return ResponseKind::EndTxn(
            EndTxnResponse::default()
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
    }
    let reply = txns::call(&shard, &transactional_id, |partition| {
        Request::End(EndRequest {
            transactional_id: transactional_id.clone(),
            partition,
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            commit: req.committed,
            // KIP-890 part 2: EndTxn v5 is a transaction version 2 client's.
            bump_epoch: ctx.version >= FIRST_EPOCH_BUMP_END_TXN_VERSION,
        })
    })
    .await;
    let (error, next_id, next_epoch) = match reply {
        Ok(Reply::End {
            error,
            producer_id,
            producer_epoch,
        }) => (error, producer_id, producer_epoch),
        Ok(_) => (ResponseError::UnknownServerError.code(), -1, -1),
        Err(e) => (e.code(), -1, -1),
    };
    tracing::debug!(
        transactional_id,
        producer_id = req.producer_id.0,
        epoch = req.producer_epoch,
        commit = req.committed,
        error,
        next_id,
        next_epoch,
        "EndTxn"
    );
    ResponseKind::EndTxn(
        EndTxnResponse::default()
            .with_error_code(error)
            .with_producer_id(ProducerId(next_id))
            .with_producer_epoch(next_epoch),
    )
}

/// TxnOffsetCommit v5 is transaction version 2's (KIP-890 part 2): no AddOffsetsToTxn came,
/// the group's coordinator adds its partition to the transaction.
const FIRST_IMPLICIT_ADD_TXN_OFFSET_COMMIT_VERSION: i16 = 5;

pub async fn txn_offset_commit(
    shard: Rc<Shard>,
    req: TxnOffsetCommitRequest,
    ctx: Ctx,
) -> ResponseKind {
    let version = ctx.version;
    let group_id = req.group_id.0.as_str().to_owned();
    // ACLs: WRITE on the transactional id and READ on the group for all of it, READ on each
    // topic for its partitions.
    let denial = if !ctx.may(
        &shard,
        OP_WRITE,
        RESOURCE_TRANSACTIONAL_ID,
        req.transactional_id.0.as_str(),
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.may(&shard, OP_READ, RESOURCE_GROUP, &group_id) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    let unreadable: std::collections::BTreeSet<String> = req
        .topics
        .iter()
        .map(|t| t.name.0.as_str())
        .filter(|n| denial.is_none() && !ctx.may(&shard, OP_READ, RESOURCE_TOPIC, n))
        .map(str::to_owned)
        .collect();
    let wanted = req
        .topics
        .iter()
        .filter(|t| denial.is_none() && !unreadable.contains(t.name.0.as_str()))
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.as_str().to_owned(),
                    p.partition_index,
                    p.committed_offset,
                    if version >= 2 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    p.committed_metadata.as_ref().map(|s| s.as_str().to_owned()),
                )
            })
        })
        .collect();
    // v3+ names the consumer's generation and member (KIP-447): checked like OffsetCommit.
    let (generation, member_id, instance_id) = if version >= 3 {
        (
            req.generation_id,
            req.member_id.as_str().to_owned(),
            req.group_instance_id
                .as_ref()
                .map(|s| s.as_str().to_owned()),
        )
    } else {
        (-1, String::new(), None)
    };
    let txn = Some((req.producer_id.0, req.producer_epoch));
    let results = commit_offsets(&shard, &group_id, wanted, |partition, offsets| {
        CommitRequest {
            group_id: group_id.clone(),
            partition,
            generation,
            member_id,
            instance_id,
            offsets,
            txn,
            transactional_id: Some(req.transactional_id.0.as_str().to_owned()),
            txn_add: version >= FIRST_IMPLICIT_ADD_TXN_OFFSET_COMMIT_VERSION,
        }
    })
    .await;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let e = if let Some(d) = denial {
                        d.code()
                    } else if unreadable.contains(t.name.0.as_str()) {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else {
                        results
                            .get(&(t.name.0.as_str().to_owned(), p.partition_index))
                            .copied()
                            .unwrap_or(ResponseError::UnknownServerError.code())
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(e)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics))
}

pub async fn describe_transactions(
    shard: Rc<Shard>,
    req: DescribeTransactionsRequest,
    ctx: Ctx,
) -> ResponseKind {
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in &req.transactional_ids {
        let id = id.0.as_str().to_owned();
        // ACLs: DESCRIBE on the transactional id.
        if !ctx.may(&shard, OP_DESCRIBE, RESOURCE_TRANSACTIONAL_ID, &id) {
            states.push(
                DescribedState::default()
                    .with_transactional_id(TransactionalId(sb(id)))
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
            );
            continue;
        }
        let base = DescribedState::default()
            .with_transactional_id(TransactionalId(sb(id.clone())))
            .with_transaction_state(sb(String::new()))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        let reply = txns::call(&shard, &id, |partition| {
            Request::Describe(id.clone(), partition)
        })
        .await;
        states.push(match reply {
            Ok(Reply::Describe(d)) => {
                let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for (t, p) in d.partitions {
                    topics.entry(t).or_default().push(p);
                }
                base.with_error_code(d.error)
                    .with_transaction_state(sb(d.state))
                    .with_transaction_timeout_ms(d.timeout_ms)
                    .with_transaction_start_time_ms(d.start_ms)
                    .with_producer_id(ProducerId(d.producer_id))
                    .with_producer_epoch(d.producer_epoch)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(t, ps)| {
                                TopicData::default()
                                    .with_topic(TopicName(sb(t)))
                                    .with_partitions(ps)
                            })
                            .collect(),
                    )
            }
            Ok(_) => base.with_error_code(ResponseError::UnknownServerError.code()),
            Err(e) => base.with_error_code(e.code()),
        });
    }
    ResponseKind::DescribeTransactions(
        DescribeTransactionsResponse::default().with_transaction_states(states),
    )
}

pub async fn list_transactions(
    shard: Rc<Shard>,
    req: ListTransactionsRequest,
    ctx: Ctx,
) -> ResponseKind {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for s in &req.state_filters {
        if TxnState::from_name(s.as_str()).is_some() {
            known.push(s.as_str().to_owned());
        } else {
            unknown.push(s.clone());
        }
    }
    let mut resp = ListTransactionsResponse::default().with_unknown_state_filters(unknown.clone());
    // Only unknown states asked for: nothing can match.
    if !unknown.is_empty() && known.is_empty() {
        return ResponseKind::ListTransactions(resp);
    }
    let filter = ListFilter {
        states: known,
        producer_ids: req.producer_id_filters.iter().map(|p| p.0).collect(),
    };
    // ACLs: only the transactional ids it may DESCRIBE.
    resp.transaction_states = txns::list_all(&shard, filter)
        .await
        .into_iter()
        .filter(|t| {
            ctx.may(
                &shard,
                OP_DESCRIBE,
                RESOURCE_TRANSACTIONAL_ID,
                &t.transactional_id,
            )
        })
        .map(|t| {
            ListedState::default()
                .with_transactional_id(TransactionalId(sb(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(sb(t.state))
        })
        .collect();
    ResponseKind::ListTransactions(resp)
}

pub async fn write_txn_markers(
    shard: Rc<Shard>,
    req: WriteTxnMarkersRequest,
    ctx: Ctx,
) -> ResponseKind {
    // ACLs: CLUSTER_ACTION on the cluster (brokers and `sluice txn abort`).
    let cluster_ok = ctx.may_cluster(&shard, crate::security::acl::OP_CLUSTER_ACTION);
    let mut results = Vec::with_capacity(req.markers.len());
    for m in &req.markers {
        let marker = txns::Marker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        let partitions: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |p| (t.name.0.as_str().to_owned(), *p))
            })
            .collect();
        let mut by_topic: BTreeMap<String, Vec<WritableTxnMarkerPartitionResult>> = BTreeMap::new();
        let written = if cluster_ok {
            txns::write_local_markers(&shard, marker, partitions).await
        } else {
            let denied = ResponseError::ClusterAuthorizationFailed.code();
            partitions.into_iter().map(|p| (p, denied)).collect()
        };
        for ((topic, p), error) in written {
            by_topic.entry(topic).or_default().push(
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(p)
                    .with_error_code(error),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(
                    by_topic
                        .into_iter()
                        .map(|(name, ps)| {
                            WritableTxnMarkerTopicResult::default()
                                .with_name(TopicName(sb(name)))
                                .with_partitions(ps)
                        })
                        .collect(),
                ),
        );
    }
    ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default().with_markers(results))
}
