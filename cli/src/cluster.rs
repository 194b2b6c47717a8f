//! `sluice cluster info`: cluster id, controller and brokers, fenced ones included
//! (DescribeCluster v2), the controller quorum — leader, term, commit index, each voter's
//! replicated log end and lag (DescribeQuorum) — and the topic count (Metadata).

use clap::{Args, Subcommand};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse,
};
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
    /// Cluster id, controller, brokers (fenced too), topic count and the controller quorum.
    Info,
}

#[derive(Serialize)]
struct BrokerInfo {
    node_id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
    fenced: bool,
}

#[derive(Serialize)]
struct Voter {
    node_id: i32,
    /// Its replicated log end as the leader sees it (-1: unknown).
    log_end_offset: i64,
    /// Committed entries it does not have yet (-1: unknown).
    lag: i64,
}

#[derive(Serialize)]
struct Quorum {
    leader_id: i32,
    term: i32,
    commit_index: i64,
    voters: Vec<Voter>,
}

#[derive(Serialize)]
struct Info {
    cluster_id: String,
    controller_id: i32,
    brokers: Vec<BrokerInfo>,
    topics: usize,
    quorum: Option<Quorum>,
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
        &DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .with_include_fenced_brokers(true),
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
            fenced: b.is_fenced,
        })
        .collect();
    brokers.sort_by_key(|b| b.node_id);
    let live = brokers.iter().filter(|b| !b.fenced).count();
    let out = Info {
        cluster_id: resp.cluster_id.to_string(),
        controller_id: resp.controller_id.0,
        brokers,
        topics,
        quorum: quorum(&mut s).ok(),
    };
    emit(c.format, &out, || {
        let mut text = format!(
            "Cluster: {}\nController: {}\nBrokers: {live}\nTopics: {}\n",
            out.cluster_id, out.controller_id, out.topics
        );
        let mut t = Table::new(&["NODE", "HOST", "PORT", "RACK", "FENCED", "CONTROLLER"]);
        for b in &out.brokers {
            t.row(vec![
                b.node_id.to_string(),
                b.host.clone(),
                b.port.to_string(),
                b.rack.clone().unwrap_or_else(|| "-".to_owned()),
                if b.fenced { "yes" } else { "no" }.to_owned(),
                if b.node_id == out.controller_id {
                    "yes".to_owned()
                } else {
                    String::new()
                },
            ]);
        }
        text.push_str(&t.render());
        if let Some(q) = &out.quorum {
            text.push_str(&format!(
                "Quorum: leader {}, term {}, commit index {}\n",
                q.leader_id, q.term, q.commit_index
            ));
            let mut t = Table::new(&["VOTER", "LOG-END", "LAG"]);
            for v in &q.voters {
                let show = |n: i64| if n < 0 { "-".to_owned() } else { n.to_string() };
                t.row(vec![
                    v.node_id.to_string(),
                    show(v.log_end_offset),
                    show(v.lag),
                ]);
            }
            text.push_str(&t.render());
        }
        text
    })
}

/// The controller quorum (DescribeQuorum on the active controller, which knows every voter's
/// progress).
fn quorum(s: &mut crate::client::Session) -> Result<Quorum, AdminError> {
    let resp: DescribeQuorumResponse = s.controller()?.call(
        ApiKey::DescribeQuorum,
        versions::DESCRIBE_QUORUM,
        &DescribeQuorumRequest::default(),
    )?;
    AdminError::check(
        resp.error_code,
        resp.error_message.as_deref(),
        "DescribeQuorum",
    )?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| AdminError::Refused("DescribeQuorum answered without a partition".into()))?;
    AdminError::check(p.error_code, p.error_message.as_deref(), "DescribeQuorum")?;
    let voters = p
        .current_voters
        .iter()
        .map(|v| Voter {
            node_id: v.replica_id.0,
            log_end_offset: v.log_end_offset,
            lag: if v.log_end_offset < 0 {
                -1
            } else {
                (p.high_watermark - v.log_end_offset).max(0)
            },
        })
        .collect();
    Ok(Quorum {
        leader_id: p.leader_id.0,
        term: p.leader_epoch,
        commit_index: p.high_watermark,
        voters,
    })
}
