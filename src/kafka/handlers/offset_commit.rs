//! OffsetCommit: validated by the coordinator (member, generation; or a "simple" consumer with
//! generation -1 and no member id on a group without members), then appended to
//! `__consumer_offsets` and answered once durable per the flush policy. Offsets of unknown
//! topics or partitions are refused with UNKNOWN_TOPIC_OR_PARTITION, as Kafka does.

use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{CommitPartition, CommitRequest, Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_READ, RESOURCE_GROUP, RESOURCE_TOPIC};
use crate::shard::groups;
use crate::shard::Shard;

/// One requested offset: (topic, partition, offset, leader epoch, metadata).
pub(crate) type Wanted = (String, i32, i64, i32, Option<String>);

/// OffsetCommit and TxnOffsetCommit: offsets of unknown topics or partitions are refused with
/// UNKNOWN_TOPIC_OR_PARTITION; the others go to the group's coordinator in one request that
/// `make` builds (from the group's offsets partition and the offsets). Returns the error of
/// each (topic, partition).
pub(crate) async fn commit_offsets(
    shard: &Rc<Shard>,
    group_id: &str,
    wanted: Vec<Wanted>,
    make: impl FnOnce(i32, Vec<CommitPartition>) -> CommitRequest,
) -> HashMap<(String, i32), i16> {
    let image = shard.metadata();
    let mut results: HashMap<(String, i32), i16> = HashMap::new();
    let mut offsets = Vec::new();
    for (topic, partition, offset, leader_epoch, metadata) in wanted {
        if image
            .topic(&topic)
            .is_some_and(|m| m.has_partition(partition))
        {
            offsets.push(CommitPartition {
                topic,
                partition,
                offset,
                leader_epoch,
                metadata,
            });
        } else {
            results.insert(
                (topic, partition),
                ResponseError::UnknownTopicOrPartition.code(),
            );
        }
    }
    if offsets.is_empty() {
        return results;
    }
    let sent = offsets.clone();
    match groups::call(shard, group_id, |partition| {
        Request::Commit(make(partition, sent))
    })
    .await
    {
        Ok(Reply::Commit(rs)) => {
            for (t, p, e) in rs {
                results.insert((t, p), e);
            }
        }
        other => {
            let e = match other {
                Err(e) => e.code(),
                _ => ResponseError::UnknownServerError.code(),
            };
            for o in offsets {
                results.insert((o.topic, o.partition), e);
            }
        }
    }
    results
}

pub async fn handle(shard: Rc<Shard>, req: OffsetCommitRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    let group_id = req.group_id.0.as_str().to_owned();
    // ACLs: READ on the group for all of it, READ on each topic for its partitions.
    let group_denied = !ctx.may(&shard, OP_READ, RESOURCE_GROUP, &group_id);
    let unreadable: std::collections::BTreeSet<String> = req
        .topics
        .iter()
        .map(|t| t.name.0.as_str())
        .filter(|n| !group_denied && !ctx.may(&shard, OP_READ, RESOURCE_TOPIC, n))
        .map(str::to_owned)
        .collect();
    let wanted = req
        .topics
        .iter()
        .filter(|t| !group_denied && !unreadable.contains(t.name.0.as_str()))
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.as_str().to_owned(),
                    p.partition_index,
                    p.committed_offset,
                    if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    p.committed_metadata.as_ref().map(|s| s.as_str().to_owned()),
                )
            })
        })
        .collect();
    let results = commit_offsets(&shard, &group_id, wanted, |partition, offsets| {
        CommitRequest {
            txn: None,
            transactional_id: None,
            txn_add: false,
            group_id: group_id.clone(),
            partition,
            generation: req.generation_id_or_member_epoch,
            member_id: req.member_id.as_str().to_owned(),
            instance_id: req
                .group_instance_id
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            offsets,
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
                    let e = if group_denied {
                        ResponseError::GroupAuthorizationFailed.code()
                    } else if unreadable.contains(t.name.0.as_str()) {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else {
                        results
                            .get(&(t.name.0.as_str().to_owned(), p.partition_index))
                            .copied()
                            .unwrap_or(ResponseError::UnknownServerError.code())
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(e)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
}
