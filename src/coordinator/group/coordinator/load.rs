//! The `__consumer_offsets` log behind the groups: loading a partition (`Replay`… →
//! `LoadCompleted`, restoring groups from their records). The log cleaner compacts the log
//! (its topic has `cleanup.policy=compact`): a load replays the latest record of each key
//! plus what the cleaner has not reached yet, in log order.

use super::state::{Group, Load, Member};
use super::{Coordinator, GroupState, JoinResult, Reply, SyncResult};
use crate::coordinator::group::records::{GroupValue, StoredRecord};
use kafka_protocol::ResponseError;

impl Coordinator {
    pub(super) fn replay(&mut self, now_ms: i64, partition: i32, rec: StoredRecord) {
        match rec {
            StoredRecord::Offset {
                group,
                topic,
                partition: p,
                value,
            } => match value {
                Some(v) => {
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, partition, now_ms))
                        .offsets
                        .insert((topic, p), v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, p));
                    }
                }
            },
            StoredRecord::Group { group, value } => match value {
                Some(v) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, partition, now_ms));
                    restore_group(g, v, now_ms);
                }
                None => {
                    self.groups.remove(&group);
                }
            },
        }
    }

    pub(super) fn load_completed(&mut self, now_ms: i64, partition: i32) {
        self.partitions.insert(partition, Load::Loaded);
        // Restored members get a fresh session to reach us again.
        for g in self
            .groups
            .values_mut()
            .filter(|g| g.partition == partition)
        {
            for m in g.members.values_mut() {
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
            }
        }
    }

    /// This broker stopped leading offsets partition `p`: its groups are dropped, and members
    /// waiting in a join or sync are told NOT_COORDINATOR, so they look for the new coordinator
    /// at once instead of waiting for their timeouts.
    pub(super) fn unload(&mut self, p: i32) {
        self.partitions.remove(&p);
        self.drop_txn_offsets(p);
        let gone: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.partition == p)
            .map(|g| g.id.clone())
            .collect();
        for id in gone {
            let Some(g) = self.groups.remove(&id) else {
                continue;
            };
            for m in g.members.values() {
                if let Some(req) = m.awaiting_join {
                    let r = JoinResult::error(ResponseError::NotCoordinator, &m.id);
                    self.reply(req, Reply::Join(r));
                }
                if let Some(req) = m.awaiting_sync {
                    let r = SyncResult::error(ResponseError::NotCoordinator);
                    self.reply(req, Reply::Sync(r));
                }
            }
        }
    }
}

fn restore_group(g: &mut Group, v: GroupValue, now_ms: i64) {
    g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
    g.generation = v.generation;
    g.protocol = v.protocol.clone();
    g.leader = v.leader;
    g.members.clear();
    g.static_members.clear();
    let protocol = v.protocol.unwrap_or_default();
    for m in v.members {
        if let Some(instance) = &m.instance_id {
            g.static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        g.members.insert(
            m.member_id.clone(),
            Member {
                id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline_ms: now_ms + m.session_timeout_ms as i64,
                is_new: false,
            },
        );
    }
    let state = if g.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    g.set_state(state, v.state_timestamp_ms);
}
