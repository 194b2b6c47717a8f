//! The coordinator's internal state: groups and their members as kept in memory (a group's
//! `__consumer_offsets` record is derived from it, [`Group::record`]), the load state of each
//! offsets partition, and the writes waiting for `Event::Persisted`. Not public: the driver
//! sees groups only through replies and `GroupSummary`.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::{CommitPartition, GroupState, ReqId};
use crate::coordinator::group::records::{GroupValue, OffsetValue, StoredMember, StoredRecord};

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout_ms: i32,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) awaiting_join: Option<ReqId>,
    pub(super) awaiting_sync: Option<ReqId>,
    /// Removed when no heartbeat (or join/sync) came before this time.
    pub(super) heartbeat_deadline_ms: i64,
    /// Joined during the current rebalance (not yet part of a generation).
    pub(super) is_new: bool,
}

impl Member {
    pub(super) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    pub(super) fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) id: String,
    pub(super) partition: i32,
    pub(super) state: GroupState,
    pub(super) state_timestamp_ms: i64,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) generation: i32,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// group.instance.id → member id.
    pub(super) static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, valid until the deadline.
    pub(super) pending_members: HashMap<String, i64>,
    /// End of the current PreparingRebalance phase.
    pub(super) rebalance_deadline_ms: i64,
    /// A new group waits out `initial_rebalance_delay_ms` even when all members joined.
    pub(super) initial_delay: bool,
    pub(super) offsets: BTreeMap<(String, i32), OffsetValue>,
}

impl Group {
    pub(super) fn new(id: &str, partition: i32, now_ms: i64) -> Group {
        Group {
            id: id.to_owned(),
            partition,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay: false,
            offsets: BTreeMap::new(),
        }
    }

    pub(super) fn set_state(&mut self, s: GroupState, now_ms: i64) {
        self.state = s;
        self.state_timestamp_ms = now_ms;
    }

    /// Protocols every member supports, in the order of the first member's preference.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else {
            return Vec::new();
        };
        let mut c: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            c.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        c
    }

    pub(super) fn supports(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
        except: Option<&str>,
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| Some(m.id.as_str()) != except)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != protocol_type)
        {
            return false;
        }
        protocols.iter().any(|(n, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
    }

    /// Picks the protocol with most first-choice votes among the candidates.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut best: Option<(usize, &String)> = None;
        for c in &candidates {
            let votes = self
                .members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .find(|(p, _)| candidates.contains(p))
                        .is_some_and(|(p, _)| p == c)
                })
                .count();
            if best.is_none_or(|(v, _)| votes > v) {
                best = Some((votes, c));
            }
        }
        best.map(|(_, c)| c.clone())
    }

    pub(super) fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn to_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self
                        .protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn record(&self) -> StoredRecord {
        StoredRecord::Group {
            group: self.id.clone(),
            value: Some(self.to_value()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
    Loading,
    Loaded,
}

/// What a `Persist` with a token completes.
#[derive(Debug)]
pub(super) enum PendingWrite {
    Commit {
        req: ReqId,
        group: String,
        /// Its offsets partition.
        partition: i32,
        offsets: Vec<CommitPartition>,
        /// TxnOffsetCommit: the producer whose transaction holds the offsets.
        txn: Option<(i64, i16)>,
        now_ms: i64,
        /// Per-partition results already decided (e.g. metadata too large).
        refused: Vec<(String, i32, i16)>,
    },
    Delete {
        req: ReqId,
    },
    OffsetDelete {
        req: ReqId,
        results: Vec<(String, i32, i16)>,
    },
}

pub(super) fn remove_member(g: &mut Group, id: &str) -> Option<Member> {
    let m = g.members.remove(id)?;
    if let Some(instance) = &m.instance_id {
        if g.static_members.get(instance).is_some_and(|cur| cur == id) {
            g.static_members.remove(instance);
        }
    }
    if g.leader.as_deref() == Some(id) {
        g.leader = g.members.keys().next().cloned();
    }
    Some(m)
}

/// An offset committed inside a transaction, waiting for the producer's marker.
#[derive(Debug, Clone)]
pub(super) struct TxnOffset {
    /// The offsets partition holding it (where the marker arrives).
    pub(super) partition: i32,
    pub(super) group: String,
    pub(super) topic: String,
    pub(super) topic_partition: i32,
    pub(super) value: OffsetValue,
}
