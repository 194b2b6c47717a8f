//! Metadata records: every change to the cluster metadata is a sequence of these, appended to
//! the metadata log (`super::store`) and applied to the image (`super::image`) in log order.
//! They follow KRaft's record types (TopicRecord, PartitionRecord, ConfigRecord,
//! RemoveTopicRecord, ProducerIdsRecord), so a Raft quorum can later replicate the same log.
//!
//! Encoded as JSON objects tagged by `type`; a record type is never changed in place, only
//! added (an old broker refuses a log with a type it does not know).

use serde::{Deserialize, Serialize};

/// One metadata change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The first record of a new cluster.
    Cluster { cluster_id: String },
    /// A topic was created; its partitions follow as [`MetadataRecord::Partition`] records.
    Topic {
        name: String,
        topic_id: [u8; 16],
        internal: bool,
    },
    /// A partition's registration: added when `partition` is the topic's next index, replaced
    /// otherwise (a leader or ISR change).
    Partition(PartitionRecord),
    /// A topic config override set (`value: Some`) or removed (`None`).
    Config {
        topic: String,
        key: String,
        value: Option<String>,
    },
    /// A topic and all its partitions are gone.
    RemoveTopic { topic_id: [u8; 16] },
    /// Producer ids below `block_end` may have been handed out.
    ProducerIds { block_end: i64 },
    /// A broker (re)started and registered (KRaft's RegisterBrokerRecord): its broker epoch is
    /// this record's offset. It starts fenced.
    RegisterBroker(BrokerRecord),
    /// The broker stopped heartbeating, or shut down: no leaderships, not in Metadata.
    FenceBroker { id: i32, epoch: u64 },
    /// The broker heartbeats again and has caught up with the metadata log.
    UnfenceBroker { id: i32, epoch: u64 },
    /// A user's SCRAM credential for one mechanism, set or replaced (KRaft's
    /// UserScramCredentialRecord): the salt and derived keys, never a password.
    ScramCredential {
        user: String,
        mechanism: crate::security::scram::Mechanism,
        credential: crate::security::scram::ScramCredential,
    },
    /// A user's SCRAM credential for one mechanism is gone.
    RemoveScramCredential {
        user: String,
        mechanism: crate::security::scram::Mechanism,
    },
    /// An ACL binding was created (KRaft's AccessControlEntryRecord).
    Acl(crate::security::acl::AclBinding),
    /// An ACL binding was deleted.
    RemoveAcl(crate::security::acl::AclBinding),
    /// A client quota set (`value: Some`) or removed (`None`) (KRaft's ClientQuotaRecord).
    ClientQuota {
        entity: crate::security::quota::QuotaEntity,
        key: String,
        value: Option<crate::security::quota::QuotaValue>,
    },
    /// A feature's finalized level (KRaft's FeatureLevelRecord; see `super::features`).
    FeatureLevel { name: String, level: i16 },
}

/// A broker's registration: how clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: i32,
    /// Random per process start: a restarted broker registers anew.
    pub incarnation: [u8; 16],
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Each listener's advertised address (`host`/`port` are the inter-broker listener's,
    /// and what a listener missing here is told).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerEndpoint>,
}

/// One listener of a broker, as its clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
}

/// Where a partition lives and who leads it (KRaft's PartitionRecord).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: [u8; 16],
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Node id of the leader, -1 when none.
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of this registration.
    pub partition_epoch: i32,
    /// A reassignment in progress: replicas being added (in `replicas` already, catching up)
    /// and being removed once they have (KRaft's addingReplicas / removingReplicas).
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

/// The records of a topic whose partitions all live on one node, `node` (a single broker, and
/// data directories of Sluice ≤ 0.1).
pub fn topic_on_node(
    name: &str,
    topic_id: [u8; 16],
    partitions: i32,
    internal: bool,
    node: i32,
) -> Vec<MetadataRecord> {
    let topic = MetadataRecord::Topic {
        name: name.to_owned(),
        topic_id,
        internal,
    };
    let parts = (0..partitions).map(|partition| {
        MetadataRecord::Partition(PartitionRecord {
            topic_id,
            partition,
            replicas: vec![node],
            isr: vec![node],
            leader: node,
            leader_epoch: 0,
            partition_epoch: 0,
            ..PartitionRecord::default()
        })
    });
    std::iter::once(topic).chain(parts).collect()
}
