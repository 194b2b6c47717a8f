//! `sluice topic create|list|describe|delete|alter-config|add-partitions|elect-leaders|reassign|reassignments`.

use clap::{Args, Subcommand};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    TopicName,
};
use serde::Serialize;

use crate::client::{check_topic, sb, versions, Session, EARLIEST, LATEST};
use crate::output::{emit, join, Table};
use crate::{parse_key_value, AdminError, ClientArgs};

const RESOURCE_TOPIC: i8 = 2;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const UNKNOWN_TOPIC: i16 = 3;

#[derive(Debug, Args)]
pub struct TopicCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: TopicAction,
}

#[derive(Debug, Subcommand)]
pub enum TopicAction {
    /// Create a topic.
    Create {
        topic: String,
        /// Partition count (default: the broker's num.partitions).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// Topic config override, KEY=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics.
    List {
        /// Include internal topics (__consumer_offsets).
        #[arg(long)]
        internal: bool,
    },
    /// Partitions (leader, replicas, ISR, offsets) and configs of topics.
    Describe {
        #[arg(required = true)]
        topics: Vec<String>,
        /// A broker's metrics endpoint (HOST:PORT, its --metrics-listen): adds the dirty ratio
        /// of the compacted partitions that broker hosts (not part of the Kafka protocol).
        #[arg(long, value_name = "HOST:PORT")]
        metrics: Option<String>,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
        /// Succeed if a topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Set or delete topic config overrides.
    AlterConfig {
        topic: String,
        /// Set KEY=VALUE (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove the override of KEY, back to the broker default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic's partition count.
    #[command(group = clap::ArgGroup::new("how").required(true).args(["total", "add"]))]
    AddPartitions {
        topic: String,
        /// The new total partition count (Kafka's CreatePartitions semantics).
        #[arg(long)]
        total: Option<i32>,
        /// How many partitions to add to the current count.
        #[arg(long)]
        add: Option<i32>,
    },
    /// Move leadership back to preferred replicas (the first listed), or with --unclean give
    /// leaderless partitions any live replica (acknowledged writes it lacks are lost).
    ElectLeaders {
        /// Topics to elect for (all partitions of them); none: every partition of the cluster.
        topics: Vec<String>,
        /// Only this partition (with exactly one topic).
        #[arg(long)]
        partition: Option<i32>,
        /// Unclean election instead of preferred.
        #[arg(long)]
        unclean: bool,
    },
    /// Move a partition to other brokers: the new replicas copy the data, then the old ones
    /// are dropped (and leadership moves if its broker is dropped).
    #[command(group = clap::ArgGroup::new("what").required(true).args(["replicas", "cancel"]))]
    Reassign {
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The new replicas, preferred leader first (e.g. 2,0,1).
        #[arg(long, value_delimiter = ',')]
        replicas: Option<Vec<i32>>,
        /// Cancel the reassignment in progress.
        #[arg(long)]
        cancel: bool,
    },
    /// Reassignments in progress.
    Reassignments,
}

pub fn run(cmd: TopicCmd) -> Result<(), AdminError> {
    let c = &cmd.client;
    match cmd.action {
        TopicAction::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => create(
            c,
            &topic,
            partitions.unwrap_or(-1),
            replication_factor.unwrap_or(-1),
            &configs,
            if_not_exists,
        ),
        TopicAction::List { internal } => list(c, internal),
        TopicAction::Describe { topics, metrics } => describe(c, &topics, metrics.as_deref()),
        TopicAction::Delete { topics, if_exists } => delete(c, &topics, if_exists),
        TopicAction::AlterConfig { topic, set, delete } => alter_config(c, &topic, &set, &delete),
        TopicAction::AddPartitions { topic, total, add } => add_partitions(c, &topic, total, add),
        TopicAction::ElectLeaders {
            topics,
            partition,
            unclean,
        } => elect_leaders(c, &topics, partition, unclean),
        TopicAction::Reassign {
            topic,
            partition,
            replicas,
            cancel,
        } => reassign(c, &topic, partition, if cancel { None } else { replicas }),
        TopicAction::Reassignments => reassignments(c),
    }
}

#[derive(Serialize)]
struct Created {
    topic: String,
    topic_id: String,
    partitions: i32,
    replication_factor: i16,
    created: bool,
}

fn create(
    c: &ClientArgs,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[String],
    if_not_exists: bool,
) -> Result<(), AdminError> {
    let configs = configs
        .iter()
        .map(|kv| {
            parse_key_value(kv).map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(sb(k))
                    .with_value(Some(sb(v)))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if partitions == 0 || partitions < -1 {
        return Err(AdminError::Usage(format!(
            "--partitions must be at least 1, got {partitions}"
        )));
    }
    let mut s = c.session()?;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(configs)])
        .with_timeout_ms(timeout_i32(c));
    let resp: CreateTopicsResponse =
        controller(&mut s)?.call(ApiKey::CreateTopics, versions::CREATE_TOPICS, &req)?;
    let r = resp
        .topics
        .first()
        .ok_or_else(|| AdminError::Refused("CreateTopics answer has no topic".to_owned()))?;
    let exists = r.error_code == TOPIC_ALREADY_EXISTS;
    if !(exists && if_not_exists) {
        AdminError::check(
            r.error_code,
            r.error_message.as_deref(),
            format!("cannot create topic {topic:?}"),
        )?;
    }
    let out = Created {
        topic: topic.to_owned(),
        topic_id: r.topic_id.to_string(),
        partitions: r.num_partitions,
        replication_factor: r.replication_factor,
        created: !exists,
    };
    emit(c.format, &out, || {
        if exists {
            format!("Topic {topic:?} already exists.\n")
        } else {
            format!(
                "Created topic {topic:?} with {} partitions, replication factor {}.\n",
                out.partitions, out.replication_factor
            )
        }
    })
}

#[derive(Serialize)]
struct Listed {
    topic: String,
    topic_id: String,
    partitions: usize,
    replication_factor: usize,
    internal: bool,
}

fn list(c: &ClientArgs, internal: bool) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let md = s.metadata(None)?;
    let mut topics: Vec<Listed> = md
        .topics
        .iter()
        .filter(|t| internal || !t.is_internal)
        .filter(|t| t.error_code == 0)
        .map(|t| Listed {
            topic: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
            topic_id: t.topic_id.to_string(),
            partitions: t.partitions.len(),
            replication_factor: t.partitions.first().map_or(0, |p| p.replica_nodes.len()),
            internal: t.is_internal,
        })
        .collect();
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    emit(c.format, &topics, || {
        let mut t = Table::new(&["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"]);
        for l in &topics {
            t.row(vec![
                l.topic.clone(),
                l.partitions.to_string(),
                l.replication_factor.to_string(),
            ]);
        }
        t.render()
    })
}

#[derive(Serialize)]
struct PartitionInfo {
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    log_start_offset: i64,
    log_end_offset: i64,
    /// Compacted partitions, with `--metrics`: the cleaner's dirty ratio.
    #[serde(skip_serializing_if = "Option::is_none")]
    dirty_ratio: Option<f64>,
}

/// `sluice_partition_dirty_ratio` per (topic, partition) from a broker's `/metrics`.
fn dirty_ratios(addr: &str) -> Result<std::collections::HashMap<(String, i32), f64>, AdminError> {
    use std::io::{Read, Write};
    use std::time::Duration;
    let fail = |e: std::io::Error| AdminError::Io {
        addr: addr.to_owned(),
        reason: e.to_string(),
    };
    let sock = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| AdminError::Usage(format!("--metrics {addr}: {e}")))?;
    let mut s =
        std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut body = String::new();
    // Bounded: a metrics page is far smaller.
    s.take(64 << 20).read_to_string(&mut body).map_err(fail)?;
    let mut out = std::collections::HashMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("sluice_partition_dirty_ratio{topic=\"") else {
            continue;
        };
        let parsed = rest
            .split_once("\",partition=\"")
            .and_then(|(topic, rest)| {
                let (p, v) = rest.split_once("\"} ")?;
                Some(((topic.to_owned(), p.parse().ok()?), v.trim().parse().ok()?))
            });
        if let Some((k, v)) = parsed {
            out.insert(k, v);
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct ConfigEntry {
    name: String,
    value: Option<String>,
    source: &'static str,
    read_only: bool,
    sensitive: bool,
}

#[derive(Serialize)]
struct Described {
    topic: String,
    topic_id: String,
    internal: bool,
    partitions: Vec<PartitionInfo>,
    configs: Vec<ConfigEntry>,
}

fn describe(c: &ClientArgs, topics: &[String], metrics: Option<&str>) -> Result<(), AdminError> {
    let ratios = metrics.map(dirty_ratios).transpose()?.unwrap_or_default();
    let mut s = c.session()?;
    let md = s.metadata(Some(topics))?;
    let mut out = Vec::with_capacity(topics.len());
    for name in topics {
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .ok_or_else(|| AdminError::NotFound(format!("unknown topic {name:?}")))?;
        check_topic(t.error_code, name)?;
        let tps: Vec<_> = t
            .partitions
            .iter()
            .map(|p| (name.clone(), p.partition_index))
            .collect();
        let starts = s.list_offsets(&tps, EARLIEST)?;
        let ends = s.list_offsets(&tps, LATEST)?;
        let mut partitions: Vec<PartitionInfo> = t
            .partitions
            .iter()
            .map(|p| {
                let tp = (name.clone(), p.partition_index);
                PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    log_start_offset: starts.get(&tp).copied().unwrap_or(-1),
                    log_end_offset: ends.get(&tp).copied().unwrap_or(-1),
                    dirty_ratio: ratios.get(&tp).copied(),
                }
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        out.push(Described {
            topic: name.clone(),
            topic_id: t.topic_id.to_string(),
            internal: t.is_internal,
            partitions,
            configs: describe_configs(&mut s, name)?,
        });
    }
    emit(c.format, &out, || {
        let mut text = String::new();
        for d in &out {
            let overrides: Vec<String> = d
                .configs
                .iter()
                .filter(|e| e.source == "DYNAMIC_TOPIC_CONFIG")
                .map(|e| format!("{}={}", e.name, e.value.as_deref().unwrap_or("")))
                .collect();
            text.push_str(&format!(
                "Topic: {}  TopicId: {}  Partitions: {}  ReplicationFactor: {}  Configs: {}\n",
                d.topic,
                d.topic_id,
                d.partitions.len(),
                d.partitions.first().map_or(0, |p| p.replicas.len()),
                overrides.join(",")
            ));
            let dirty = d.partitions.iter().any(|p| p.dirty_ratio.is_some());
            let mut columns = vec![
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "ISR",
                "LOG-START-OFFSET",
                "LOG-END-OFFSET",
            ];
            if dirty {
                columns.push("DIRTY-RATIO");
            }
            let mut t = Table::new(&columns);
            for p in &d.partitions {
                let mut row = vec![
                    p.partition.to_string(),
                    p.leader.to_string(),
                    join(&p.replicas),
                    join(&p.isr),
                    p.log_start_offset.to_string(),
                    p.log_end_offset.to_string(),
                ];
                if dirty {
                    row.push(p.dirty_ratio.map_or("-".to_owned(), |r| format!("{r:.2}")));
                }
                t.row(row);
            }
            text.push_str(&t.render());
        }
        text
    })
}

fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

fn describe_configs(s: &mut Session, topic: &str) -> Result<Vec<ConfigEntry>, AdminError> {
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(sb(topic))
            .with_configuration_keys(None)]);
    let resp: DescribeConfigsResponse =
        s.bootstrap()
            .call(ApiKey::DescribeConfigs, versions::DESCRIBE_CONFIGS, &req)?;
    let mut out = Vec::new();
    for r in resp.results {
        AdminError::check(
            r.error_code,
            r.error_message.as_deref(),
            format!("DescribeConfigs {topic:?}"),
        )?;
        for e in r.configs {
            out.push(ConfigEntry {
                name: e.name.to_string(),
                value: e.value.map(|v| v.to_string()),
                source: source_name(e.config_source),
                read_only: e.read_only,
                sensitive: e.is_sensitive,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[derive(Serialize)]
struct Deleted {
    topic: String,
    deleted: bool,
}

fn delete(c: &ClientArgs, topics: &[String], if_exists: bool) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let req = DeleteTopicsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|t| DeleteTopicState::default().with_name(Some(TopicName(sb(t.as_str())))))
                .collect(),
        )
        .with_timeout_ms(timeout_i32(c));
    let resp: DeleteTopicsResponse =
        controller(&mut s)?.call(ApiKey::DeleteTopics, versions::DELETE_TOPICS, &req)?;
    let mut out = Vec::new();
    for r in &resp.responses {
        let name = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        let missing = r.error_code == UNKNOWN_TOPIC;
        if missing && !if_exists {
            return Err(AdminError::NotFound(format!(
                "unknown topic {name:?} (UNKNOWN_TOPIC_OR_PARTITION)"
            )));
        }
        if !missing {
            AdminError::check(
                r.error_code,
                r.error_message.as_deref(),
                format!("cannot delete topic {name:?}"),
            )?;
        }
        out.push(Deleted {
            topic: name,
            deleted: !missing,
        });
    }
    emit(c.format, &out, || {
        out.iter()
            .map(|d| {
                if d.deleted {
                    format!("Deleted topic {:?}.\n", d.topic)
                } else {
                    format!("Topic {:?} does not exist.\n", d.topic)
                }
            })
            .collect()
    })
}

#[derive(Serialize)]
struct Altered {
    topic: String,
    set: Vec<(String, String)>,
    deleted: Vec<String>,
}

fn alter_config(
    c: &ClientArgs,
    topic: &str,
    set: &[String],
    delete: &[String],
) -> Result<(), AdminError> {
    if set.is_empty() && delete.is_empty() {
        return Err(AdminError::Usage(
            "nothing to change: give --set KEY=VALUE and/or --delete KEY".to_owned(),
        ));
    }
    let set = set
        .iter()
        .map(|kv| parse_key_value(kv))
        .collect::<Result<Vec<_>, _>>()?;
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(sb(k.as_str()))
                .with_config_operation(0)
                .with_value(Some(sb(v.as_str())))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(sb(k.as_str()))
            .with_config_operation(1)
            .with_value(None)
    }));
    let mut s = c.session()?;
    // The broker answers for unknown topics with its own error; check first for a clear one.
    s.leaders(&[topic.to_owned()])?;
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(sb(topic))
            .with_configs(configs),
    ]);
    let resp: IncrementalAlterConfigsResponse = s.bootstrap().call(
        ApiKey::IncrementalAlterConfigs,
        versions::INCREMENTAL_ALTER_CONFIGS,
        &req,
    )?;
    for r in &resp.responses {
        AdminError::check(
            r.error_code,
            r.error_message.as_deref(),
            format!("cannot alter configs of topic {topic:?}"),
        )?;
    }
    let out = Altered {
        topic: topic.to_owned(),
        set,
        deleted: delete.to_vec(),
    };
    emit(c.format, &out, || {
        let mut text = String::new();
        for (k, v) in &out.set {
            text.push_str(&format!("Set {k}={v} on topic {topic:?}.\n"));
        }
        for k in &out.deleted {
            text.push_str(&format!("Removed override {k} of topic {topic:?}.\n"));
        }
        text
    })
}

#[derive(Serialize)]
struct Grown {
    topic: String,
    partitions_before: usize,
    partitions: i32,
}

fn add_partitions(
    c: &ClientArgs,
    topic: &str,
    total: Option<i32>,
    add: Option<i32>,
) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let current = s
        .leaders(&[topic.to_owned()])?
        .keys()
        .filter(|(t, _)| t == topic)
        .count();
    let total = match (total, add) {
        (Some(t), _) => t,
        (None, Some(a)) if a >= 1 => i32::try_from(current)
            .ok()
            .and_then(|n| n.checked_add(a))
            .ok_or_else(|| AdminError::Usage(format!("--add {a} overflows")))?,
        (None, a) => {
            return Err(AdminError::Usage(format!(
                "--add must be at least 1, got {}",
                a.unwrap_or(0)
            )))
        }
    };
    if usize::try_from(total).map_or(true, |t| t <= current) {
        return Err(AdminError::Usage(format!(
            "topic {topic:?} has {current} partitions; the new total must be larger, got {total}"
        )));
    }
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_count(total)
            .with_assignments(None)])
        .with_timeout_ms(timeout_i32(c));
    let resp: CreatePartitionsResponse =
        controller(&mut s)?.call(ApiKey::CreatePartitions, versions::CREATE_PARTITIONS, &req)?;
    for r in &resp.results {
        AdminError::check(
            r.error_code,
            r.error_message.as_deref(),
            format!("cannot add partitions to topic {topic:?}"),
        )?;
    }
    let out = Grown {
        topic: topic.to_owned(),
        partitions_before: current,
        partitions: total,
    };
    emit(c.format, &out, || {
        format!("Topic {topic:?} now has {total} partitions (was {current}).\n")
    })
}

#[derive(Serialize)]
struct Election {
    topic: String,
    partition: i32,
    /// Kafka's error name; `NONE` when a new leader was elected.
    result: String,
}

fn elect_leaders(
    c: &ClientArgs,
    topics: &[String],
    partition: Option<i32>,
    unclean: bool,
) -> Result<(), AdminError> {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
    if partition.is_some() && topics.len() != 1 {
        return Err(AdminError::Usage(
            "--partition needs exactly one topic".into(),
        ));
    }
    let mut s = c.session()?;
    let named = if topics.is_empty() {
        None
    } else {
        let leaders = s.leaders(topics)?;
        let mut out = Vec::new();
        for t in topics {
            let partitions: Vec<i32> = leaders
                .keys()
                .filter(|(name, p)| name == t && partition.is_none_or(|q| q == *p))
                .map(|(_, p)| *p)
                .collect();
            out.push(
                TopicPartitions::default()
                    .with_topic(TopicName(sb(t)))
                    .with_partitions(partitions),
            );
        }
        Some(out)
    };
    let req = ElectLeadersRequest::default()
        .with_election_type(i8::from(unclean))
        .with_topic_partitions(named)
        .with_timeout_ms(timeout_i32(c));
    let resp: ElectLeadersResponse =
        controller(&mut s)?.call(ApiKey::ElectLeaders, versions::ELECT_LEADERS, &req)?;
    AdminError::check(resp.error_code, None, "leader election failed".to_owned())?;
    let mut rows = Vec::new();
    for t in &resp.replica_election_results {
        for p in &t.partition_result {
            rows.push(Election {
                topic: t.topic.0.to_string(),
                partition: p.partition_id,
                result: crate::error_name(p.error_code),
            });
        }
    }
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    emit(c.format, &rows, || {
        if rows.is_empty() {
            return "No partition needed a new leader.\n".to_owned();
        }
        let mut t = Table::new(&["TOPIC", "PARTITION", "RESULT"]);
        for r in &rows {
            t.row(vec![
                r.topic.clone(),
                r.partition.to_string(),
                r.result.clone(),
            ]);
        }
        t.render()
    })
}

fn reassign(
    c: &ClientArgs,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
) -> Result<(), AdminError> {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    };
    let mut s = c.session()?;
    let cancel = replicas.is_none();
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(timeout_i32(c))
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(
                    replicas
                        .as_ref()
                        .map(|r| r.iter().map(|b| BrokerId(*b)).collect()),
                )])]);
    let resp: AlterPartitionReassignmentsResponse = controller(&mut s)?.call(
        ApiKey::AlterPartitionReassignments,
        versions::ALTER_PARTITION_REASSIGNMENTS,
        &req,
    )?;
    AdminError::check(
        resp.error_code,
        resp.error_message.as_deref(),
        "reassignment refused".to_owned(),
    )?;
    for t in &resp.responses {
        for p in &t.partitions {
            AdminError::check(
                p.error_code,
                p.error_message.as_deref(),
                format!("cannot reassign {topic}-{partition}"),
            )?;
        }
    }
    #[derive(Serialize)]
    struct Reassigned {
        topic: String,
        partition: i32,
        replicas: Option<Vec<i32>>,
    }
    let out = Reassigned {
        topic: topic.to_owned(),
        partition,
        replicas: replicas.clone(),
    };
    emit(c.format, &out, || {
        match &replicas {
        _ if cancel => format!("Reassignment of {topic}-{partition} cancelled.\n"),
        Some(r) => format!(
            "Reassigning {topic}-{partition} to {}; `sluice topic reassignments` shows it until the new replicas have caught up.\n",
            join(r)
        ),
        None => String::new(),
    }
    })
}

fn reassignments(c: &ClientArgs) -> Result<(), AdminError> {
    use kafka_protocol::messages::{
        ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    };
    #[derive(Serialize)]
    struct Ongoing {
        topic: String,
        partition: i32,
        replicas: Vec<i32>,
        adding: Vec<i32>,
        removing: Vec<i32>,
    }
    let mut s = c.session()?;
    let req = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(timeout_i32(c))
        .with_topics(None);
    let resp: ListPartitionReassignmentsResponse = controller(&mut s)?.call(
        ApiKey::ListPartitionReassignments,
        versions::LIST_PARTITION_REASSIGNMENTS,
        &req,
    )?;
    AdminError::check(
        resp.error_code,
        resp.error_message.as_deref(),
        "listing reassignments failed".to_owned(),
    )?;
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    let rows: Vec<Ongoing> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Ongoing {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                replicas: ids(&p.replicas),
                adding: ids(&p.adding_replicas),
                removing: ids(&p.removing_replicas),
            })
        })
        .collect();
    emit(c.format, &rows, || {
        if rows.is_empty() {
            return "No reassignment in progress.\n".to_owned();
        }
        let mut t = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
        for r in &rows {
            t.row(vec![
                r.topic.clone(),
                r.partition.to_string(),
                join(&r.replicas),
                join(&r.adding),
                join(&r.removing),
            ]);
        }
        t.render()
    })
}

fn controller(s: &mut Session) -> Result<&mut super::client::Conn, AdminError> {
    s.controller()
}

fn timeout_i32(c: &ClientArgs) -> i32 {
    i32::try_from(c.timeout_ms).unwrap_or(i32::MAX)
}
