//! `sluice cluster info`: cluster id, controller and brokers (DescribeCluster), plus the topic
//! count (Metadata).

use clap::{Args, Subcommand};
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};
use serde::Serialize;

use crate::client::versions;
use crate::output::{emit, Table};
use crate::{AdminError, ClientArgs};

#[derive(Debug, Args)]
pub struct ClusterCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: ClusterAction,
}

#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Cluster id, controller, brokers and topic count.
    Info,
}

#[derive(Serialize)]
struct BrokerInfo {
    node_id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
}

#[derive(Serialize)]
struct Info {
    cluster_id: String,
    controller_id: i32,
    brokers: Vec<BrokerInfo>,
    topics: usize,
}

pub fn run(cmd: ClusterCmd) -> Result<(), AdminError> {
    match cmd.action {
        ClusterAction::Info => info(&cmd.client),
    }
}

fn info(c: &ClientArgs) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let resp: DescribeClusterResponse = s.bootstrap().call(
        ApiKey::DescribeCluster,
        versions::DESCRIBE_CLUSTER,
        &DescribeClusterRequest::default().with_endpoint_type(1),
    )?;
    AdminError::check(
        resp.error_code,
        resp.error_message.as_deref(),
        "DescribeCluster",
    )?;
    let topics = s
        .metadata(None)?
        .topics
        .iter()
        .filter(|t| !t.is_internal && t.error_code == 0)
        .count();
    let mut brokers: Vec<BrokerInfo> = resp
        .brokers
        .iter()
        .map(|b| BrokerInfo {
            node_id: b.broker_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    brokers.sort_by_key(|b| b.node_id);
    let out = Info {
        cluster_id: resp.cluster_id.to_string(),
        controller_id: resp.controller_id.0,
        brokers,
        topics,
    };
    emit(c.format, &out, || {
        let mut text = format!(
            "Cluster: {}\nController: {}\nTopics: {}\n",
            out.cluster_id, out.controller_id, out.topics
        );
        let mut t = Table::new(&["NODE", "HOST", "PORT", "RACK", "CONTROLLER"]);
        for b in &out.brokers {
            t.row(vec![
                b.node_id.to_string(),
                b.host.clone(),
                b.port.to_string(),
                b.rack.clone().unwrap_or_else(|| "-".to_owned()),
                if b.node_id == out.controller_id {
                    "yes".to_owned()
                } else {
                    String::new()
                },
            ]);
        }
        text.push_str(&t.render());
        text
    })
}
