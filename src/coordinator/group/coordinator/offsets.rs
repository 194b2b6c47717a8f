//! Committed offsets: OffsetCommit (visible only once `Persisted`), OffsetFetch, OffsetDelete,
//! dropping the offsets of deleted topics, and the `Persisted` completions of every write with a
//! token (commits, group deletions, offset deletions).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use super::state::{Group, PendingWrite, TxnOffset};
use super::{
    code, Action, CommitPartition, CommitRequest, Coordinator, FetchRequest, FetchedOffset,
    GroupState, OffsetDeleteRequest, Reply, ReqId, NONE,
};
use crate::coordinator::group::records::{OffsetValue, StoredRecord};

impl Coordinator {
    pub(super) fn commit(&mut self, now_ms: i64, req: ReqId, r: CommitRequest) {
        let all = |e: ResponseError| {
            Reply::Commit(
                r.offsets
                    .iter()
                    .map(|o| (o.topic.clone(), o.partition, code(e)))
                    .collect(),
            )
        };
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, all(e));
        }
        if r.group_id.is_empty() {
            return self.reply(req, all(ResponseError::InvalidGroupId));
        }
        let simple = r.generation < 0 && r.member_id.is_empty();
        let state = self.groups.get(&r.group_id).map(|g| g.state);
        let check = match state {
            None if simple => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
            Some(GroupState::Empty) if simple => Ok(()),
            Some(GroupState::Dead) => Err(ResponseError::CoordinatorNotAvailable),
            Some(s) => self
                .check_member(
                    &r.group_id,
                    &r.member_id,
                    r.instance_id.as_deref(),
                    r.generation,
                )
                .and_then(|()| {
                    if s == GroupState::CompletingRebalance {
                        Err(ResponseError::RebalanceInProgress)
                    } else {
                        Ok(())
                    }
                }),
        };
        if let Err(e) = check {
            return self.reply(req, all(e));
        }
        if !self.groups.contains_key(&r.group_id) {
            self.groups.insert(
                r.group_id.clone(),
                Group::new(&r.group_id, r.partition, now_ms),
            );
        }
        if let Some(m) = self.member_mut(&r.group_id, &r.member_id) {
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
        let max = self.config.offset_metadata_bytes_max;
        let (ok, too_big): (Vec<CommitPartition>, Vec<CommitPartition>) = r
            .offsets
            .into_iter()
            .partition(|o| o.metadata.as_ref().is_none_or(|m| m.len() <= max));
        let refused: Vec<(String, i32, i16)> = too_big
            .into_iter()
            .map(|o| {
                (
                    o.topic,
                    o.partition,
                    code(ResponseError::OffsetMetadataTooLarge),
                )
            })
            .collect();
        if ok.is_empty() {
            return self.reply(req, Reply::Commit(refused));
        }
        let records = ok
            .iter()
            .map(|o| StoredRecord::Offset {
                group: r.group_id.clone(),
                topic: o.topic.clone(),
                partition: o.partition,
                value: Some(offset_value(o, now_ms)),
            })
            .collect();
        let token = self.next_token();
        self.pending.insert(
            token,
            PendingWrite::Commit {
                req,
                group: r.group_id.clone(),
                partition: r.partition,
                offsets: ok,
                txn: r.txn,
                now_ms,
                refused,
            },
        );
        self.out.push(Action::Persist {
            partition: r.partition,
            records,
            token: Some(token),
            txn: r.txn,
        });
    }

    pub(super) fn persisted(&mut self, token: u64, error: i16) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        match p {
            PendingWrite::Commit {
                req,
                group,
                partition,
                offsets,
                txn: Some((producer_id, _)),
                now_ms,
                mut refused,
            } => {
                // Pending until the producer's marker (`txn_marker`).
                if error == NONE {
                    let pending = self.txn_offsets.entry(producer_id).or_default();
                    for o in &offsets {
                        pending.push(TxnOffset {
                            partition,
                            group: group.clone(),
                            topic: o.topic.clone(),
                            topic_partition: o.partition,
                            value: offset_value(o, now_ms),
                        });
                    }
                }
                refused.extend(offsets.into_iter().map(|o| (o.topic, o.partition, error)));
                self.reply(req, Reply::Commit(refused));
            }
            PendingWrite::Commit {
                req,
                group,
                offsets,
                now_ms,
                mut refused,
                ..
            } => {
                if error == NONE {
                    if let Some(g) = self.groups.get_mut(&group) {
                        for o in &offsets {
                            g.offsets
                                .insert((o.topic.clone(), o.partition), offset_value(o, now_ms));
                        }
                    }
                }
                refused.extend(offsets.into_iter().map(|o| (o.topic, o.partition, error)));
                self.reply(req, Reply::Commit(refused));
            }
            PendingWrite::Delete { req } => self.reply(req, Reply::Delete(error)),
            PendingWrite::OffsetDelete { req, results } => {
                let results = results
                    .into_iter()
                    .map(|(t, p, e)| (t, p, if e == NONE { error } else { e }))
                    .collect();
                self.reply(req, Reply::OffsetDelete(error, results));
            }
        }
    }

    pub(super) fn fetch(&mut self, req: ReqId, r: FetchRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, Reply::Fetch(code(e), Vec::new()));
        }
        let g = self.groups.get(&r.group_id);
        // Partitions of this group with offsets in a transaction not yet decided.
        let unstable: std::collections::HashSet<(&str, i32)> = if r.require_stable {
            self.txn_offsets
                .values()
                .flatten()
                .filter(|o| o.group == r.group_id)
                .map(|o| (o.topic.as_str(), o.topic_partition))
                .collect()
        } else {
            Default::default()
        };
        let found = |topic: &str, partition: i32| -> FetchedOffset {
            let v = g.and_then(|g| g.offsets.get(&(topic.to_owned(), partition)));
            if unstable.contains(&(topic, partition)) {
                return FetchedOffset {
                    topic: topic.to_owned(),
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error: code(ResponseError::UnstableOffsetCommit),
                };
            }
            FetchedOffset {
                topic: topic.to_owned(),
                partition,
                offset: v.map_or(-1, |v| v.offset),
                leader_epoch: v.map_or(-1, |v| v.leader_epoch),
                metadata: v.map(|v| v.metadata.clone()).unwrap_or_default(),
                error: NONE,
            }
        };
        let offsets = match &r.topics {
            Some(topics) => topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(|p| found(t, *p)).collect::<Vec<_>>())
                .collect(),
            None => g
                .map(|g| g.offsets.keys().map(|(t, p)| found(t, *p)).collect())
                .unwrap_or_default(),
        };
        self.reply(req, Reply::Fetch(NONE, offsets));
    }

    /// Drops every group's offsets of `topics` and appends their tombstones. Commits of them
    /// still in flight are durable before the tombstones, so they are answered but not
    /// applied, and get tombstones too.
    pub(super) fn topics_deleted(&mut self, topics: &[String]) {
        let gone = |t: &str| topics.iter().any(|d| d == t);
        let mut tombstones: BTreeMap<i32, Vec<StoredRecord>> = BTreeMap::new();
        let mut bury = |partition: i32, group: &str, topic: String, p: i32| {
            tombstones
                .entry(partition)
                .or_default()
                .push(StoredRecord::Offset {
                    group: group.to_owned(),
                    topic,
                    partition: p,
                    value: None,
                });
        };
        for g in self.groups.values_mut() {
            let keys: Vec<(String, i32)> =
                g.offsets.keys().filter(|(t, _)| gone(t)).cloned().collect();
            for (topic, p) in keys {
                g.offsets.remove(&(topic.clone(), p));
                bury(g.partition, &g.id, topic, p);
            }
        }
        for write in self.pending.values_mut() {
            if let PendingWrite::Commit {
                group,
                offsets,
                refused,
                ..
            } = write
            {
                let Some(partition) = self.groups.get(group.as_str()).map(|g| g.partition) else {
                    continue;
                };
                let (deleted, kept): (Vec<CommitPartition>, Vec<CommitPartition>) =
                    offsets.drain(..).partition(|o| gone(&o.topic));
                *offsets = kept;
                for o in deleted {
                    refused.push((o.topic.clone(), o.partition, NONE));
                    bury(partition, group, o.topic, o.partition);
                }
            }
        }
        for (partition, records) in tombstones {
            self.out.push(Action::Persist {
                partition,
                records,
                token: None,
                txn: None,
            });
        }
    }

    pub(super) fn offset_delete(&mut self, req: ReqId, r: OffsetDeleteRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, Reply::OffsetDelete(code(e), Vec::new()));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return self.reply(
                req,
                Reply::OffsetDelete(code(ResponseError::GroupIdNotFound), Vec::new()),
            );
        };
        let subscribed: Option<Vec<String>> = if g.members.is_empty() {
            Some(Vec::new())
        } else if g.protocol_type.as_deref() == Some("consumer") {
            let protocol = g.protocol.clone().unwrap_or_default();
            Some(
                g.members
                    .values()
                    .flat_map(|m| subscribed_topics(&m.metadata_for(&protocol)))
                    .collect(),
            )
        } else {
            None
        };
        let Some(subscribed) = subscribed else {
            return self.reply(
                req,
                Reply::OffsetDelete(code(ResponseError::NonEmptyGroup), Vec::new()),
            );
        };
        let mut results = Vec::new();
        let mut records = Vec::new();
        for (topic, partitions) in &r.topics {
            for p in partitions {
                if subscribed.contains(topic) {
                    results.push((
                        topic.clone(),
                        *p,
                        code(ResponseError::GroupSubscribedToTopic),
                    ));
                    continue;
                }
                if g.offsets.remove(&(topic.clone(), *p)).is_some() {
                    records.push(StoredRecord::Offset {
                        group: r.group_id.clone(),
                        topic: topic.clone(),
                        partition: *p,
                        value: None,
                    });
                }
                results.push((topic.clone(), *p, NONE));
            }
        }
        if records.is_empty() {
            return self.reply(req, Reply::OffsetDelete(NONE, results));
        }
        let partition = g.partition;
        let token = self.next_token();
        self.pending
            .insert(token, PendingWrite::OffsetDelete { req, results });
        self.out.push(Action::Persist {
            partition,
            records,
            token: Some(token),
            txn: None,
        });
    }
}

fn offset_value(o: &CommitPartition, now_ms: i64) -> OffsetValue {
    OffsetValue {
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: o.metadata.clone().unwrap_or_default(),
        commit_timestamp_ms: now_ms,
    }
}

/// Topics of a ConsumerProtocolSubscription (`version i16 | topics [string] | …`); empty if
/// it cannot be parsed.
pub fn subscribed_topics(metadata: &[u8]) -> Vec<String> {
    fn parse(b: &[u8]) -> Option<Vec<String>> {
        let n = i32::from_be_bytes(b.get(2..6)?.try_into().ok()?);
        let mut pos = 6usize;
        let mut out = Vec::new();
        for _ in 0..n.max(0) {
            let len = i16::from_be_bytes(b.get(pos..pos + 2)?.try_into().ok()?);
            pos += 2;
            let len = usize::try_from(len).ok()?;
            out.push(String::from_utf8(b.get(pos..pos + len)?.to_vec()).ok()?);
            pos += len;
        }
        Some(out)
    }
    parse(metadata).unwrap_or_default()
}

impl Coordinator {
    /// A marker of `producer_id` reached offsets partition `partition`: its offsets pending
    /// there become the groups' committed offsets (commit) or are dropped (abort).
    pub(super) fn txn_marker(
        &mut self,
        now_ms: i64,
        partition: i32,
        producer_id: i64,
        commit: bool,
    ) {
        let Some(pending) = self.txn_offsets.get_mut(&producer_id) else {
            return;
        };
        let (done, rest): (Vec<TxnOffset>, Vec<TxnOffset>) =
            pending.drain(..).partition(|o| o.partition == partition);
        if rest.is_empty() {
            self.txn_offsets.remove(&producer_id);
        } else {
            *pending = rest;
        }
        if !commit {
            return;
        }
        for o in done {
            let g = self
                .groups
                .entry(o.group.clone())
                .or_insert_with(|| Group::new(&o.group, partition, now_ms));
            g.offsets.insert((o.topic, o.topic_partition), o.value);
        }
    }

    /// A transactional offset commit read back while loading `partition`.
    pub(super) fn replay_txn(&mut self, partition: i32, producer_id: i64, rec: StoredRecord) {
        if let StoredRecord::Offset {
            group,
            topic,
            partition: topic_partition,
            value: Some(value),
        } = rec
        {
            self.txn_offsets
                .entry(producer_id)
                .or_default()
                .push(TxnOffset {
                    partition,
                    group,
                    topic,
                    topic_partition,
                    value,
                });
        }
    }

    /// Forgets the pending transactional offsets of `partition` (reloaded or unloaded).
    pub(super) fn drop_txn_offsets(&mut self, partition: i32) {
        self.txn_offsets.retain(|_, v| {
            v.retain(|o| o.partition != partition);
            !v.is_empty()
        });
    }
}
