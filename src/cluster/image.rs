//! The metadata image: topics with their partition registrations and config overrides, the
//! cluster id and the producer-id block. It is the result of applying the metadata log's
//! records in order ([`MetadataImage::apply`], pure); every shard holds an immutable copy
//! (`Arc`) that the controller's driver replaces by message.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::record::{BrokerRecord, MetadataRecord, PartitionRecord};
use crate::security::acl::AclBinding;
use crate::security::scram::{Mechanism, ScramCredential};

/// A partition's registration: replicas, in-sync replicas, leader and epochs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// A reassignment in progress (see [`PartitionRecord`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
    /// Eligible leader replicas (KIP-966): replicas that left the ISR while it was below
    /// `min.insync.replicas`, so they hold everything below the high watermark (which stopped).
    /// A partition whose ISR has no live member may be led by one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elr: Vec<i32>,
}

impl PartitionRegistration {
    /// No leader, no replicas known (a broker whose metadata is not current yet).
    pub fn unknown() -> PartitionRegistration {
        PartitionRegistration {
            replicas: Vec::new(),
            isr: Vec::new(),
            leader: -1,
            leader_epoch: -1,
            partition_epoch: -1,
            ..PartitionRegistration::default()
        }
    }

    /// This registration as the record of `partition` of topic `topic_id`.
    pub fn record(&self, topic_id: [u8; 16], partition: i32) -> PartitionRecord {
        PartitionRecord {
            topic_id,
            partition,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            adding_replicas: self.adding_replicas.clone(),
            removing_replicas: self.removing_replicas.clone(),
            elr: self.elr.clone(),
        }
    }
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub record: BrokerRecord,
    /// The offset of its registration record.
    pub epoch: u64,
    pub fenced: bool,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: [u8; 16],
    /// Indexed by partition number.
    pub partitions: Vec<PartitionRegistration>,
    /// Dynamic topic config overrides (`retention.ms` etc.).
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
}

impl TopicMeta {
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }

    /// Whether `partition` is one of this topic's partitions.
    pub fn has_partition(&self, partition: i32) -> bool {
        (0..self.partition_count()).contains(&partition)
    }
}

/// An immutable view of the cluster metadata.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    pub cluster_id: String,
    /// Offset of the last record applied (0: none); grows with every change.
    pub epoch: u64,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// Producer ids below this may have been handed out: a restarted controller allocates
    /// from here, so ids never repeat (InitProducerId).
    pub producer_id_block_end: i64,
    /// Brokers that registered (cluster mode; empty for a single node).
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// SCRAM credentials by user and mechanism.
    pub scram: BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>,
    /// Every ACL binding.
    pub acls: BTreeSet<AclBinding>,
    /// Client quotas by entity and key.
    pub quotas: crate::security::quota::Quotas,
    /// Finalized feature levels (`super::features`); a level of 0 stays listed (it is a
    /// decision too: the flag a node starts with no longer applies).
    pub features: BTreeMap<String, i16>,
    by_id: HashMap<[u8; 16], String>,
}

/// A record that does not fit the image it is applied to: the log is not the one this image
/// came from (or a bug wrote it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata record {offset} cannot be applied: {why}")]
pub struct ApplyError {
    pub offset: u64,
    pub why: String,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<&Arc<TopicMeta>> {
        self.by_id.get(id).and_then(|n| self.topics.get(n))
    }

    /// Applies the record at `offset` (which must follow `self.epoch`).
    pub fn apply(&mut self, offset: u64, record: &MetadataRecord) -> Result<(), ApplyError> {
        let fail = |why: String| ApplyError { offset, why };
        if offset <= self.epoch {
            return Err(fail(format!("the image is already at {}", self.epoch)));
        }
        match record {
            MetadataRecord::Cluster { cluster_id } => self.cluster_id = cluster_id.clone(),
            MetadataRecord::Topic {
                name,
                topic_id,
                internal,
            } => {
                if self.topics.contains_key(name) || self.by_id.contains_key(topic_id) {
                    return Err(fail(format!("topic '{name}' already exists")));
                }
                let meta = TopicMeta {
                    name: name.clone(),
                    id: *topic_id,
                    partitions: Vec::new(),
                    configs: BTreeMap::new(),
                    internal: *internal,
                };
                self.by_id.insert(*topic_id, name.clone());
                self.topics.insert(name.clone(), Arc::new(meta));
            }
            MetadataRecord::Partition(p) => self.apply_partition(p).map_err(fail)?,
            MetadataRecord::Config { topic, key, value } => {
                let t = self
                    .topics
                    .get_mut(topic)
                    .ok_or_else(|| fail(format!("config of unknown topic '{topic}'")))?;
                let t = Arc::make_mut(t);
                match value {
                    Some(v) => t.configs.insert(key.clone(), v.clone()),
                    None => t.configs.remove(key),
                };
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let name = self
                    .by_id
                    .remove(topic_id)
                    .ok_or_else(|| fail("removal of an unknown topic id".into()))?;
                self.topics.remove(&name);
            }
            MetadataRecord::ProducerIds { block_end } => {
                if *block_end < self.producer_id_block_end {
                    return Err(fail("producer id block moved backwards".into()));
                }
                self.producer_id_block_end = *block_end;
            }
            MetadataRecord::RegisterBroker(b) => {
                let reg = BrokerRegistration {
                    record: b.clone(),
                    epoch: offset,
                    fenced: true,
                };
                self.brokers.insert(b.id, reg);
            }
            MetadataRecord::FenceBroker { id, epoch }
            | MetadataRecord::UnfenceBroker { id, epoch } => {
                let b = self
                    .brokers
                    .get_mut(id)
                    .filter(|b| b.epoch == *epoch)
                    .ok_or_else(|| fail(format!("broker {id} epoch {epoch} is not registered")))?;
                b.fenced = matches!(record, MetadataRecord::FenceBroker { .. });
            }
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                credential,
            } => {
                self.scram
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            MetadataRecord::Acl(b) => {
                self.acls.insert(b.clone());
            }
            MetadataRecord::RemoveAcl(b) => {
                if !self.acls.remove(b) {
                    return Err(fail(format!("removal of an unknown ACL {b:?}")));
                }
            }
            MetadataRecord::FeatureLevel { name, level } => {
                self.features.insert(name.clone(), *level);
            }
            MetadataRecord::ClientQuota { entity, key, value } => match value {
                Some(v) => {
                    self.quotas
                        .entry(entity.clone())
                        .or_default()
                        .insert(key.clone(), *v);
                }
                None => {
                    if let Some(keys) = self.quotas.get_mut(entity) {
                        keys.remove(key);
                        if keys.is_empty() {
                            self.quotas.remove(entity);
                        }
                    }
                }
            },
            MetadataRecord::RemoveScramCredential { user, mechanism } => {
                let creds = self
                    .scram
                    .get_mut(user)
                    .filter(|c| c.contains_key(mechanism))
                    .ok_or_else(|| fail(format!("no {} credential of {user}", mechanism.name())))?;
                creds.remove(mechanism);
                if creds.is_empty() {
                    self.scram.remove(user);
                }
            }
        }
        self.epoch = offset;
        Ok(())
    }

    fn apply_partition(&mut self, p: &PartitionRecord) -> Result<(), String> {
        let name = self
            .by_id
            .get(&p.topic_id)
            .ok_or("partition of an unknown topic id")?;
        let t = self
            .topics
            .get_mut(name)
            .ok_or("partition of an unknown topic")?;
        let t = Arc::make_mut(t);
        let reg = PartitionRegistration {
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            adding_replicas: p.adding_replicas.clone(),
            removing_replicas: p.removing_replicas.clone(),
            elr: p.elr.clone(),
        };
        match usize::try_from(p.partition) {
            Ok(i) if i < t.partitions.len() => t.partitions[i] = reg,
            Ok(i) if i == t.partitions.len() => t.partitions.push(reg),
            _ => {
                return Err(format!(
                    "partition {} of '{}' which has {}",
                    p.partition,
                    t.name,
                    t.partitions.len()
                ))
            }
        }
        Ok(())
    }

    /// Records that rebuild this image from nothing (a snapshot's content), in apply order.
    /// The leader and leader epoch of `partition` of `topic`; `None` when it has no leader.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        let reg = self.topic(topic)?.partitions.get(partition as usize)?;
        (reg.leader >= 0).then_some((reg.leader, reg.leader_epoch))
    }

    /// `user`'s SCRAM credential for `mechanism`.
    pub fn scram_credential(&self, user: &str, mechanism: Mechanism) -> Option<&ScramCredential> {
        self.scram.get(user)?.get(&mechanism)
    }

    /// Unfenced brokers, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| &b.record)
    }

    /// Whether broker `id` is registered and not fenced.
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// The image as records that rebuild it ([`MetadataImage::from_records`]). A broker's
    /// registration is followed by a fence or unfence record carrying its epoch, which
    /// `from_records` restores.
    pub fn records(&self) -> Vec<MetadataRecord> {
        let mut out = vec![MetadataRecord::Cluster {
            cluster_id: self.cluster_id.clone(),
        }];
        for b in self.brokers.values() {
            out.push(MetadataRecord::RegisterBroker(b.record.clone()));
            let (id, epoch) = (b.record.id, b.epoch);
            out.push(if b.fenced {
                MetadataRecord::FenceBroker { id, epoch }
            } else {
                MetadataRecord::UnfenceBroker { id, epoch }
            });
        }
        for (user, creds) in &self.scram {
            for (mechanism, credential) in creds {
                out.push(MetadataRecord::ScramCredential {
                    user: user.clone(),
                    mechanism: *mechanism,
                    credential: credential.clone(),
                });
            }
        }
        out.extend(self.acls.iter().cloned().map(MetadataRecord::Acl));
        for (entity, keys) in &self.quotas {
            for (key, value) in keys {
                out.push(MetadataRecord::ClientQuota {
                    entity: entity.clone(),
                    key: key.clone(),
                    value: Some(*value),
                });
            }
        }
        for t in self.topics.values() {
            out.push(MetadataRecord::Topic {
                name: t.name.clone(),
                topic_id: t.id,
                internal: t.internal,
            });
            for (i, p) in t.partitions.iter().enumerate() {
                out.push(MetadataRecord::Partition(p.record(t.id, i as i32)));
            }
            for (k, v) in &t.configs {
                out.push(MetadataRecord::Config {
                    topic: t.name.clone(),
                    key: k.clone(),
                    value: Some(v.clone()),
                });
            }
        }
        for (name, level) in &self.features {
            out.push(MetadataRecord::FeatureLevel {
                name: name.clone(),
                level: *level,
            });
        }
        if self.producer_id_block_end > 0 {
            out.push(MetadataRecord::ProducerIds {
                block_end: self.producer_id_block_end,
            });
        }
        out
    }

    /// Rebuilds an image at `epoch` from [`MetadataImage::records`] output.
    pub fn from_records(epoch: u64, records: &[MetadataRecord]) -> Result<Self, ApplyError> {
        let mut image = MetadataImage::default();
        for r in records {
            // Snapshot records share one offset: apply each "just after" the previous.
            let at = image.epoch + 1;
            if let MetadataRecord::FenceBroker { id, epoch }
            | MetadataRecord::UnfenceBroker { id, epoch } = r
            {
                // A registration's epoch is the offset it was first written at.
                if let Some(b) = image.brokers.get_mut(id) {
                    b.epoch = *epoch;
                }
            }
            image.apply(at, r)?;
        }
        image.epoch = epoch;
        Ok(image)
    }
}

/// A fresh random topic id.
pub fn new_topic_id() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

/// A fresh cluster id: Kafka's are 22-char URL-safe base64 of a UUID; any stable string works
/// for clients.
pub fn new_cluster_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..22].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: [u8; 16], partition: i32, leader_epoch: i32) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            topic_id: id,
            partition,
            replicas: vec![0],
            isr: vec![0],
            leader: 0,
            leader_epoch,
            partition_epoch: leader_epoch,
            ..PartitionRecord::default()
        })
    }

    #[test]
    fn applies_records_and_round_trips_through_its_own_records() {
        let mut image = MetadataImage::default();
        let log = [
            MetadataRecord::Cluster {
                cluster_id: "c".into(),
            },
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: [1; 16],
                internal: false,
            },
            part([1; 16], 0, 0),
            part([1; 16], 1, 0),
            MetadataRecord::Config {
                topic: "t".into(),
                key: "retention.ms".into(),
                value: Some("5".into()),
            },
            part([1; 16], 1, 3),
            MetadataRecord::ProducerIds { block_end: 1000 },
            MetadataRecord::Topic {
                name: "gone".into(),
                topic_id: [2; 16],
                internal: false,
            },
            MetadataRecord::RemoveTopic { topic_id: [2; 16] },
        ];
        for (i, r) in log.iter().enumerate() {
            image.apply(i as u64 + 1, r).unwrap();
        }
        assert_eq!(image.epoch, 9);
        let t = image.topic("t").unwrap();
        assert_eq!(t.partition_count(), 2);
        assert_eq!(t.partitions[1].leader_epoch, 3);
        assert_eq!(t.configs["retention.ms"], "5");
        assert!(image.topic("gone").is_none() && image.topic_by_id(&[2; 16]).is_none());
        assert_eq!(image.topic_by_id(&[1; 16]).unwrap().name, "t");

        let again = MetadataImage::from_records(image.epoch, &image.records()).unwrap();
        assert_eq!(again.epoch, image.epoch);
        assert_eq!(again.topics, image.topics);
        assert_eq!(again.cluster_id, "c");
        assert_eq!(again.producer_id_block_end, 1000);
    }

    #[test]
    fn refuses_records_that_do_not_fit() {
        let mut image = MetadataImage::default();
        let topic = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: [1; 16],
            internal: false,
        };
        image.apply(1, &topic).unwrap();
        assert!(
            image.apply(1, &part([1; 16], 0, 0)).is_err(),
            "offset reused"
        );
        assert!(image.apply(2, &topic).is_err(), "duplicate topic");
        assert!(
            image.apply(2, &part([1; 16], 1, 0)).is_err(),
            "partition gap"
        );
        assert!(
            image.apply(2, &part([9; 16], 0, 0)).is_err(),
            "unknown topic"
        );
        let config = MetadataRecord::Config {
            topic: "x".into(),
            key: "k".into(),
            value: None,
        };
        assert!(image.apply(2, &config).is_err());
        let remove = MetadataRecord::RemoveTopic { topic_id: [9; 16] };
        assert!(image.apply(2, &remove).is_err());
        assert_eq!(image.epoch, 1, "failed records leave the epoch");
    }
}
