//! OffsetFetch: committed offsets of one group (v1–7) or several (v8+), all partitions when
//! no topics are named. Unknown partitions answer offset -1, as Kafka does.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{FetchRequest, FetchedOffset, Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_DESCRIBE, RESOURCE_GROUP, RESOURCE_TOPIC};
use crate::shard::groups;
use crate::shard::Shard;
use crate::util::{sb, topic_name};

async fn fetch(
    shard: &Rc<Shard>,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> (i16, Vec<FetchedOffset>) {
    let fr = |partition| FetchRequest {
        group_id: group_id.clone(),
        partition,
        topics,
        require_stable,
    };
    match groups::call(shard, &group_id, |partition| Request::Fetch(fr(partition))).await {
        Ok(Reply::Fetch(e, offsets)) => (e, offsets),
        Ok(_) => (ResponseError::UnknownServerError.code(), Vec::new()),
        Err(e) => (e.code(), Vec::new()),
    }
}

/// Groups offsets by topic, keeping first-seen topic order.
fn by_topic(offsets: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for o in offsets {
        match out.iter_mut().find(|(t, _)| *t == o.topic) {
            Some((_, v)) => v.push(o),
            None => out.push((o.topic.clone(), vec![o])),
        }
    }
    out
}

pub async fn handle(shard: Rc<Shard>, req: OffsetFetchRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    let epoch = |e: i32| if version >= 5 { e } else { -1 };
    // v7+: read_committed consumers ask for stable offsets only (KIP-447).
    let require_stable = version >= 7 && req.require_stable;
    // ACLs: DESCRIBE on the group; offsets of topics it may not DESCRIBE are left out.
    let group_ok = |id: &str| ctx.may(&shard, OP_DESCRIBE, RESOURCE_GROUP, id);
    let topic_ok = |t: &String| ctx.may(&shard, OP_DESCRIBE, RESOURCE_TOPIC, t);
    let denied = (ResponseError::GroupAuthorizationFailed.code(), Vec::new());
    if version >= 8 {
        let allowed: Vec<bool> = req
            .groups
            .iter()
            .map(|g| group_ok(g.group_id.0.as_str()))
            .collect();
        let calls = req.groups.iter().zip(allowed).map(|(g, allowed)| {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
                    .collect()
            });
            let shard = shard.clone();
            let id = g.group_id.0.as_str().to_owned();
            let denied = denied.clone();
            async move {
                if !allowed {
                    return denied;
                }
                fetch(&shard, id, topics, require_stable).await
            }
        });
        let results = join_all(calls).await;
        let groups = req
            .groups
            .iter()
            .zip(results)
            .map(|(g, (error, offsets))| {
                let topics = by_topic(offsets)
                    .into_iter()
                    .filter(|(t, _)| topic_ok(t))
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name(&t))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|o| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(o.partition)
                                            .with_committed_offset(o.offset)
                                            .with_committed_leader_epoch(o.leader_epoch)
                                            .with_metadata(Some(sb(o.metadata)))
                                            .with_error_code(o.error)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(g.group_id.0.clone()))
                    .with_topics(topics)
                    .with_error_code(error)
            })
            .collect();
        return ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(groups));
    }
    let topics = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
            .collect()
    });
    let (error, offsets) = if group_ok(req.group_id.0.as_str()) {
        fetch(
            &shard,
            req.group_id.0.as_str().to_owned(),
            topics,
            require_stable,
        )
        .await
    } else {
        denied
    };
    // v1 has no top-level error: a group-level error goes on every partition.
    let partition_error = |e: i16| if version < 2 && e == 0 { error } else { e };
    let topics = by_topic(offsets)
        .into_iter()
        .filter(|(t, _)| topic_ok(t))
        .map(|(t, ps)| {
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&t))
                .with_partitions(
                    ps.into_iter()
                        .map(|o| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(o.partition)
                                .with_committed_offset(o.offset)
                                .with_committed_leader_epoch(epoch(o.leader_epoch))
                                .with_metadata(Some(sb(o.metadata)))
                                .with_error_code(partition_error(o.error))
                        })
                        .collect(),
                )
        })
        .collect();
    let mut resp = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        resp.error_code = error;
    }
    ResponseKind::OffsetFetch(resp)
}
