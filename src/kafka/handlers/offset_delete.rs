//! OffsetDelete: removes committed offsets of partitions the group is not subscribed to
//! (GROUP_SUBSCRIBED_TO_TOPIC otherwise, judged from the members' consumer subscriptions).

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{OffsetDeleteRequest as Od, Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_DELETE, OP_READ, RESOURCE_GROUP, RESOURCE_TOPIC};
use crate::shard::groups;
use crate::shard::Shard;
use crate::util::topic_name;

pub async fn handle(shard: Rc<Shard>, req: OffsetDeleteRequest, ctx: Ctx) -> ResponseKind {
    let group_id = req.group_id.0.as_str().to_owned();
    // ACLs: DELETE on the group, READ on every topic named.
    if !ctx.may(&shard, OP_DELETE, RESOURCE_GROUP, &group_id) {
        return ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    if req
        .topics
        .iter()
        .any(|t| !ctx.may(&shard, OP_READ, RESOURCE_TOPIC, t.name.0.as_str()))
    {
        return ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default()
                .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
        );
    }
    let od = |partition| Od {
        group_id: group_id.clone(),
        partition,
        topics: req
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.0.as_str().to_owned(),
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect(),
    };
    let mut resp = OffsetDeleteResponse::default();
    let results = match groups::call(&shard, &group_id, |partition| {
        Request::OffsetDelete(od(partition))
    })
    .await
    {
        Ok(Reply::OffsetDelete(e, results)) => {
            resp.error_code = e;
            results
        }
        Ok(_) => {
            resp.error_code = ResponseError::UnknownServerError.code();
            Vec::new()
        }
        Err(e) => {
            resp.error_code = e.code();
            Vec::new()
        }
    };
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (t, p, e) in results {
        let part = OffsetDeleteResponsePartition::default()
            .with_partition_index(p)
            .with_error_code(e);
        match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(topic_name(&t))
                    .with_partitions(vec![part]),
            ),
        }
    }
    resp.topics = topics;
    ResponseKind::OffsetDelete(resp)
}
