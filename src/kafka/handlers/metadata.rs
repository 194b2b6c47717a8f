//! Metadata: the live brokers, the active controller, and topics with their partitions (a
//! partition without a leader answers LEADER_NOT_AVAILABLE; replicas on brokers that are not
//! live are listed as offline). Unknown topics are auto-created when both the broker and the
//! request allow it.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::cluster::image::{MetadataImage, TopicMeta};
use crate::controller::validate_topic_name;
use crate::kafka::dispatch::Ctx;
use crate::kafka::handlers::may_create;
use crate::security::acl::{OP_DESCRIBE, RESOURCE_TOPIC};
use crate::shard::controller::{self};
use crate::shard::Shard;
use crate::util::{sb, topic_name, uuid};

enum Wanted {
    Name(String),
    Id([u8; 16]),
}

pub async fn handle(shard: Rc<Shard>, req: MetadataRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    let wanted: Option<Vec<Wanted>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .map(|t| match t.name {
                    Some(n) => Wanted::Name(n.0.as_str().to_owned()),
                    None => Wanted::Id(*t.topic_id.as_bytes()),
                })
                .collect(),
        ),
    };
    let auto_create = shard.config.args.auto_create_topics_enable
        && (version < 4 || req.allow_auto_topic_creation);
    let mut image = shard.metadata();
    if let (Some(wanted), true) = (&wanted, auto_create) {
        let missing: Vec<String> = wanted
            .iter()
            .filter_map(|w| match w {
                Wanted::Name(n)
                    if image.topic(n).is_none()
                        && validate_topic_name(n).is_ok()
                        && may_create(&shard, &ctx, n) =>
                {
                    Some(n.clone())
                }
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            controller::auto_create(&shard, missing).await;
            image = shard.metadata();
        }
    }
    let brokers = shard.brokers(ctx.listener);
    let live = |id: i32| brokers.iter().any(|b| b.id == id);
    // ACLs: topics the principal may not DESCRIBE are left out of a full listing and answer
    // TOPIC_AUTHORIZATION_FAILED when named (whether or not they exist, as Kafka does).
    let describable = |name: &str| ctx.may(&shard, OP_DESCRIBE, RESOURCE_TOPIC, name);
    let topics = match wanted {
        None => image
            .topics
            .values()
            .filter(|t| describable(&t.name))
            .map(|t| describe(t, &live))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .map(|w| {
                let name = match w {
                    Wanted::Name(n) => Some(n.as_str()),
                    Wanted::Id(id) => image.topic_by_id(id).map(|t| t.name.as_str()),
                };
                match name {
                    Some(n) if !describable(n) => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_name(Some(topic_name(n)))
                        .with_topic_authorized_operations(i32::MIN),
                    _ => describe_wanted(&image, w, &live),
                }
            })
            .collect(),
    };
    let brokers = brokers
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(sb(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(sb))
        })
        .collect();
    ResponseKind::Metadata(
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(sb(image.cluster_id.clone())))
            .with_controller_id(BrokerId(shard.controller_id()))
            .with_topics(topics),
    )
}

fn describe_wanted(
    image: &MetadataImage,
    wanted: &Wanted,
    live: &dyn Fn(i32) -> bool,
) -> MetadataResponseTopic {
    let found = match wanted {
        Wanted::Name(n) => image.topic(n),
        Wanted::Id(id) => image.topic_by_id(id),
    };
    if let Some(t) = found {
        return describe(t, live);
    }
    let (error, name, id) = match wanted {
        Wanted::Name(n) if validate_topic_name(n).is_err() => (
            ResponseError::InvalidTopicException,
            Some(topic_name(n)),
            [0; 16],
        ),
        Wanted::Name(n) => (
            ResponseError::UnknownTopicOrPartition,
            Some(topic_name(n)),
            [0; 16],
        ),
        Wanted::Id(id) => (ResponseError::UnknownTopicId, None, *id),
    };
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name)
        .with_topic_id(uuid(&id))
        .with_topic_authorized_operations(i32::MIN)
}

fn describe(t: &TopicMeta, live: &dyn Fn(i32) -> bool) -> MetadataResponseTopic {
    let nodes = |ids: &[i32]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    let partitions = t
        .partitions
        .iter()
        .zip(0..)
        .map(|(p, index)| {
            let offline: Vec<i32> = p.replicas.iter().copied().filter(|r| !live(*r)).collect();
            let error = if p.leader == -1 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_offline_replicas(nodes(&offline))
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(nodes(&p.replicas))
                .with_isr_nodes(nodes(&p.isr))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(uuid(&t.id))
        .with_is_internal(t.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}
