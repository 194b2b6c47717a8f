//! The `__consumer_offsets` log behind the groups: loading a partition (`Replay`… →
//! `LoadCompleted`, restoring groups from their records) and compacting it (a snapshot of the
//! live keys once superseded records dominate), both at load and while running.

use super::state::{Group, Load, Member, PendingWrite};
use super::{Action, Coordinator, GroupState, JoinResult, Reply, SyncResult};
use crate::coordinator::group::records::{GroupValue, StoredRecord};
use kafka_protocol::ResponseError;

impl Coordinator {
    /// Counts appended records; when a partition's log holds far more records than live keys
    /// and no commit of it is in flight (its record would precede the snapshot but be missing
    /// from it), appends a snapshot so the driver can drop everything before it.
    pub(super) fn maybe_compact(&mut self) {
        for a in &self.out {
            if let Action::Persist {
                partition, records, ..
            } = a
            {
                self.log_records.entry(*partition).or_insert((0, 0)).0 += records.len();
            }
        }
        let due: Vec<i32> = self
            .log_records
            .iter()
            .filter(|(_, (count, checked))| *count >= checked + COMPACT_CHECK_EVERY_RECORDS)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            let Some(&(count, checked)) = self.log_records.get(&p) else {
                continue;
            };
            if count < checked + COMPACT_CHECK_EVERY_RECORDS || !self.is_loaded(p) {
                continue;
            }
            let commit_in_flight = self.pending.values().any(|w| match w {
                PendingWrite::Commit { group, .. } => {
                    self.groups.get(group).is_none_or(|g| g.partition == p)
                }
                _ => false,
            });
            if commit_in_flight {
                continue;
            }
            let live = self.live_records(p);
            if count > 2 * live.len() + SNAPSHOT_SLACK_RECORDS {
                self.log_records.insert(p, (live.len(), live.len()));
                self.out.push(Action::Snapshot {
                    partition: p,
                    records: live,
                });
            } else {
                self.log_records.insert(p, (count, count));
            }
        }
    }

    /// Every live key of offsets partition `partition`, as records.
    fn live_records(&self, partition: i32) -> Vec<StoredRecord> {
        let mut live = Vec::new();
        for g in self.groups.values().filter(|g| g.partition == partition) {
            for ((t, p), v) in &g.offsets {
                live.push(StoredRecord::Offset {
                    group: g.id.clone(),
                    topic: t.clone(),
                    partition: *p,
                    value: Some(v.clone()),
                });
            }
            live.push(g.record());
        }
        live
    }

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

    pub(super) fn load_completed(&mut self, now_ms: i64, partition: i32, records_read: usize) {
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
        let live = self.live_records(partition);
        // Superseded records dominate: rewrite the live keys and let the driver drop the rest.
        if records_read > 2 * live.len() + SNAPSHOT_SLACK_RECORDS {
            self.log_records.insert(partition, (live.len(), live.len()));
            self.out.push(Action::Snapshot {
                partition,
                records: live,
            });
        } else {
            self.log_records
                .insert(partition, (records_read, records_read));
        }
    }

    /// This broker stopped leading offsets partition `p`: its groups are dropped, and members
    /// waiting in a join or sync are told NOT_COORDINATOR, so they look for the new coordinator
    /// at once instead of waiting for their timeouts.
    pub(super) fn unload(&mut self, p: i32) {
        self.partitions.remove(&p);
        self.log_records.remove(&p);
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

/// Records beyond twice the live keys tolerated before a load rewrites a snapshot.
const SNAPSHOT_SLACK_RECORDS: usize = 64;

/// While running, live keys are compared with the log's record count this often (records).
const COMPACT_CHECK_EVERY_RECORDS: usize = 1_000;

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
