//! `sluice group list|describe|delete|reset-offsets`.
//!
//! Group requests go to the group's coordinator (FindCoordinator); ListGroups goes to every
//! broker, since each lists only the groups it coordinates. Like Kafka's tool, `reset-offsets`
//! refuses a group with live members (their next commit would overwrite the reset) and only
//! prints the plan unless `--execute` is given.

use std::collections::{BTreeMap, BTreeSet};

use clap::{ArgGroup, Args, Subcommand};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::Decodable;
use serde::Serialize;

use crate::client::{guard, peek_i16, sb, versions, Session, TopicPartition, EARLIEST, LATEST};
use crate::output::{emit, join, Table};
use crate::{AdminError, ClientArgs};

mod reset;

use reset::{parse_topic_scope, reset_offsets, Target};

const GROUP_ID_NOT_FOUND: i16 = 69;
/// Newest ConsumerProtocolAssignment version kafka-protocol decodes; newer ones only append.
const ASSIGNMENT_VERSION_MAX: i16 = 3;

#[derive(Debug, Args)]
pub struct GroupCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: GroupAction,
}

#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// List consumer groups on every broker.
    List,
    /// Members, assignments, committed offsets, log end offsets and lag.
    Describe {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete groups (they must have no members).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets (the group must have no members).
    #[command(
        group = ArgGroup::new("scope").required(true).args(["topics", "all_topics"]),
        group = ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset"]),
    )]
    ResetOffsets {
        group: String,
        /// TOPIC or TOPIC:P,P,... to reset (repeatable).
        #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]")]
        topics: Vec<String>,
        /// Every topic the group has committed offsets for.
        #[arg(long)]
        all_topics: bool,
        /// To the log start offset.
        #[arg(long)]
        to_earliest: bool,
        /// To the log end offset.
        #[arg(long)]
        to_latest: bool,
        /// To this offset (clamped to the log's range, as Kafka does).
        #[arg(long, value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// Only print the plan (the default).
        #[arg(long, conflicts_with = "execute")]
        dry_run: bool,
        /// Commit the new offsets.
        #[arg(long)]
        execute: bool,
    },
}

pub fn run(cmd: GroupCmd) -> Result<(), AdminError> {
    let c = &cmd.client;
    match cmd.action {
        GroupAction::List => list(c),
        GroupAction::Describe { groups } => describe(c, &groups),
        GroupAction::Delete { groups } => delete(c, &groups),
        GroupAction::ResetOffsets {
            group,
            topics,
            all_topics,
            to_earliest,
            to_latest,
            to_offset,
            dry_run: _,
            execute,
        } => {
            let target = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => Target::Earliest,
                (_, true, _) => Target::Latest,
                (_, _, Some(o)) => Target::Offset(o),
                _ => {
                    return Err(AdminError::Usage(
                        "give one of --to-earliest, --to-latest, --to-offset N".to_owned(),
                    ))
                }
            };
            let scope = if all_topics {
                None
            } else {
                Some(
                    topics
                        .iter()
                        .map(|t| parse_topic_scope(t))
                        .collect::<Result<Vec<_>, _>>()?,
                )
            };
            reset_offsets(c, &group, scope, target, execute)
        }
    }
}

#[derive(Serialize)]
struct Listed {
    group: String,
    state: String,
    protocol_type: String,
    coordinator: i32,
}

fn list(c: &ClientArgs) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let mut out = Vec::new();
    for node in s.broker_ids()? {
        let resp: ListGroupsResponse = s.broker(node)?.call(
            ApiKey::ListGroups,
            versions::LIST_GROUPS,
            &ListGroupsRequest::default(),
        )?;
        AdminError::check(
            resp.error_code,
            None,
            format!("ListGroups on broker {node}"),
        )?;
        out.extend(resp.groups.into_iter().map(|g| Listed {
            group: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            coordinator: node,
        }));
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    emit(c.format, &out, || {
        let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"]);
        for g in &out {
            t.row(vec![
                g.group.clone(),
                g.state.clone(),
                g.protocol_type.clone(),
                g.coordinator.to_string(),
            ]);
        }
        t.render()
    })
}

#[derive(Serialize, Clone)]
struct Assigned {
    topic: String,
    partitions: Vec<i32>,
}

#[derive(Serialize)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    assignment: Vec<Assigned>,
}

#[derive(Serialize)]
struct OffsetRow {
    topic: String,
    partition: i32,
    committed_offset: Option<i64>,
    log_end_offset: Option<i64>,
    lag: Option<i64>,
    member_id: Option<String>,
    client_id: Option<String>,
    client_host: Option<String>,
}

#[derive(Serialize)]
struct Described {
    group: String,
    state: String,
    protocol_type: String,
    protocol: String,
    coordinator: i32,
    members: Vec<Member>,
    offsets: Vec<OffsetRow>,
}

/// DescribeGroups for one group at its coordinator.
struct GroupState {
    state: String,
    protocol_type: String,
    protocol: String,
    coordinator: i32,
    members: Vec<Member>,
}

fn describe_group(s: &mut Session, group: &str) -> Result<GroupState, AdminError> {
    let coordinator = s
        .coordinators(&[group.to_owned()])?
        .first()
        .map_or(-1, |c| c.node_id.0);
    let resp: DescribeGroupsResponse = s.broker(coordinator)?.call(
        ApiKey::DescribeGroups,
        versions::DESCRIBE_GROUPS,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]),
    )?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| AdminError::Refused("DescribeGroups answer has no group".to_owned()))?;
    AdminError::check(
        g.error_code,
        g.error_message.as_deref(),
        format!("group {group:?}"),
    )?;
    let consumer = g.protocol_type.as_str() == "consumer";
    let members = g
        .members
        .into_iter()
        .map(|m| Member {
            member_id: m.member_id.to_string(),
            group_instance_id: m.group_instance_id.map(|i| i.to_string()),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            assignment: if consumer {
                decode_assignment(&m.member_assignment)
            } else {
                Vec::new()
            },
        })
        .collect();
    Ok(GroupState {
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        coordinator,
        members,
    })
}

/// The partitions in a consumer-protocol assignment; empty when absent or undecodable (a
/// display aid, not worth failing the command for).
fn decode_assignment(bytes: &bytes::Bytes) -> Vec<Assigned> {
    let Some(version) = peek_i16(bytes) else {
        return Vec::new();
    };
    let mut body = bytes.slice(2..);
    let version = version.clamp(0, ASSIGNMENT_VERSION_MAX);
    let Ok(a) = guard(|| ConsumerProtocolAssignment::decode(&mut body, version)) else {
        return Vec::new();
    };
    a.assigned_partitions
        .into_iter()
        .map(|tp| Assigned {
            topic: tp.topic.0.to_string(),
            partitions: tp.partitions,
        })
        .collect()
}

/// Committed offsets of `group` (all partitions it has any for).
fn committed(s: &mut Session, group: &str) -> Result<BTreeMap<TopicPartition, i64>, AdminError> {
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(sb(group)))
        .with_topics(None)]);
    let resp: OffsetFetchResponse =
        s.coordinator(group)?
            .call(ApiKey::OffsetFetch, versions::OFFSET_FETCH, &req)?;
    let mut out = BTreeMap::new();
    for g in resp.groups {
        AdminError::check(g.error_code, None, format!("OffsetFetch {group:?}"))?;
        for t in g.topics {
            for p in t.partitions {
                AdminError::check(
                    p.error_code,
                    None,
                    format!("OffsetFetch {group:?} {}-{}", t.name.0, p.partition_index),
                )?;
                if p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Log end offsets of the partitions of topics that still exist.
fn log_end_offsets(
    s: &mut Session,
    tps: &BTreeSet<TopicPartition>,
) -> Result<BTreeMap<TopicPartition, i64>, AdminError> {
    let topics: BTreeSet<String> = tps.iter().map(|(t, _)| t.clone()).collect();
    if topics.is_empty() {
        return Ok(BTreeMap::new());
    }
    let topics: Vec<String> = topics.into_iter().collect();
    let md = s.metadata(Some(&topics))?;
    let existing: BTreeSet<(String, i32)> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .flat_map(|t| {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            t.partitions
                .iter()
                .map(move |p| (name.clone(), p.partition_index))
        })
        .collect();
    let wanted: Vec<TopicPartition> = tps.intersection(&existing).cloned().collect();
    s.list_offsets(&wanted, LATEST)
}

fn describe(c: &ClientArgs, groups: &[String]) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let mut out = Vec::new();
    for group in groups {
        let g = describe_group(&mut s, group)?;
        if g.state == "Dead" {
            return Err(AdminError::NotFound(format!(
                "group {group:?} does not exist (GROUP_ID_NOT_FOUND)"
            )));
        }
        let committed = committed(&mut s, group)?;
        let mut owner: BTreeMap<TopicPartition, &Member> = BTreeMap::new();
        for m in &g.members {
            for a in &m.assignment {
                for p in &a.partitions {
                    owner.insert((a.topic.clone(), *p), m);
                }
            }
        }
        let tps: BTreeSet<TopicPartition> = committed.keys().chain(owner.keys()).cloned().collect();
        let ends = log_end_offsets(&mut s, &tps)?;
        let offsets = tps
            .iter()
            .map(|tp| {
                let committed = committed.get(tp).copied();
                let end = ends.get(tp).copied();
                let m = owner.get(tp);
                OffsetRow {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    committed_offset: committed,
                    log_end_offset: end,
                    lag: committed.zip(end).map(|(c, e)| (e - c).max(0)),
                    member_id: m.map(|m| m.member_id.clone()),
                    client_id: m.map(|m| m.client_id.clone()),
                    client_host: m.map(|m| m.client_host.clone()),
                }
            })
            .collect();
        out.push(Described {
            group: group.clone(),
            state: g.state,
            protocol_type: g.protocol_type,
            protocol: g.protocol,
            coordinator: g.coordinator,
            members: g.members,
            offsets,
        });
    }
    emit(c.format, &out, || {
        out.iter().map(render_described).collect()
    })
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

fn render_described(d: &Described) -> String {
    let mut text = format!(
        "Group: {}  State: {}  Protocol: {}  Members: {}  Coordinator: {}\n",
        d.group,
        d.state,
        if d.protocol.is_empty() {
            "-"
        } else {
            &d.protocol
        },
        d.members.len(),
        d.coordinator
    );
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for r in &d.offsets {
        t.row(vec![
            r.topic.clone(),
            r.partition.to_string(),
            opt(&r.committed_offset),
            opt(&r.log_end_offset),
            opt(&r.lag),
            opt(&r.member_id),
            opt(&r.client_host),
            opt(&r.client_id),
        ]);
    }
    text.push_str(&t.render());
    if !d.members.is_empty() {
        let mut m = Table::new(&["CONSUMER-ID", "HOST", "CLIENT-ID", "ASSIGNMENT"]);
        for member in &d.members {
            let assignment: Vec<String> = member
                .assignment
                .iter()
                .map(|a| format!("{}:{}", a.topic, join(&a.partitions)))
                .collect();
            m.row(vec![
                member.member_id.clone(),
                member.client_host.clone(),
                member.client_id.clone(),
                if assignment.is_empty() {
                    "-".to_owned()
                } else {
                    assignment.join(" ")
                },
            ]);
        }
        text.push('\n');
        text.push_str(&m.render());
    }
    text
}

#[derive(Serialize)]
struct GroupDeleted {
    group: String,
}

fn delete(c: &ClientArgs, groups: &[String]) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let coordinators = s.coordinators(groups)?;
    let mut by_node: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (g, co) in groups.iter().zip(&coordinators) {
        by_node.entry(co.node_id.0).or_default().push(g.clone());
    }
    let mut out = Vec::new();
    for (node, names) in by_node {
        let req = DeleteGroupsRequest::default()
            .with_groups_names(names.iter().map(|g| GroupId(sb(g.as_str()))).collect());
        let resp: DeleteGroupsResponse =
            s.broker(node)?
                .call(ApiKey::DeleteGroups, versions::DELETE_GROUPS, &req)?;
        for r in resp.results {
            let name = r.group_id.0.to_string();
            if r.error_code == GROUP_ID_NOT_FOUND {
                return Err(AdminError::NotFound(format!(
                    "group {name:?} does not exist (GROUP_ID_NOT_FOUND)"
                )));
            }
            AdminError::check(r.error_code, None, format!("cannot delete group {name:?}"))?;
            out.push(GroupDeleted { group: name });
        }
    }
    emit(c.format, &out, || {
        out.iter()
            .map(|d| format!("Deleted group {:?}.\n", d.group))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as Tp;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn assignments_decode_and_garbage_is_empty() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![Tp::default()
            .with_topic(TopicName(sb("t")))
            .with_partitions(vec![0, 3])]);
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        a.encode(&mut buf, 1).unwrap();
        let got = decode_assignment(&buf.freeze());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].topic, "t");
        assert_eq!(got[0].partitions, vec![0, 3]);
        for garbage in [
            &[][..],
            &[0][..],
            &[0, 1, 0xff, 0xff, 0xff][..],
            &[0x7f; 40][..],
        ] {
            let _ = decode_assignment(&bytes::Bytes::copy_from_slice(garbage));
        }
    }
}
