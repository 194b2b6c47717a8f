//! AlterPartitionReassignments and ListPartitionReassignments: move partitions between
//! brokers. The active controller adds the target replicas (they copy the leader as
//! followers), and once every added replica is in sync makes the target the replica set,
//! moving leadership off a removed leader ([`crate::controller::Controller::reassignments`]).
//! The list is answered from this broker's metadata image.

use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::limits::PARTITIONS_PER_REQUEST_MAX;
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::{sb, topic_name};

pub async fn handle_alter(
    shard: Rc<Shard>,
    req: AlterPartitionReassignmentsRequest,
    ctx: Ctx,
) -> ResponseKind {
    // ACLs: ALTER on the cluster.
    if !ctx.may_cluster(&shard, crate::security::acl::OP_ALTER) {
        return ResponseKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let items: Vec<(String, i32, Option<Vec<i32>>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.as_str().to_owned(),
                    p.partition_index,
                    p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                )
            })
        })
        .take(PARTITIONS_PER_REQUEST_MAX)
        .collect();
    let op = ControllerOp::AlterReassignments(items.clone());
    let outcomes = match on_controller(&shard, op)
        .await
        .and_then(ControllerReply::reassigned)
    {
        Ok(o) => o,
        Err(e) => {
            return ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default()
                    .with_error_code(e.error.code())
                    .with_error_message(Some(sb(e.message))),
            )
        }
    };
    let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
    for (topic, partition, code, message) in outcomes {
        let row = ReassignablePartitionResponse::default()
            .with_partition_index(partition)
            .with_error_code(code)
            .with_error_message(message.map(sb));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(row),
            None => topics.push(
                ReassignableTopicResponse::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![row]),
            ),
        }
    }
    ResponseKind::AlterPartitionReassignments(
        AlterPartitionReassignmentsResponse::default().with_responses(topics),
    )
}

pub async fn handle_list(
    shard: Rc<Shard>,
    req: ListPartitionReassignmentsRequest,
    ctx: Ctx,
) -> ResponseKind {
    // ACLs: DESCRIBE on the cluster.
    if !ctx.may_cluster(&shard, crate::security::acl::OP_DESCRIBE) {
        return ResponseKind::ListPartitionReassignments(
            ListPartitionReassignmentsResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let image = shard.metadata();
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let wanted = |topic: &str, partition: i32| {
        req.topics.as_ref().is_none_or(|ts| {
            ts.iter()
                .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&partition))
        })
    };
    let mut topics = Vec::new();
    for t in image.topics.values() {
        let partitions: Vec<OngoingPartitionReassignment> = t
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                (!p.adding_replicas.is_empty() || !p.removing_replicas.is_empty())
                    && wanted(&t.name, *i as i32)
            })
            .map(|(i, p)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding_replicas))
                    .with_removing_replicas(ids(&p.removing_replicas))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(topic_name(&t.name))
                    .with_partitions(partitions),
            );
        }
    }
    ResponseKind::ListPartitionReassignments(
        ListPartitionReassignmentsResponse::default().with_topics(topics),
    )
}
