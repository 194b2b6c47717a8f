//! IncrementalAlterConfigs (SET/DELETE; APPEND/SUBTRACT on list configs) and the legacy
//! AlterConfigs (replace the whole set) for topics. Broker configs are static: refused.

use std::rc::Rc;

use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::cluster::topic_config;
use crate::controller::{ConfigOp, OpError, OpResult};
use crate::kafka::dispatch::Ctx;
use crate::kafka::handlers::describe_configs::RESOURCE_TOPIC;
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::sb;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

async fn alter(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: String,
    ops: OpResult<Vec<ConfigOp>>,
    replace: bool,
    validate_only: bool,
) -> (i16, Option<String>) {
    if resource_type != RESOURCE_TOPIC {
        return (
            ResponseError::InvalidRequest.code(),
            Some("only topic configs can be altered; broker configs are set by flags".into()),
        );
    }
    let ops = match ops {
        Ok(ops) => ops,
        Err(e) => return (e.error.code(), Some(e.message)),
    };
    let op = ControllerOp::AlterConfigs {
        name,
        ops,
        replace,
        validate_only,
    };
    let r = on_controller(shard, op)
        .await
        .and_then(ControllerReply::done);
    match r {
        Ok(()) => (0, None),
        Err(e) => (e.error.code(), Some(e.message)),
    }
}

pub async fn handle_incremental(
    shard: Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
    ctx: Ctx,
) -> ResponseKind {
    let image = shard.metadata();
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.as_str().to_owned();
        let current = image
            .topic(&name)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        let ops: OpResult<Vec<ConfigOp>> = res
            .configs
            .iter()
            .map(|c| {
                let key = c.name.as_str().to_owned();
                let value = c.value.as_ref().map(|v| v.as_str().to_owned());
                let list = || {
                    topic_config::effective(&shard.config, &current, &key)
                        .map(|v| {
                            v.split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned)
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                };
                let invalid = |m: &str| OpError {
                    error: ResponseError::InvalidConfig,
                    message: m.to_owned(),
                };
                match (c.config_operation, value) {
                    (OP_SET, Some(v)) => Ok(ConfigOp::Set(key, v)),
                    (OP_DELETE, _) => Ok(ConfigOp::Delete(key)),
                    (OP_APPEND, Some(v)) => {
                        let mut l = list();
                        if !l.contains(&v) {
                            l.push(v);
                        }
                        Ok(ConfigOp::Set(key, l.join(",")))
                    }
                    (OP_SUBTRACT, Some(v)) => {
                        let l: Vec<String> = list().into_iter().filter(|x| *x != v).collect();
                        Ok(ConfigOp::Set(key, l.join(",")))
                    }
                    (OP_SET | OP_APPEND | OP_SUBTRACT, None) => Err(invalid("a value is required")),
                    _ => Err(invalid("unknown config operation")),
                }
            })
            .collect();
        let (code, msg) = match denied(&shard, &ctx, res.resource_type, &name) {
            Some(d) => d,
            None => {
                alter(
                    &shard,
                    res.resource_type,
                    name,
                    ops,
                    false,
                    req.validate_only,
                )
                .await
            }
        };
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    ResponseKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}

pub async fn handle_legacy(shard: Rc<Shard>, req: AlterConfigsRequest, ctx: Ctx) -> ResponseKind {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.as_str().to_owned();
        let ops = Ok(res
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| ConfigOp::Set(c.name.as_str().to_owned(), v.as_str().to_owned()))
            })
            .collect());
        let (code, msg) = match denied(&shard, &ctx, res.resource_type, &name) {
            Some(d) => d,
            None => {
                alter(
                    &shard,
                    res.resource_type,
                    name,
                    ops,
                    true,
                    req.validate_only,
                )
                .await
            }
        };
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
}

/// ACLs: ALTER_CONFIGS on the topic (config resource type 2), or on the cluster for broker
/// configs; the error to answer with, if denied.
fn denied(
    shard: &Shard,
    ctx: &Ctx,
    resource_type: i8,
    name: &str,
) -> Option<(i16, Option<String>)> {
    use crate::security::acl::{OP_ALTER_CONFIGS, RESOURCE_TOPIC as ACL_TOPIC};
    let (ok, error) = if resource_type == 2 {
        (
            ctx.may(shard, OP_ALTER_CONFIGS, ACL_TOPIC, name),
            ResponseError::TopicAuthorizationFailed,
        )
    } else {
        (
            ctx.may_cluster(shard, OP_ALTER_CONFIGS),
            ResponseError::ClusterAuthorizationFailed,
        )
    };
    (!ok).then(|| (error.code(), None))
}
