//! The simulation's clients: admin commands proposed the way the broker proposes them — on
//! the node that leads, after `ensure_linearizable` (the production `Quorum::linearize`),
//! `Controller::propose` against that node's image, then `client_write` — and what each
//! acknowledged write guarantees ([`Expect`]).
//!
//! Owns the command mix and the names it has handed out: topic names are never reused, only
//! `tmp-` topics are ever deleted, config keys are only set, so every acknowledged effect is
//! monotone and can be checked at any later point of the history.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use openraft::ReadPolicy;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::check::{Ack, Expect};
use super::Cluster;
use crate::cluster::record::{BrokerRecord, MetadataRecord};
use crate::controller::{Command, ConfigOp, NewTopic};
use crate::quorum::Proposal;
use crate::runtime::sim;

/// Broker ids the workload registers, fences and unfences.
const BROKERS: i32 = 3;

/// Names and ids handed out, and what is known to be acknowledged.
pub struct Workload {
    rng: SmallRng,
    next: u64,
    /// Acknowledged non-`tmp-` topics and their acknowledged partition counts.
    topics: BTreeMap<String, i32>,
    /// Acknowledged `tmp-` topics, not yet deleted.
    tmp: Vec<String>,
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: SmallRng::seed_from_u64(seed),
            next: 0,
            topics: BTreeMap::new(),
            tmp: Vec::new(),
        }
    }

    fn name(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn pick_topic(&mut self) -> Option<(String, i32)> {
        if self.topics.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.topics.len());
        self.topics.iter().nth(i).map(|(n, c)| (n.clone(), *c))
    }

    /// The next command to try.
    pub fn command(&mut self) -> Command {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..=29 => self.create(false),
            30..=39 => self.create(true),
            40..=54 => match self.pick_topic() {
                Some((name, _)) => {
                    let key = format!("k{}", self.name(""));
                    Command::AlterConfigs {
                        name,
                        ops: vec![ConfigOp::Set(key, "v".into())],
                        replace: false,
                    }
                }
                None => self.create(false),
            },
            55..=64 => match self.pick_topic() {
                Some((name, count)) => Command::CreatePartitions {
                    name,
                    count: count + 1,
                    assignment: None,
                },
                None => Command::ReserveProducerIds,
            },
            65..=74 => Command::ReserveProducerIds,
            75..=79 if !self.tmp.is_empty() => {
                let i = self.rng.random_range(0..self.tmp.len());
                Command::DeleteTopic(self.tmp.swap_remove(i))
            }
            80..=85 => {
                let mut incarnation = [0u8; 16];
                self.rng.fill(&mut incarnation);
                let id = self.rng.random_range(1..=BROKERS);
                Command::RegisterBroker(BrokerRecord {
                    id,
                    incarnation,
                    host: format!("b{id}"),
                    port: 9092,
                    rack: None,
                    listeners: Vec::new(),
                })
            }
            86..=89 => Command::FenceBroker {
                id: self.rng.random_range(1..=BROKERS),
                epoch: None,
            },
            90..=97 => Command::UnfenceBroker {
                id: self.rng.random_range(1..=BROKERS),
            },
            _ => Command::InitCluster {
                cluster_id: "sim".into(),
            },
        }
    }

    fn create(&mut self, tmp: bool) -> Command {
        let mut id = [0u8; 16];
        self.rng.fill(&mut id);
        let partitions = self.rng.random_range(1..=3);
        Command::CreateTopic {
            topic: NewTopic {
                name: self.name(if tmp { "tmp-" } else { "t" }),
                partitions,
                replication_factor: 1,
                configs: BTreeMap::new(),
                assignment: None,
            },
            id,
        }
    }

    /// What `cmd`, carried out by `records`, guarantees once acknowledged.
    pub fn expect(cmd: &Command, records: &[MetadataRecord]) -> Expect {
        match cmd {
            Command::CreateTopic { topic, id } if !topic.name.starts_with("tmp-") => {
                Expect::Topic {
                    name: topic.name.clone(),
                    id: *id,
                }
            }
            Command::AlterConfigs { name, ops, .. } => match ops.first() {
                Some(ConfigOp::Set(key, value)) => Expect::Config {
                    topic: name.clone(),
                    key: key.clone(),
                    value: value.clone(),
                },
                _ => Expect::Nothing,
            },
            Command::CreatePartitions { name, count, .. } => Expect::PartitionsAtLeast {
                topic: name.clone(),
                count: *count,
            },
            Command::ReserveProducerIds => records
                .iter()
                .find_map(|r| match r {
                    MetadataRecord::ProducerIds { block_end } => {
                        Some(Expect::ProducerIdsAtLeast(*block_end))
                    }
                    _ => None,
                })
                .unwrap_or(Expect::Nothing),
            Command::DeleteTopic(name) => Expect::Gone { name: name.clone() },
            _ => Expect::Nothing,
        }
    }

    /// `cmd` was acknowledged.
    pub fn acked(&mut self, cmd: &Command) {
        match cmd {
            Command::CreateTopic { topic, .. } if topic.name.starts_with("tmp-") => {
                self.tmp.push(topic.name.clone())
            }
            Command::CreateTopic { topic, .. } => {
                self.topics.insert(topic.name.clone(), topic.partitions);
            }
            Command::CreatePartitions { name, count, .. } => {
                self.topics.insert(name.clone(), *count);
            }
            _ => {}
        }
    }
}

/// One client: proposes commands through whichever node leads until the cluster stops it.
pub async fn client(cluster: Rc<Cluster>, id: u64) {
    while !cluster.stopping() {
        let pause = cluster.draw(5..60);
        sim::sleep(Duration::from_millis(pause)).await;
        let Some((node, raft, controller)) = cluster.leader_handles() else {
            sim::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let linear = sim::timeout(
            Duration::from_secs(2),
            raft.ensure_linearizable(ReadPolicy::ReadIndex),
        )
        .await;
        if !matches!(linear, Ok(Ok(_))) {
            continue;
        }
        let cmd = cluster.workload.borrow_mut().command();
        let records = match controller.borrow().propose(&cmd) {
            Ok(r) if !r.is_empty() => r,
            _ => continue,
        };
        let expect = Workload::expect(&cmd, &records);
        let written = sim::timeout(
            Duration::from_secs(3),
            raft.client_write(Proposal { records }),
        )
        .await;
        match written {
            Ok(Ok(resp)) if !resp.data.skipped => {
                cluster.workload.borrow_mut().acked(&cmd);
                cluster.checker.borrow_mut().acked(Ack {
                    node,
                    last_offset: resp.data.last_offset,
                    expect,
                });
            }
            Ok(Ok(_)) => cluster.event("skipped", &[id, node]),
            _ => cluster.event("unacknowledged", &[id, node]),
        }
    }
}
