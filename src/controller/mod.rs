//! The controller: a pure state machine that turns admin commands into metadata records.
//!
//! [`Controller::propose`] validates a [`Command`] against the image and returns the records
//! that carry it out (placement included); nothing changes until the driver has made them
//! durable and calls [`Controller::replay`]. No I/O, no clock, no randomness: ids come in the
//! commands. Its driver (`crate::shard::controller`, on shard 0) serialises commands, appends
//! the records to the metadata log and sends the new image to every shard.
//!
//! Must not touch: shards, files, the network.

use std::collections::BTreeMap;

pub mod liveness;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::cluster::image::{ApplyError, MetadataImage};
use crate::cluster::record::{BrokerRecord, MetadataRecord, PartitionRecord};
use crate::cluster::topic_config;
use crate::limits::{PARTITIONS_PER_TOPIC_MAX, TOPIC_NAME_BYTES_MAX};
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::scram::{Mechanism, ScramCredential};

/// Producer ids reserved (persisted) at a time, so most InitProducerId calls touch no disk.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// A topic to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1: broker default.
    pub partitions: i32,
    /// -1: broker default.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// Manual replica assignment: the replicas of each partition, in partition order (then
    /// `partitions` and `replication_factor` are -1, as Kafka requires).
    #[serde(default)]
    pub assignment: Option<Vec<Vec<i32>>>,
}

/// How a topic config change is applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
}

/// An admin change.
#[derive(Debug, Clone)]
pub enum Command {
    CreateTopic {
        topic: NewTopic,
        id: [u8; 16],
    },
    DeleteTopic(String),
    CreatePartitions {
        name: String,
        count: i32,
        /// Manual replica assignment of the new partitions.
        assignment: Option<Vec<Vec<i32>>>,
    },
    /// `replace`: the ops are the whole new set (legacy AlterConfigs).
    AlterConfigs {
        name: String,
        ops: Vec<ConfigOp>,
        replace: bool,
    },
    /// Reserve the next block of producer ids.
    ReserveProducerIds,
    /// Give a new cluster its id (no-op once it has one).
    InitCluster {
        cluster_id: String,
    },
    /// A broker (re)starts: a new incarnation replaces the old registration, fenced.
    RegisterBroker(BrokerRecord),
    /// A broker stopped heartbeating or shuts down: its leaderships move away. With an
    /// `epoch`, only that registration (a newer incarnation that registered meanwhile is not
    /// the one that went silent).
    FenceBroker {
        id: i32,
        epoch: Option<u64>,
    },
    /// A broker heartbeats again and has caught up: it leads what it can lead again.
    UnfenceBroker {
        id: i32,
    },
    /// A partition's leader changes its ISR (Kafka's AlterPartition), against the
    /// registration it last saw.
    AlterPartition(AlterPartition),
    /// ElectLeaders: give `partitions` (every partition: `None`) their preferred leader (the
    /// first replica, when live and in sync), or with `unclean`, a live replica to partitions
    /// that have none. Partitions that need nothing are skipped.
    ElectLeaders {
        partitions: Option<Vec<(String, i32)>>,
        unclean: bool,
    },
    /// AlterPartitionReassignments: (topic, partition, target replicas, or `None` to cancel);
    /// items that fail Kafka's checks are skipped.
    AlterReassignments(Vec<(String, i32, Option<Vec<i32>>)>),
    /// AlterUserScramCredentials: each user's changes, all or none of them; users whose
    /// changes fail Kafka's checks are skipped.
    AlterScram(Vec<(String, Vec<ScramChange>)>),
    /// CreateAcls: the bindings not stored yet are added.
    CreateAcls(Vec<AclBinding>),
    /// DeleteAcls: every binding some filter matches is removed.
    DeleteAcls(Vec<AclFilter>),
    /// AlterClientQuotas: each (entity, key) set to the value, or removed (`None`).
    AlterClientQuotas(Vec<QuotaChange>),
    /// UpdateFeatures: every update checked (`crate::cluster::features::check`), all applied
    /// or none. With `bootstrap`, only features the cluster never finalized are set (a node's
    /// start), unchecked against a level.
    UpdateFeatures {
        updates: Vec<crate::cluster::features::FeatureUpdate>,
        bootstrap: bool,
    },
}

/// One client quota change: (entity, key, new value or `None` to remove).
pub type QuotaChange = (
    crate::security::quota::QuotaEntity,
    String,
    Option<crate::security::quota::QuotaValue>,
);

/// One change of a user's SCRAM credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScramChange {
    Upsert {
        mechanism: Mechanism,
        credential: ScramCredential,
    },
    Delete {
        mechanism: Mechanism,
    },
}

/// An ISR change from a partition's leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartition {
    pub topic_id: [u8; 16],
    pub partition: i32,
    /// The broker asking: it must be the leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// An operation's failure, as Kafka reports it (sent between brokers as its error code).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "WireError", try_from = "WireError")]
pub struct OpError {
    pub error: ResponseError,
    pub message: String,
}

impl OpError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> OpError {
        OpError {
            error,
            message: message.into(),
        }
    }
}

pub type OpResult<T> = Result<T, OpError>;

#[derive(Serialize, Deserialize)]
struct WireError {
    code: i16,
    message: String,
}

impl From<OpError> for WireError {
    fn from(e: OpError) -> WireError {
        WireError {
            code: e.error.code(),
            message: e.message,
        }
    }
}

impl TryFrom<WireError> for OpError {
    type Error = String;

    fn try_from(w: WireError) -> Result<OpError, String> {
        let error = ResponseError::try_from_code(w.code)
            .ok_or_else(|| format!("unknown error code {}", w.code))?;
        Ok(OpError::new(error, w.message))
    }
}

/// What the controller needs to know of its cluster.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `num.partitions`: partitions of a topic created without a count.
    pub default_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// Node ids of the brokers partitions may be placed on while none has registered (a single
    /// node); once brokers register, the unfenced ones are used.
    pub brokers: Vec<i32>,
    /// `min.insync.replicas` of topics without an override (for eligible leader replicas).
    pub min_insync_replicas: i32,
}

/// The controller's state: the image as of the last record replayed, and the producer ids.
pub struct Controller {
    config: ControllerConfig,
    image: MetadataImage,
    /// The block of producer ids this controller reserved itself, `next..end` (empty at
    /// start). Another controller reserves only past the persisted block end, so ids of this
    /// block are never handed out by anyone else, whoever leads in between.
    producer_id_next: i64,
    producer_id_end: i64,
}

/// Kafka's rule: 1–249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> OpResult<()> {
    let legal = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX || !legal || name == "." || name == ".."
    {
        return Err(OpError::new(
            ResponseError::InvalidTopicException,
            format!("topic name {name:?} is illegal: 1-{TOPIC_NAME_BYTES_MAX} characters of [a-zA-Z0-9._-], not '.' or '..'"),
        ));
    }
    Ok(())
}

/// Internal topics (`__consumer_offsets`, and any added later) are the broker's: clients may not
/// delete them or change their partition count (groups are routed by that count), as Kafka
/// refuses appends and DeleteRecords to them with INVALID_TOPIC_EXCEPTION.
pub fn refuse_internal(image: &MetadataImage, name: &str, what: &str) -> OpResult<()> {
    match image.topic(name) {
        Some(t) if t.internal => Err(OpError::new(
            ResponseError::InvalidTopicException,
            format!("internal topic '{name}' cannot be {what}"),
        )),
        _ => Ok(()),
    }
}

fn unknown_topic(name: &str) -> OpError {
    OpError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic '{name}' does not exist"),
    )
}

/// Replicas of partitions `first..first + count` of a topic: Kafka's round robin over the
/// brokers, each partition's replicas on consecutive brokers starting at its own. `brokers`
/// must not be empty and `replication` must be at most its length (callers check both).
pub fn place(brokers: &[i32], first: i32, count: i32, replication: usize) -> Vec<Vec<i32>> {
    (first..first + count)
        .map(|p| {
            (0..replication)
                .map(|r| brokers[(p as usize + r) % brokers.len()])
                .collect()
        })
        .collect()
}

impl Controller {
    pub fn new(config: ControllerConfig, image: MetadataImage) -> Controller {
        Controller {
            config,
            image,
            producer_id_next: 0,
            producer_id_end: 0,
        }
    }

    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Replaces the image (a replicated change applied, or a snapshot installed).
    pub fn reset_image(&mut self, image: MetadataImage) {
        self.image = image;
    }

    /// Applies records made durable at offsets `first..`.
    pub fn replay(&mut self, first: u64, records: &[MetadataRecord]) -> Result<(), ApplyError> {
        for (i, r) in records.iter().enumerate() {
            self.image.apply(first + i as u64, r)?;
        }
        Ok(())
    }

    /// Validates `cmd`; the records that carry it out.
    pub fn propose(&self, cmd: &Command) -> OpResult<Vec<MetadataRecord>> {
        match cmd {
            Command::CreateTopic { topic, id } => self.create_topic(topic, *id),
            Command::DeleteTopic(name) => {
                refuse_internal(&self.image, name, "deleted")?;
                let t = self.image.topic(name).ok_or_else(|| unknown_topic(name))?;
                Ok(vec![MetadataRecord::RemoveTopic { topic_id: t.id }])
            }
            Command::CreatePartitions {
                name,
                count,
                assignment,
            } => self.create_partitions(name, *count, assignment.as_deref()),
            Command::AlterConfigs { name, ops, replace } => self.alter_configs(name, ops, *replace),
            Command::ReserveProducerIds => Ok(vec![MetadataRecord::ProducerIds {
                block_end: self.image.producer_id_block_end + PRODUCER_ID_BLOCK,
            }]),
            Command::InitCluster { cluster_id } => Ok(if self.image.cluster_id.is_empty() {
                vec![MetadataRecord::Cluster {
                    cluster_id: cluster_id.clone(),
                }]
            } else {
                vec![]
            }),
            Command::RegisterBroker(b) => {
                let mut out = Vec::new();
                if let Some(old) = self.image.brokers.get(&b.id) {
                    if old.record.incarnation == b.incarnation {
                        return Ok(out);
                    }
                    if !old.fenced {
                        out.extend(self.leadership_away(b.id));
                    }
                }
                out.push(MetadataRecord::RegisterBroker(b.clone()));
                Ok(out)
            }
            Command::FenceBroker { id, epoch } => match self.image.brokers.get(id) {
                Some(b) if !b.fenced && epoch.is_none_or(|e| e == b.epoch) => {
                    let mut out = vec![MetadataRecord::FenceBroker {
                        id: *id,
                        epoch: b.epoch,
                    }];
                    out.extend(self.leadership_away(*id));
                    Ok(out)
                }
                _ => Ok(vec![]),
            },
            Command::UnfenceBroker { id } => match self.image.brokers.get(id) {
                Some(b) if b.fenced => {
                    let mut out = vec![MetadataRecord::UnfenceBroker {
                        id: *id,
                        epoch: b.epoch,
                    }];
                    out.extend(self.leadership_back(*id));
                    Ok(out)
                }
                _ => Ok(vec![]),
            },
            Command::AlterPartition(a) => self.alter_partition(a),
            Command::ElectLeaders {
                partitions,
                unclean,
            } => Ok(self
                .elections(partitions.as_deref(), *unclean)
                .into_iter()
                .filter_map(|(_, _, r)| r.ok())
                .collect()),
            Command::AlterReassignments(items) => Ok(self
                .reassignments(items)
                .into_iter()
                .filter_map(|(_, _, r)| r.ok())
                .collect()),
            Command::CreateAcls(bindings) => {
                let mut seen = std::collections::BTreeSet::new();
                Ok(bindings
                    .iter()
                    .filter(|b| !self.image.acls.contains(*b) && seen.insert(*b))
                    .cloned()
                    .map(MetadataRecord::Acl)
                    .collect())
            }
            Command::DeleteAcls(filters) => Ok(self
                .image
                .acls
                .iter()
                .filter(|b| filters.iter().any(|f| f.matches(b)))
                .cloned()
                .map(MetadataRecord::RemoveAcl)
                .collect()),
            Command::AlterClientQuotas(changes) => Ok(changes
                .iter()
                .map(|(entity, key, value)| MetadataRecord::ClientQuota {
                    entity: entity.clone(),
                    key: key.clone(),
                    value: *value,
                })
                .collect()),
            Command::UpdateFeatures { updates, bootstrap } => {
                crate::cluster::features::plan(&self.image.features, updates, *bootstrap)
                    .map(|levels| {
                        levels
                            .into_iter()
                            .map(|(name, level)| MetadataRecord::FeatureLevel { name, level })
                            .collect()
                    })
                    .map_err(|why| OpError::new(ResponseError::InvalidUpdateVersion, why))
            }
            Command::AlterScram(users) => Ok(self
                .scram_alterations(users)
                .into_iter()
                .filter_map(|(_, r)| r.ok())
                .flatten()
                .collect()),
        }
    }

    /// Per user: the records of its SCRAM changes, or why none apply (Kafka's
    /// RESOURCE_NOT_FOUND for deleting a credential that does not exist).
    pub fn scram_alterations(
        &self,
        users: &[(String, Vec<ScramChange>)],
    ) -> Vec<(String, OpResult<Vec<MetadataRecord>>)> {
        users
            .iter()
            .map(|(user, changes)| {
                let records = changes
                    .iter()
                    .map(|c| match c {
                        ScramChange::Upsert {
                            mechanism,
                            credential,
                        } => Ok(MetadataRecord::ScramCredential {
                            user: user.clone(),
                            mechanism: *mechanism,
                            credential: credential.clone(),
                        }),
                        ScramChange::Delete { mechanism } => {
                            match self.image.scram_credential(user, *mechanism) {
                                Some(_) => Ok(MetadataRecord::RemoveScramCredential {
                                    user: user.clone(),
                                    mechanism: *mechanism,
                                }),
                                None => Err(OpError::new(
                                    ResponseError::ResourceNotFound,
                                    format!(
                                        "attempt to delete a {} credential of {user}, who has none",
                                        mechanism.name()
                                    ),
                                )),
                            }
                        }
                    })
                    .collect::<OpResult<Vec<_>>>();
                (user.clone(), records)
            })
            .collect()
    }

    /// Per partition named (all, with `None`): the record that elects its leader, or why no
    /// election happens (Kafka's ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION).
    pub fn elections(
        &self,
        partitions: Option<&[(String, i32)]>,
        unclean: bool,
    ) -> Vec<(String, i32, Result<MetadataRecord, ResponseError>)> {
        let named: Vec<(String, i32)> = match partitions {
            Some(p) => p.to_vec(),
            None => self
                .image
                .topics
                .values()
                .flat_map(|t| (0..t.partition_count()).map(|i| (t.name.clone(), i)))
                .collect(),
        };
        named
            .into_iter()
            .map(|(topic, index)| {
                let r = self.election(&topic, index, unclean);
                (topic, index, r)
            })
            .collect()
    }

    fn election(
        &self,
        topic: &str,
        index: i32,
        unclean: bool,
    ) -> Result<MetadataRecord, ResponseError> {
        let t = self
            .image
            .topic(topic)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let p = t
            .partitions
            .get(index as usize)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let (leader, isr) = if unclean {
            if p.leader >= 0 {
                return Err(ResponseError::ElectionNotNeeded);
            }
            let live = |r: &i32| self.image.is_live(*r);
            match p.isr.iter().find(|r| live(r)) {
                Some(&r) => (r, p.isr.clone()),
                None => match p.elr.iter().find(|r| live(r)) {
                    Some(&e) => (e, vec![e]),
                    None => {
                        let r = *p
                            .replicas
                            .iter()
                            .find(|r| live(r))
                            .ok_or(ResponseError::EligibleLeadersNotAvailable)?;
                        (r, vec![r])
                    }
                },
            }
        } else {
            let preferred = *p
                .replicas
                .first()
                .ok_or(ResponseError::PreferredLeaderNotAvailable)?;
            if p.leader == preferred {
                return Err(ResponseError::ElectionNotNeeded);
            }
            if !self.image.is_live(preferred) || !p.isr.contains(&preferred) {
                return Err(ResponseError::PreferredLeaderNotAvailable);
            }
            (preferred, p.isr.clone())
        };
        Ok(MetadataRecord::Partition(PartitionRecord {
            elr: self.elr_after(t, p, leader, &isr),
            isr,
            leader,
            leader_epoch: p.leader_epoch + 1,
            partition_epoch: p.partition_epoch + 1,
            ..p.record(t.id, index)
        }))
    }

    /// Kafka's AlterPartition checks: the sender leads at that leader epoch, the change is
    /// against the current partition epoch, the leader stays in the ISR, and every new member
    /// is a live replica.
    fn alter_partition(&self, a: &AlterPartition) -> OpResult<Vec<MetadataRecord>> {
        let e = |error, m: &str| Err(OpError::new(error, m));
        let Some(t) = self.image.topic_by_id(&a.topic_id) else {
            return e(ResponseError::UnknownTopicId, "unknown topic id");
        };
        let Some(p) = t.partitions.get(a.partition as usize) else {
            return e(ResponseError::UnknownTopicOrPartition, "unknown partition");
        };
        if p.leader != a.leader {
            return e(
                ResponseError::NotLeaderOrFollower,
                "not the partition's leader",
            );
        }
        if p.leader_epoch != a.leader_epoch {
            return e(ResponseError::FencedLeaderEpoch, "stale leader epoch");
        }
        if p.partition_epoch != a.partition_epoch {
            return e(ResponseError::InvalidUpdateVersion, "stale partition epoch");
        }
        if !a.isr.contains(&a.leader) {
            return e(
                ResponseError::InvalidRequest,
                "the ISR must hold the leader",
            );
        }
        let ineligible = a
            .isr
            .iter()
            .any(|r| !p.replicas.contains(r) || (!p.isr.contains(r) && !self.image.is_live(*r)));
        if ineligible {
            return e(
                ResponseError::IneligibleReplica,
                "an added ISR member is not a live replica",
            );
        }
        if a.isr == p.isr {
            return Ok(vec![]);
        }
        let changed = PartitionRecord {
            isr: a.isr.clone(),
            elr: self.next_elr(t, p, &a.isr),
            partition_epoch: p.partition_epoch + 1,
            ..p.record(t.id, a.partition)
        };
        Ok(vec![MetadataRecord::Partition(
            self.maybe_finish_reassignment(changed),
        )])
    }

    /// A reassignment whose added replicas are all in sync is done: the replicas become the
    /// target (the removed ones leave replicas and ISR), and if the leader is among the
    /// removed, the first in-sync replica of the target leads with a new epoch.
    fn maybe_finish_reassignment(&self, mut r: PartitionRecord) -> PartitionRecord {
        let pending = !r.adding_replicas.is_empty() || !r.removing_replicas.is_empty();
        if !pending || !r.adding_replicas.iter().all(|a| r.isr.contains(a)) {
            return r;
        }
        let target: Vec<i32> = r
            .replicas
            .iter()
            .copied()
            .filter(|x| !r.removing_replicas.contains(x))
            .collect();
        let isr: Vec<i32> = r
            .isr
            .iter()
            .copied()
            .filter(|x| target.contains(x))
            .collect();
        if isr.is_empty() {
            return r;
        }
        if !target.contains(&r.leader) {
            let next = target
                .iter()
                .copied()
                .find(|x| isr.contains(x) && self.image.is_live(*x))
                .unwrap_or(-1);
            r.leader = next;
            r.leader_epoch += 1;
        }
        r.elr.retain(|x| target.contains(x));
        r.replicas = target;
        r.isr = isr;
        r.adding_replicas.clear();
        r.removing_replicas.clear();
        r
    }

    /// AlterPartitionReassignments: per (topic, partition, target replicas or `None` to
    /// cancel), the record that starts (or, with nothing to add, finishes) or cancels the
    /// reassignment, or why not (Kafka's codes).
    pub fn reassignments(
        &self,
        items: &[(String, i32, Option<Vec<i32>>)],
    ) -> Vec<(String, i32, OpResult<MetadataRecord>)> {
        items
            .iter()
            .map(|(topic, index, target)| {
                let r = self.reassignment(topic, *index, target.as_deref());
                (topic.clone(), *index, r)
            })
            .collect()
    }

    fn reassignment(
        &self,
        topic: &str,
        index: i32,
        target: Option<&[i32]>,
    ) -> OpResult<MetadataRecord> {
        let t = self
            .image
            .topic(topic)
            .ok_or_else(|| unknown_topic(topic))?;
        let p = t.partitions.get(index as usize).ok_or_else(|| {
            OpError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("'{topic}' has no partition {index}"),
            )
        })?;
        let in_progress = !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty();
        let base = PartitionRecord {
            partition_epoch: p.partition_epoch + 1,
            ..p.record(t.id, index)
        };
        let Some(target) = target else {
            if !in_progress {
                return Err(OpError::new(
                    ResponseError::NoReassignmentInProgress,
                    "no reassignment in progress",
                ));
            }
            // Cancel: back to the replicas before it (the added ones leave).
            let r = PartitionRecord {
                removing_replicas: p.adding_replicas.clone(),
                adding_replicas: Vec::new(),
                ..base
            };
            return Ok(MetadataRecord::Partition(self.maybe_finish_reassignment(r)));
        };
        self.check_assignment(&[target.to_vec()])?;
        let original: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|x| !p.adding_replicas.contains(x))
            .collect();
        if target == original.as_slice() && !in_progress {
            return Err(OpError::new(
                ResponseError::InvalidReplicaAssignment,
                "the partition already has these replicas",
            ));
        }
        // Kafka's order: the target first, then the replicas on their way out.
        let mut replicas = target.to_vec();
        replicas.extend(original.iter().copied().filter(|x| !target.contains(x)));
        let r = PartitionRecord {
            replicas,
            adding_replicas: target
                .iter()
                .copied()
                .filter(|x| !original.contains(x))
                .collect(),
            removing_replicas: original
                .iter()
                .copied()
                .filter(|x| !target.contains(x))
                .collect(),
            ..base
        };
        Ok(MetadataRecord::Partition(self.maybe_finish_reassignment(r)))
    }

    /// Takes the block ending at `block_end` as this controller's own: call once its
    /// [`Command::ReserveProducerIds`] is applied (the image's block end is then `block_end`).
    pub fn claim_producer_ids(&mut self, block_end: i64) {
        self.producer_id_next = block_end - PRODUCER_ID_BLOCK;
        self.producer_id_end = block_end;
    }

    /// Brokers new replicas may be placed on, interleaved by rack (Kafka's rack-aware
    /// assignment: consecutive brokers are on different racks where racks allow).
    pub fn placement_brokers(&self) -> Vec<i32> {
        if self.image.brokers.is_empty() {
            return self.config.brokers.clone();
        }
        let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
        for b in self.image.live_brokers() {
            by_rack.entry(b.rack.as_deref()).or_default().push(b.id);
        }
        let racks: Vec<Vec<i32>> = by_rack.into_values().collect();
        let longest = racks.iter().map(Vec::len).max().unwrap_or(0);
        (0..longest)
            .flat_map(|i| racks.iter().filter_map(move |r| r.get(i).copied()))
            .collect()
    }

    /// Partition changes for broker `id` going away: partitions it leads get another live
    /// in-sync replica as leader, or none (-1: offline, never an out-of-sync replica); it
    /// leaves every ISR that keeps another member (Kafka keeps the last one, to know who may
    /// lead again).
    ///
    /// Only when the topic sets `unclean.leader.election.enable` and no in-sync replica is
    /// live does a live out-of-sync replica take over (it becomes the whole ISR: what it holds
    /// is now the partition, and acknowledged writes it lacks are lost, as the setting says).
    fn leadership_away(&self, id: i32) -> Vec<MetadataRecord> {
        self.partition_changes(|t, p| {
            if !p.isr.contains(&id) && p.leader != id {
                return None;
            }
            let isr: Vec<i32> = p.isr.iter().copied().filter(|r| *r != id).collect();
            let isr = if isr.is_empty() { vec![id] } else { isr };
            if p.leader != id {
                return Some((p.leader, isr));
            }
            let clean = isr
                .iter()
                .copied()
                .find(|r| *r != id && self.image.is_live(*r));
            if let Some(leader) = clean {
                return Some((leader, isr));
            }
            // KIP-966: no live in-sync replica, but a live eligible one holds everything
            // committed.
            if let Some(e) = p
                .elr
                .iter()
                .copied()
                .find(|r| *r != id && self.image.is_live(*r))
            {
                return Some((e, vec![e]));
            }
            let unclean = t
                .configs
                .get("unclean.leader.election.enable")
                .is_some_and(|v| v == "true");
            match p
                .replicas
                .iter()
                .copied()
                .find(|r| *r != id && self.image.is_live(*r))
            {
                Some(r) if unclean => Some((r, vec![r])),
                _ => Some((-1, isr)),
            }
        })
    }

    /// Partition changes for broker `id` coming back: offline partitions whose ISR holds it
    /// are led by it again, and so are those whose eligible leader replicas hold it (it becomes
    /// the ISR).
    fn leadership_back(&self, id: i32) -> Vec<MetadataRecord> {
        self.partition_changes(|_, p| {
            if p.leader != -1 || !p.replicas.contains(&id) {
                return None;
            }
            if p.isr.contains(&id) {
                Some((id, p.isr.clone()))
            } else {
                p.elr.contains(&id).then(|| (id, vec![id]))
            }
        })
    }

    /// The topic's `min.insync.replicas`, at most its replication factor.
    fn min_isr(&self, t: &crate::cluster::image::TopicMeta, replicas: usize) -> usize {
        t.configs
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(self.config.min_insync_replicas.max(1) as usize)
            .clamp(1, replicas.max(1))
    }

    /// [`Controller::next_elr`], except after an unclean election (a leader from neither the
    /// ISR nor the ELR), which voids every guarantee: no eligible replicas then.
    fn elr_after(
        &self,
        t: &crate::cluster::image::TopicMeta,
        p: &crate::cluster::image::PartitionRegistration,
        leader: i32,
        isr: &[i32],
    ) -> Vec<i32> {
        let unclean = leader >= 0 && !p.isr.contains(&leader) && !p.elr.contains(&leader);
        if unclean {
            Vec::new()
        } else {
            self.next_elr(t, p, isr)
        }
    }

    /// The eligible leader replicas once partition `p`'s ISR becomes `isr` (KIP-966): none
    /// while the ISR is at least `min.insync.replicas` (the high watermark moves again, so
    /// replicas outside it may lack committed data); below it, the earlier ones plus those
    /// leaving the ISR now, minus the ISR.
    fn next_elr(
        &self,
        t: &crate::cluster::image::TopicMeta,
        p: &crate::cluster::image::PartitionRegistration,
        isr: &[i32],
    ) -> Vec<i32> {
        if isr.len() >= self.min_isr(t, p.replicas.len()) {
            return Vec::new();
        }
        let mut elr: Vec<i32> = p
            .elr
            .iter()
            .chain(p.isr.iter())
            .copied()
            .filter(|r| !isr.contains(r) && p.replicas.contains(r))
            .collect();
        elr.sort_unstable();
        elr.dedup();
        elr
    }

    /// Records for every partition `change` returns a new (leader, isr) for; epochs bumped.
    fn partition_changes(
        &self,
        change: impl Fn(
            &crate::cluster::image::TopicMeta,
            &crate::cluster::image::PartitionRegistration,
        ) -> Option<(i32, Vec<i32>)>,
    ) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for t in self.image.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some((leader, isr)) = change(t, p) else {
                    continue;
                };
                if leader == p.leader && isr == p.isr {
                    continue;
                }
                out.push(MetadataRecord::Partition(PartitionRecord {
                    elr: self.elr_after(t, p, leader, &isr),
                    isr,
                    leader,
                    leader_epoch: p.leader_epoch + i32::from(leader != p.leader),
                    partition_epoch: p.partition_epoch + 1,
                    ..p.record(t.id, i as i32)
                }));
            }
        }
        out
    }

    /// Hands out the next producer id of the reserved block; `None` when the block is used up
    /// (propose [`Command::ReserveProducerIds`], then ask again).
    pub fn next_producer_id(&mut self) -> Option<i64> {
        let id = self.producer_id_next;
        if id >= self.producer_id_end {
            return None;
        }
        self.producer_id_next += 1;
        Some(id)
    }

    /// The partition count `t` would get, after validation.
    pub fn check_new_topic(&self, t: &NewTopic) -> OpResult<(i32, usize)> {
        validate_topic_name(&t.name)?;
        if self.image.topic(&t.name).is_some() {
            return Err(OpError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{}' already exists", t.name),
            ));
        }
        if let Some(a) = &t.assignment {
            if t.partitions != -1 || t.replication_factor != -1 {
                return Err(OpError::new(
                    ResponseError::InvalidRequest,
                    "with a replica assignment, the partition count and replication factor must be -1",
                ));
            }
            let rf = self.check_assignment(a)?;
            for (k, v) in &t.configs {
                topic_config::validate(k, v)
                    .map_err(|e| OpError::new(ResponseError::InvalidConfig, e.to_string()))?;
            }
            return Ok((a.len() as i32, rf));
        }
        let partitions = if t.partitions == -1 {
            self.config.default_partitions
        } else {
            t.partitions
        };
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(OpError::new(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}, got {partitions}"),
            ));
        }
        let replication = if t.replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            t.replication_factor
        };
        let brokers = self.placement_brokers().len();
        if replication < 1 || replication as usize > brokers {
            return Err(OpError::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {replication} is not between 1 and the {brokers} available broker(s)"
                ),
            ));
        }
        for (k, v) in &t.configs {
            topic_config::validate(k, v)
                .map_err(|e| OpError::new(ResponseError::InvalidConfig, e.to_string()))?;
        }
        Ok((partitions, replication as usize))
    }

    fn create_topic(&self, t: &NewTopic, id: [u8; 16]) -> OpResult<Vec<MetadataRecord>> {
        let (partitions, replication) = self.check_new_topic(t)?;
        if self.image.topic_by_id(&id).is_some() {
            return Err(OpError::new(
                ResponseError::TopicAlreadyExists,
                "topic id already in use; retry",
            ));
        }
        let mut out = vec![MetadataRecord::Topic {
            name: t.name.clone(),
            topic_id: id,
            internal: t.name.starts_with("__"),
        }];
        let replicas = match &t.assignment {
            Some(a) => a.clone(),
            None => self.placements(id, 0, partitions, replication),
        };
        out.extend(self.partition_records(id, 0, replicas));
        out.extend(t.configs.iter().map(|(k, v)| MetadataRecord::Config {
            topic: t.name.clone(),
            key: k.clone(),
            value: Some(v.clone()),
        }));
        Ok(out)
    }

    /// Replicas for partitions `first..first + count` placed by the controller.
    fn placements(
        &self,
        id: [u8; 16],
        first: i32,
        count: i32,
        replication: usize,
    ) -> Vec<Vec<i32>> {
        let mut brokers = self.placement_brokers();
        if !self.image.brokers.is_empty() && !brokers.is_empty() {
            // Kafka starts each topic's round robin at a random broker, so partition 0 of
            // every topic does not land on the same one; the topic id is random already.
            let start = id[0] as usize % brokers.len();
            brokers.rotate_left(start);
        }
        place(&brokers, first, count, replication)
    }

    /// Partition records for `replicas` (one list per partition from `first`): the first live
    /// replica leads (the first listed when none has registered); every live replica is in
    /// the ISR (all are empty, so all are caught up), as in Kafka.
    fn partition_records(
        &self,
        id: [u8; 16],
        first: i32,
        replicas: Vec<Vec<i32>>,
    ) -> impl Iterator<Item = MetadataRecord> + '_ {
        replicas
            .into_iter()
            .zip(first..)
            .map(move |(replicas, partition)| {
                let leader = if self.image.brokers.is_empty() {
                    replicas[0]
                } else {
                    replicas
                        .iter()
                        .copied()
                        .find(|r| self.image.is_live(*r))
                        .unwrap_or(replicas[0])
                };
                let mut isr: Vec<i32> = replicas
                    .iter()
                    .copied()
                    .filter(|r| self.image.brokers.is_empty() || self.image.is_live(*r))
                    .collect();
                if !isr.contains(&leader) {
                    isr = vec![leader];
                }
                MetadataRecord::Partition(PartitionRecord {
                    topic_id: id,
                    partition,
                    leader,
                    isr,
                    replicas,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    ..PartitionRecord::default()
                })
            })
    }

    /// Validates a manual replica assignment; its replication factor. Kafka's rules: every
    /// partition has the same number of replicas, no broker twice, every broker registered,
    /// and at least one of each partition's replicas live.
    fn check_assignment(&self, assignment: &[Vec<i32>]) -> OpResult<usize> {
        let bad = |m: String| OpError::new(ResponseError::InvalidReplicaAssignment, m);
        let rf = assignment.first().map_or(0, Vec::len);
        if assignment.is_empty() || rf == 0 {
            return Err(bad("the replica assignment is empty".into()));
        }
        if assignment.len() > PARTITIONS_PER_TOPIC_MAX as usize {
            return Err(OpError::new(
                ResponseError::InvalidPartitions,
                format!("at most {PARTITIONS_PER_TOPIC_MAX} partitions per topic"),
            ));
        }
        let known = |id: i32| {
            if self.image.brokers.is_empty() {
                self.config.brokers.contains(&id)
            } else {
                self.image.brokers.contains_key(&id)
            }
        };
        let live = |id: i32| self.image.brokers.is_empty() && known(id) || self.image.is_live(id);
        for (p, replicas) in assignment.iter().enumerate() {
            if replicas.len() != rf {
                return Err(bad(format!(
                    "partition {p} has {} replicas, partition 0 has {rf}",
                    replicas.len()
                )));
            }
            let mut seen = replicas.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != rf {
                return Err(bad(format!(
                    "partition {p} lists a broker twice: {replicas:?}"
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !known(**b)) {
                return Err(bad(format!("broker {b} (partition {p}) is not registered")));
            }
            if !replicas.iter().any(|b| live(*b)) {
                return Err(bad(format!("every replica of partition {p} is fenced")));
            }
        }
        Ok(rf)
    }

    fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<&[Vec<i32>]>,
    ) -> OpResult<Vec<MetadataRecord>> {
        let t = self.image.topic(name).ok_or_else(|| unknown_topic(name))?;
        refuse_internal(&self.image, name, "given partitions")?;
        let now = t.partition_count();
        if count <= now {
            return Err(OpError::new(
                ResponseError::InvalidPartitions,
                format!("topic has {now} partitions; the new count must be larger, got {count}"),
            ));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(OpError::new(
                ResponseError::InvalidPartitions,
                format!("at most {PARTITIONS_PER_TOPIC_MAX} partitions per topic"),
            ));
        }
        let brokers = self.placement_brokers().len();
        if brokers == 0 {
            return Err(OpError::new(
                ResponseError::BrokerNotAvailable,
                "no broker to place partitions on",
            ));
        }
        let replication = t.partitions.first().map_or(1, |p| p.replicas.len().max(1));
        let replicas = match assignment {
            Some(a) => {
                if a.len() as i32 != count - now {
                    return Err(OpError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("{} assignments for {} new partitions", a.len(), count - now),
                    ));
                }
                let rf = self.check_assignment(a)?;
                if rf != replication {
                    return Err(OpError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("the topic's replication factor is {replication}, the assignment's {rf}"),
                    ));
                }
                a.to_vec()
            }
            None => self.placements(t.id, now, count - now, replication.min(brokers)),
        };
        Ok(self.partition_records(t.id, now, replicas).collect())
    }

    fn alter_configs(
        &self,
        name: &str,
        ops: &[ConfigOp],
        replace: bool,
    ) -> OpResult<Vec<MetadataRecord>> {
        let t = self.image.topic(name).ok_or_else(|| unknown_topic(name))?;
        let mut next = if replace {
            BTreeMap::new()
        } else {
            t.configs.clone()
        };
        for op in ops {
            match op {
                ConfigOp::Set(k, v) => {
                    topic_config::validate(k, v)
                        .map_err(|e| OpError::new(ResponseError::InvalidConfig, e.to_string()))?;
                    next.insert(k.clone(), v.clone());
                }
                ConfigOp::Delete(k) => {
                    next.remove(k);
                }
            }
        }
        let record = |key: &String, value: Option<&String>| MetadataRecord::Config {
            topic: name.to_owned(),
            key: key.clone(),
            value: value.cloned(),
        };
        let removed = t
            .configs
            .keys()
            .filter(|k| !next.contains_key(*k))
            .map(|k| record(k, None));
        let set = next
            .iter()
            .filter(|(k, v)| t.configs.get(*k) != Some(*v))
            .map(|(k, v)| record(k, Some(v)));
        Ok(removed.chain(set).collect())
    }
}

#[cfg(test)]
mod tests;
