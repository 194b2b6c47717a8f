//! DescribeCluster: the live brokers, the cluster id and the active controller.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::shard::Shard;
use crate::util::sb;

pub async fn handle(shard: Rc<Shard>, _req: DescribeClusterRequest, _ctx: Ctx) -> ResponseKind {
    let brokers = shard
        .brokers()
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(sb(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(sb))
        })
        .collect();
    ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_cluster_id(sb(shard.metadata().cluster_id.clone()))
            .with_controller_id(BrokerId(shard.controller_id()))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(i32::MIN),
    )
}
