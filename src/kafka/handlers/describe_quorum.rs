//! DescribeQuorum (`kafka-metadata-quorum --describe`): the controller quorum as the
//! `__cluster_metadata` partition — leader, term (leader epoch), commit index (high
//! watermark), and each voter's replicated log end as the leader sees it (-1 unknown). Any
//! node answers from its own view; a single node is a quorum of itself at its metadata epoch.

use std::rc::Rc;

use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::shard::Shard;
use crate::util::{sb, topic_name};

/// Kafka's name for the metadata log.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(shard: Rc<Shard>, _req: DescribeQuorumRequest, ctx: Ctx) -> ResponseKind {
    // ACLs: DESCRIBE on the cluster.
    if !ctx.may_cluster(&shard, crate::security::acl::OP_DESCRIBE) {
        return ResponseKind::DescribeQuorum(
            DescribeQuorumResponse::default()
                .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let node = shard.config.args.node_id;
    let partition = if !shard.config.clustered() {
        let epoch = shard.metadata().epoch as i64;
        PartitionData::default()
            .with_leader_id(BrokerId(node))
            .with_high_watermark(epoch)
            .with_current_voters(vec![replica(node, epoch)])
    } else {
        match shard.shared.status() {
            Some(s) => {
                let q = s.quorum;
                let voters = q
                    .voters
                    .iter()
                    .map(|(id, matched)| replica(*id, matched.map_or(-1, |m| m as i64)))
                    .collect();
                PartitionData::default()
                    .with_leader_id(BrokerId(q.leader.unwrap_or(-1)))
                    .with_leader_epoch(q.term as i32)
                    .with_high_watermark(q.commit_index as i64)
                    .with_current_voters(voters)
            }
            None => PartitionData::default()
                .with_error_code(ResponseError::NotLeaderOrFollower.code())
                .with_error_message(Some(sb("the controller quorum has not started yet")))
                .with_leader_id(BrokerId(-1)),
        }
    };
    let topic = TopicData::default()
        .with_topic_name(topic_name(METADATA_TOPIC))
        .with_partitions(vec![partition]);
    ResponseKind::DescribeQuorum(DescribeQuorumResponse::default().with_topics(vec![topic]))
}

fn replica(id: i32, log_end_offset: i64) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(BrokerId(id))
        .with_log_end_offset(log_end_offset)
        .with_last_fetch_timestamp(-1)
        .with_last_caught_up_timestamp(-1)
}
