//! CreateTopics: validated and applied by the controller; each topic answers on its own.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::cluster::topic_config::{self, TOPIC_CONFIG_KEYS};
use crate::controller::NewTopic;
use crate::kafka::dispatch::Ctx;
use crate::kafka::handlers::describe_configs::SOURCE_DEFAULT;
use crate::kafka::handlers::describe_configs::SOURCE_DYNAMIC_TOPIC;
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::{sb, uuid};

pub async fn handle(shard: Rc<Shard>, req: CreateTopicsRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    let mut results: Vec<CreatableTopicResult> = Vec::with_capacity(req.topics.len());
    let mut todo = Vec::new();
    for t in &req.topics {
        let name = t.name.0.as_str().to_owned();
        let dup = req
            .topics
            .iter()
            .filter(|o| o.name.0.as_str() == name)
            .count()
            > 1;
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.as_str().to_owned(), v.as_str().to_owned());
                }
                None => bad_config = Some(format!("config {} has a null value", c.name.as_str())),
            }
        }
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        if !crate::kafka::handlers::may_create(&shard, &ctx, &name) {
            results.push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
        } else if dup {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb(format!(
                        "topic '{name}' appears more than once in the request"
                    )))),
            );
        } else if let Some(msg) = bad_config {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidConfig.code())
                    .with_error_message(Some(sb(msg))),
            );
        } else {
            results.push(result);
            todo.push((
                results.len() - 1,
                NewTopic {
                    name,
                    partitions: t.num_partitions,
                    replication_factor: t.replication_factor,
                    configs,
                    assignment: manual_assignment(&t.assignments),
                },
            ));
        }
    }
    let (slots, topics): (Vec<usize>, Vec<NewTopic>) = todo.into_iter().unzip();
    let validate_only = req.validate_only;
    let op = ControllerOp::CreateTopics {
        topics,
        validate_only,
    };
    let outcome = on_controller(&shard, op)
        .await
        .and_then(ControllerReply::topics);
    match outcome {
        Ok(outs) => {
            for (slot, out) in slots.into_iter().zip(outs) {
                let r = &mut results[slot];
                match out {
                    Ok(meta) => {
                        r.topic_id = uuid(&meta.id);
                        r.num_partitions = meta.partition_count();
                        r.replication_factor = meta
                            .partitions
                            .first()
                            .map_or(1, |p| p.replicas.len() as i16);
                        if version >= 5 {
                            let configs = TOPIC_CONFIG_KEYS
                                .iter()
                                .map(|k| {
                                    let dynamic = meta.configs.contains_key(*k);
                                    CreatableTopicConfigs::default()
                                        .with_name(sb(*k))
                                        .with_value(
                                            topic_config::effective(
                                                &shard.config,
                                                &meta.configs,
                                                k,
                                            )
                                            .map(sb),
                                        )
                                        .with_config_source(if dynamic {
                                            SOURCE_DYNAMIC_TOPIC
                                        } else {
                                            SOURCE_DEFAULT
                                        })
                                })
                                .collect();
                            r.configs = Some(configs);
                        }
                    }
                    Err(e) => {
                        r.error_code = e.error.code();
                        r.error_message = Some(sb(e.message));
                        r.num_partitions = -1;
                        r.replication_factor = -1;
                    }
                }
            }
        }
        Err(e) => {
            for slot in slots {
                results[slot].error_code = e.error.code();
            }
        }
    }
    ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
}

/// A CreateTopics manual assignment, in partition order; `None` when absent. Partition
/// indexes must be 0..n, each once (else the controller refuses the gap or duplicate as an
/// empty replica list).
fn manual_assignment(
    a: &[kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment],
) -> Option<Vec<Vec<i32>>> {
    if a.is_empty() {
        return None;
    }
    let mut out = vec![Vec::new(); a.len()];
    for p in a {
        if let Some(slot) = usize::try_from(p.partition_index)
            .ok()
            .and_then(|i| out.get_mut(i))
        {
            if slot.is_empty() {
                *slot = p.broker_ids.iter().map(|b| b.0).collect();
                continue;
            }
        }
        // Out of range or twice: an empty list the controller refuses.
        return Some(vec![Vec::new(); a.len()]);
    }
    Some(out)
}
