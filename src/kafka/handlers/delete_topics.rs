//! DeleteTopics: by name (v1–5) or by name or topic id (v6+).

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_DELETE, RESOURCE_TOPIC};
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::{sb, topic_name, uuid};

pub async fn handle(shard: Rc<Shard>, req: DeleteTopicsRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    let image = shard.metadata();
    let wanted: Vec<(Option<String>, [u8; 16])> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(|n| n.0.as_str().to_owned()),
                    *t.topic_id.as_bytes(),
                )
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.as_str().to_owned()), [0; 16]))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let resolved = match &name {
            Some(n) => image.topic(n).cloned(),
            None => image.topic_by_id(&id).cloned(),
        };
        let base = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_topic_id(uuid(&id));
        // ACLs: DELETE on the topic (checked before telling whether it exists).
        let named = name
            .clone()
            .or_else(|| resolved.as_ref().map(|m| m.name.clone()));
        if named.is_some_and(|n| !ctx.may(&shard, OP_DELETE, RESOURCE_TOPIC, &n)) {
            responses.push(base.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        let Some(meta) = resolved else {
            let error = if name.is_none() {
                ResponseError::UnknownTopicId
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            responses.push(base.with_error_code(error.code()));
            continue;
        };
        let topic = meta.name.clone();
        let r = on_controller(&shard, ControllerOp::DeleteTopic(topic))
            .await
            .and_then(ControllerReply::topic);
        let base = base
            .with_name(Some(topic_name(&meta.name)))
            .with_topic_id(uuid(&meta.id));
        responses.push(match r {
            Ok(_) => base,
            Err(e) => base
                .with_error_code(e.error.code())
                .with_error_message(Some(sb(e.message))),
        });
    }
    ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(responses))
}
