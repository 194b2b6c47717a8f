//! CreatePartitions: grows a topic, with the controller's placement or a manual replica
//! assignment of the new partitions; they get logs on their replicas' owner shards.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_ALTER, RESOURCE_TOPIC};
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::sb;

pub async fn handle(shard: Rc<Shard>, req: CreatePartitionsRequest, ctx: Ctx) -> ResponseKind {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        // ACLs: ALTER on the topic.
        if !ctx.may(&shard, OP_ALTER, RESOURCE_TOPIC, t.name.0.as_str()) {
            results.push(base.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        let assignment = t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
            a.iter()
                .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let name = t.name.0.as_str().to_owned();
        let (count, validate_only) = (t.count, req.validate_only);
        let op = ControllerOp::CreatePartitions {
            name,
            count,
            assignment,
            validate_only,
        };
        let r = on_controller(&shard, op)
            .await
            .and_then(ControllerReply::done);
        results.push(match r {
            Ok(()) => base,
            Err(e) => base
                .with_error_code(e.error.code())
                .with_error_message(Some(sb(e.message))),
        });
    }
    ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results))
}
