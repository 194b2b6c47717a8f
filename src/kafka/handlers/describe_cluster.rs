//! DescribeCluster: this broker, the cluster id and the controller (us).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::shard::Shard;
use crate::util::sb;

pub async fn handle(shard: Rc<Shard>, _req: DescribeClusterRequest, _ctx: Ctx) -> ResponseKind {
    let node = shard.config.args.node_id;
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(node))
        .with_host(sb(shard.config.advertised_host.clone()))
        .with_port(shard.config.advertised_port);
    ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_cluster_id(sb(shard.metadata().cluster_id.clone()))
            .with_controller_id(BrokerId(node))
            .with_brokers(vec![broker])
            .with_cluster_authorized_operations(i32::MIN),
    )
}
