//! Metadata: brokers (just us), the controller, and topics with their partitions. Unknown
//! topics are auto-created when both the broker and the request allow it.

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
                Wanted::Name(n) if image.topic(n).is_none() && validate_topic_name(n).is_ok() => {
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
    let node = shard.config.args.node_id;
    let topics = match wanted {
        None => image.topics.values().map(|t| describe(t)).collect(),
        Some(wanted) => wanted.iter().map(|w| describe_wanted(&image, w)).collect(),
    };
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(node))
        .with_host(sb(shard.config.advertised_host.clone()))
        .with_port(shard.config.advertised_port);
    ResponseKind::Metadata(
        MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_cluster_id(Some(sb(image.cluster_id.clone())))
            .with_controller_id(BrokerId(node))
            .with_topics(topics),
    )
}

fn describe_wanted(image: &MetadataImage, wanted: &Wanted) -> MetadataResponseTopic {
    let found = match wanted {
        Wanted::Name(n) => image.topic(n),
        Wanted::Id(id) => image.topic_by_id(id),
    };
    if let Some(t) = found {
        return describe(t);
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

fn describe(t: &TopicMeta) -> MetadataResponseTopic {
    let nodes = |ids: &[i32]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    let partitions = t
        .partitions
        .iter()
        .zip(0..)
        .map(|(p, index)| {
            MetadataResponsePartition::default()
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
