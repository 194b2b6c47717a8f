//! ElectLeaders: preferred (election type 0) or unclean (1) leader elections, run by the active
//! controller ([`crate::shard::controller::elect_leaders`]). A null topic list means every
//! partition; per partition, Kafka's codes: ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
//! ELIGIBLE_LEADERS_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::limits::PARTITIONS_PER_REQUEST_MAX;
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::{sb, topic_name};

pub async fn handle(shard: Rc<Shard>, req: ElectLeadersRequest, ctx: Ctx) -> ResponseKind {
    // ACLs: ALTER on the cluster.
    if !ctx.may_cluster(&shard, crate::security::acl::OP_ALTER) {
        return respond(
            ctx.version,
            ResponseError::ClusterAuthorizationFailed.code(),
            Vec::new(),
        );
    }
    let named: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|t| {
        t.iter()
            .flat_map(|tp| {
                tp.partitions
                    .iter()
                    .map(|p| (tp.topic.0.as_str().to_owned(), *p))
            })
            .take(PARTITIONS_PER_REQUEST_MAX)
            .collect()
    });
    let unclean = match req.election_type {
        0 => false,
        1 => true,
        _ => {
            return respond(
                ctx.version,
                ResponseError::InvalidRequest.code(),
                Vec::new(),
            )
        }
    };
    let op = ControllerOp::ElectLeaders {
        partitions: named,
        unclean,
    };
    match on_controller(&shard, op)
        .await
        .and_then(ControllerReply::elected)
    {
        Ok(outcomes) => {
            // A null request list reports only the partitions that changed, as Kafka does.
            let all = req.topic_partitions.is_none();
            let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
            for (topic, partition, code) in outcomes {
                if all && code != 0 {
                    continue;
                }
                by_topic.entry(topic).or_default().push(
                    PartitionResult::default()
                        .with_partition_id(partition)
                        .with_error_code(code),
                );
            }
            let results = by_topic
                .into_iter()
                .map(|(t, partition_result)| {
                    ReplicaElectionResult::default()
                        .with_topic(topic_name(&t))
                        .with_partition_result(partition_result)
                })
                .collect();
            respond(ctx.version, 0, results)
        }
        Err(e) => {
            // v0 has no top-level error: every named partition carries it.
            let results = req
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|tp| {
                    ReplicaElectionResult::default()
                        .with_topic(tp.topic)
                        .with_partition_result(
                            tp.partitions
                                .into_iter()
                                .map(|p| {
                                    PartitionResult::default()
                                        .with_partition_id(p)
                                        .with_error_code(e.error.code())
                                        .with_error_message(Some(sb(e.message.clone())))
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(ctx.version, e.error.code(), results)
        }
    }
}

fn respond(version: i16, error: i16, results: Vec<ReplicaElectionResult>) -> ResponseKind {
    let mut r = ElectLeadersResponse::default().with_replica_election_results(results);
    if version >= 1 {
        r = r.with_error_code(error);
    }
    ResponseKind::ElectLeaders(r)
}
