//! DescribeCluster: the live brokers (v2 with `include_fenced_brokers`: every registered one,
//! flagged), the cluster id and the active controller.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::shard::Shard;
use crate::util::sb;

pub async fn handle(shard: Rc<Shard>, req: DescribeClusterRequest, ctx: Ctx) -> ResponseKind {
    // ACLs: DESCRIBE on the cluster.
    if !ctx.may_cluster(&shard, crate::security::acl::OP_DESCRIBE) {
        return ResponseKind::DescribeCluster(
            DescribeClusterResponse::default()
                .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let to_wire = |b: crate::shard::BrokerInfo, fenced: bool| {
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(b.id))
            .with_host(sb(b.host))
            .with_port(b.port)
            .with_rack(b.rack.map(sb))
            .with_is_fenced(fenced)
    };
    let image = shard.metadata();
    let brokers = if req.include_fenced_brokers && shard.config.clustered() {
        image
            .brokers
            .values()
            .map(|b| {
                to_wire(
                    crate::shard::BrokerInfo::of(&b.record, ctx.listener),
                    b.fenced,
                )
            })
            .collect()
    } else {
        shard
            .brokers(ctx.listener)
            .into_iter()
            .map(|b| to_wire(b, false))
            .collect()
    };
    ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_cluster_id(sb(shard.metadata().cluster_id.clone()))
            .with_controller_id(BrokerId(shard.controller_id()))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(i32::MIN),
    )
}
