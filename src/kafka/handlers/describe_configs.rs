//! DescribeConfigs: topic configs (dynamic override or broker default, reported with Kafka's
//! source codes) and the broker's static configs.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::cluster::topic_config::{self, TOPIC_CONFIG_KEYS};
use crate::config::Config;
use crate::kafka::dispatch::Ctx;
use crate::security::acl;
use crate::shard::Shard;
use crate::util::sb;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

fn config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => 7,
        "compression.type" | "message.timestamp.type" => 2,
        "retention.bytes"
        | "retention.ms"
        | "segment.ms"
        | "log.retention.ms"
        | "log.retention.bytes"
        | "log.segment.ms"
        | "min.compaction.lag.ms"
        | "max.compaction.lag.ms"
        | "delete.retention.ms" => 5,
        "min.cleanable.dirty.ratio" => 6,
        "auto.create.topics.enable" | "unclean.leader.election.enable" => 1,
        _ => 3,
    }
}

/// Broker configs we report, with their current values.
fn broker_configs(config: &Config) -> Vec<(&'static str, String)> {
    let a = &config.args;
    vec![
        (
            "auto.create.topics.enable",
            a.auto_create_topics_enable.to_string(),
        ),
        ("broker.id", a.node_id.to_string()),
        ("log.retention.bytes", a.log_retention_bytes.to_string()),
        ("log.retention.ms", a.log_retention_ms.to_string()),
        ("log.segment.bytes", a.log_segment_bytes.to_string()),
        ("log.segment.ms", a.log_segment_ms.to_string()),
        ("message.max.bytes", a.message_max_bytes.to_string()),
        ("num.partitions", a.num_partitions.to_string()),
        (
            "socket.request.max.bytes",
            a.socket_request_max_bytes.to_string(),
        ),
    ]
}

fn entry(
    key: &str,
    value: Option<String>,
    source: i8,
    read_only: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(sb(key))
        .with_value(value.clone().map(sb))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_is_sensitive(false);
    if version >= 3 {
        r.config_type = config_type(key);
    }
    if version >= 1 {
        r.synonyms = vec![DescribeConfigsSynonym::default()
            .with_name(sb(key))
            .with_value(value.map(sb))
            .with_source(source)];
    }
    r
}

pub async fn handle(shard: Rc<Shard>, req: DescribeConfigsRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    let image = shard.metadata();
    let mut results = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.as_str().to_owned();
        let wanted = |k: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
        };
        let base = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        // ACLs: DESCRIBE_CONFIGS on the topic, or on the cluster for broker configs.
        let allowed = if res.resource_type == RESOURCE_TOPIC {
            ctx.may(&shard, acl::OP_DESCRIBE_CONFIGS, acl::RESOURCE_TOPIC, &name)
        } else {
            ctx.may_cluster(&shard, acl::OP_DESCRIBE_CONFIGS)
        };
        if !allowed {
            let error = if res.resource_type == RESOURCE_TOPIC {
                ResponseError::TopicAuthorizationFailed
            } else {
                ResponseError::ClusterAuthorizationFailed
            };
            results.push(base.with_error_code(error.code()));
            continue;
        }
        let out = match res.resource_type {
            RESOURCE_TOPIC => match image.topic(&name) {
                None => base
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_error_message(Some(sb(format!("topic '{name}' does not exist")))),
                Some(t) => {
                    let configs = TOPIC_CONFIG_KEYS
                        .iter()
                        .filter(|k| wanted(k))
                        .map(|k| {
                            let dynamic = t.configs.contains_key(*k);
                            let value = topic_config::effective(&shard.config, &t.configs, k);
                            let source = if dynamic {
                                SOURCE_DYNAMIC_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            };
                            entry(k, value, source, false, version)
                        })
                        .collect();
                    base.with_configs(configs)
                }
            },
            RESOURCE_BROKER => {
                let configs = broker_configs(&shard.config)
                    .into_iter()
                    .filter(|(k, _)| wanted(k))
                    .map(|(k, v)| entry(k, Some(v), SOURCE_STATIC_BROKER, true, version))
                    .collect();
                base.with_configs(configs)
            }
            _ => base
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(sb("only topic and broker resources are supported"))),
        };
        results.push(out);
    }
    ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results))
}
