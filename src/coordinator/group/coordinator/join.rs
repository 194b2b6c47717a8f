//! JoinGroup and the rebalance it drives: new, known and static members join; the group moves
//! to PreparingRebalance and, once every member rejoined (or, on `Tick`, the rebalance timeout
//! passed), to CompletingRebalance with a new generation. Also hands out member ids.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::state::{remove_member, Group, Member};
use super::{
    Action, Coordinator, GroupState, JoinRequest, JoinResult, JoinedMember, Reply, ReqId,
    SyncResult, NONE,
};

impl Coordinator {
    /// Member ids need uniqueness, not secrecy.
    fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn new_member_id(&mut self, client_id: &str, instance_id: Option<&str>) -> String {
        let (a, b) = (self.random(), self.random());
        let prefix = instance_id.unwrap_or(client_id);
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    pub(super) fn join(&mut self, now_ms: i64, req: ReqId, r: JoinRequest) {
        let fail = |e: ResponseError| Reply::Join(JoinResult::error(e, &r.member_id));
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, fail(e));
        }
        if r.group_id.is_empty() {
            return self.reply(req, fail(ResponseError::InvalidGroupId));
        }
        if r.session_timeout_ms < self.config.session_timeout_ms_min
            || r.session_timeout_ms > self.config.session_timeout_ms_max
        {
            return self.reply(req, fail(ResponseError::InvalidSessionTimeout));
        }
        if !self.groups.contains_key(&r.group_id) {
            if !r.member_id.is_empty() {
                return self.reply(req, fail(ResponseError::UnknownMemberId));
            }
            self.groups.insert(
                r.group_id.clone(),
                Group::new(&r.group_id, r.partition, now_ms),
            );
        }
        let Some(g) = self.groups.get(&r.group_id) else {
            return;
        };
        if g.state == GroupState::Dead {
            return self.reply(req, fail(ResponseError::CoordinatorNotAvailable));
        }
        let except = (!r.member_id.is_empty()).then_some(r.member_id.as_str());
        if !g.supports(&r.protocol_type, &r.protocols, except) {
            return self.reply(req, fail(ResponseError::InconsistentGroupProtocol));
        }
        if r.member_id.is_empty() {
            self.join_unknown_member(now_ms, req, r);
        } else {
            self.join_known_member(now_ms, req, r);
        }
    }

    fn join_unknown_member(&mut self, now_ms: i64, req: ReqId, r: JoinRequest) {
        let new_id = self.new_member_id(&r.client_id, r.instance_id.as_deref());
        let members_max = self.config.group_members_max;
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        if let Some(instance) = r.instance_id.clone() {
            if let Some(old_id) = g.static_members.get(&instance).cloned() {
                return self.replace_static_member(now_ms, req, r, old_id, new_id);
            }
        } else if r.require_known_member_id {
            let deadline = now_ms + r.session_timeout_ms as i64;
            g.pending_members.insert(new_id.clone(), deadline);
            return self.reply(
                req,
                Reply::Join(JoinResult::error(ResponseError::MemberIdRequired, &new_id)),
            );
        }
        if g.members.len() >= members_max {
            return self.reply(
                req,
                Reply::Join(JoinResult::error(ResponseError::GroupMaxSizeReached, "")),
            );
        }
        self.add_member_and_rebalance(now_ms, req, r, new_id);
    }

    fn add_member_and_rebalance(&mut self, now_ms: i64, req: ReqId, r: JoinRequest, id: String) {
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        g.pending_members.remove(&id);
        if g.members.is_empty() {
            g.protocol_type = Some(r.protocol_type.clone());
        }
        if let Some(instance) = &r.instance_id {
            g.static_members.insert(instance.clone(), id.clone());
        }
        g.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: r.instance_id.clone(),
                client_id: r.client_id.clone(),
                client_host: r.client_host.clone(),
                session_timeout_ms: r.session_timeout_ms,
                rebalance_timeout_ms: r.rebalance_timeout_ms,
                protocols: r.protocols.clone(),
                assignment: Bytes::new(),
                awaiting_join: Some(req),
                awaiting_sync: None,
                heartbeat_deadline_ms: now_ms + r.session_timeout_ms as i64,
                is_new: true,
            },
        );
        if g.leader.is_none() {
            g.leader = Some(id);
        }
        let group_id = r.group_id.clone();
        self.prepare_rebalance(now_ms, &group_id);
        self.maybe_complete_join(now_ms, &group_id);
    }

    fn replace_static_member(
        &mut self,
        now_ms: i64,
        req: ReqId,
        r: JoinRequest,
        old_id: String,
        new_id: String,
    ) {
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        let Some(mut m) = g.members.remove(&old_id) else {
            g.static_members
                .remove(r.instance_id.as_deref().unwrap_or_default());
            return self.add_member_and_rebalance(now_ms, req, r, new_id);
        };
        // The old incarnation is fenced: anything it still waits for fails.
        let mut fenced = Vec::new();
        if let Some(j) = m.awaiting_join.take() {
            fenced.push((j, true));
        }
        if let Some(s) = m.awaiting_sync.take() {
            fenced.push((s, false));
        }
        let protocols_changed = !m.same_protocols(&r.protocols);
        let was_leader = g.leader.as_deref() == Some(old_id.as_str());
        m.id = new_id.clone();
        m.client_id = r.client_id.clone();
        m.client_host = r.client_host.clone();
        m.session_timeout_ms = r.session_timeout_ms;
        m.rebalance_timeout_ms = r.rebalance_timeout_ms;
        m.protocols = r.protocols.clone();
        m.heartbeat_deadline_ms = now_ms + r.session_timeout_ms as i64;
        g.members.insert(new_id.clone(), m);
        if let Some(instance) = &r.instance_id {
            g.static_members.insert(instance.clone(), new_id.clone());
        }
        if was_leader {
            g.leader = Some(new_id.clone());
        }
        let state = g.state;
        let generation = g.generation;
        let protocol_type = g.protocol_type.clone();
        let protocol = g.protocol.clone();
        let leader = g.leader.clone().unwrap_or_default();
        for (id, join) in fenced {
            let e = ResponseError::FencedInstanceId;
            let reply = if join {
                Reply::Join(JoinResult::error(e, &old_id))
            } else {
                Reply::Sync(SyncResult::error(e))
            };
            self.reply(id, reply);
        }
        let group_id = r.group_id.clone();
        match state {
            GroupState::Stable if !was_leader && !protocols_changed => {
                // Same static member back with the same subscription: no rebalance; it gets
                // its old assignment through SyncGroup.
                self.persist_group(&group_id);
                self.reply(
                    req,
                    Reply::Join(JoinResult {
                        error: NONE,
                        generation,
                        protocol_type,
                        protocol_name: protocol,
                        leader,
                        member_id: new_id,
                        members: Vec::new(),
                    }),
                );
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = self.member_mut(&group_id, &new_id) {
                    m.awaiting_join = Some(req);
                }
                self.maybe_complete_join(now_ms, &group_id);
            }
            _ => {
                if let Some(m) = self.member_mut(&group_id, &new_id) {
                    m.awaiting_join = Some(req);
                }
                self.prepare_rebalance(now_ms, &group_id);
                self.maybe_complete_join(now_ms, &group_id);
            }
        }
    }

    fn join_known_member(&mut self, now_ms: i64, req: ReqId, r: JoinRequest) {
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        if g.pending_members.contains_key(&r.member_id) {
            let id = r.member_id.clone();
            return self.add_member_and_rebalance(now_ms, req, r, id);
        }
        if let Some(instance) = &r.instance_id {
            if let Some(current) = g.static_members.get(instance) {
                if *current != r.member_id {
                    return self.reply(
                        req,
                        Reply::Join(JoinResult::error(
                            ResponseError::FencedInstanceId,
                            &r.member_id,
                        )),
                    );
                }
            }
        }
        let state = g.state;
        let is_leader = g.leader.as_deref() == Some(r.member_id.as_str());
        let Some(m) = g.members.get_mut(&r.member_id) else {
            return self.reply(
                req,
                Reply::Join(JoinResult::error(
                    ResponseError::UnknownMemberId,
                    &r.member_id,
                )),
            );
        };
        m.heartbeat_deadline_ms = now_ms + r.session_timeout_ms as i64;
        m.session_timeout_ms = r.session_timeout_ms;
        m.rebalance_timeout_ms = r.rebalance_timeout_ms;
        let unchanged = m.same_protocols(&r.protocols);
        if let Some(old) = m.awaiting_join.replace(req) {
            // A retried join replaces the earlier one, which its client gave up on.
            self.out.push(Action::Reply(
                old,
                Reply::Join(JoinResult::error(
                    ResponseError::RebalanceInProgress,
                    &r.member_id,
                )),
            ));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        let Some(m) = g.members.get_mut(&r.member_id) else {
            return;
        };
        m.protocols = r.protocols.clone();
        let group_id = r.group_id.clone();
        match state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, &group_id),
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && !(state == GroupState::Stable && is_leader) =>
            {
                // A repeated join (lost response, or a follower rejoining unchanged): answer
                // with the current generation, no rebalance.
                m.awaiting_join = None;
                let result = join_result(
                    g,
                    &r.member_id,
                    state == GroupState::CompletingRebalance && is_leader,
                );
                self.reply(req, Reply::Join(result));
            }
            _ => {
                self.prepare_rebalance(now_ms, &group_id);
                self.maybe_complete_join(now_ms, &group_id);
            }
        }
    }

    /// Moves a group to PreparingRebalance (failing pending syncs) unless it is there already.
    pub(super) fn prepare_rebalance(&mut self, now_ms: i64, group_id: &str) {
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        if g.state == GroupState::PreparingRebalance {
            return;
        }
        let mut failed = Vec::new();
        if g.state == GroupState::CompletingRebalance {
            for m in g.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(s) = m.awaiting_sync.take() {
                    failed.push(s);
                }
            }
        }
        let timeout = if g.state == GroupState::Empty {
            initial_delay
        } else {
            g.members
                .values()
                .map(|m| m.rebalance_timeout_ms as i64)
                .max()
                .unwrap_or(0)
        };
        g.rebalance_deadline_ms = now_ms + timeout;
        g.initial_delay = g.state == GroupState::Empty && initial_delay > 0;
        g.set_state(GroupState::PreparingRebalance, now_ms);
        for s in failed {
            self.reply(
                s,
                Reply::Sync(SyncResult::error(ResponseError::RebalanceInProgress)),
            );
        }
    }

    pub(super) fn maybe_complete_join(&mut self, now_ms: i64, group_id: &str) {
        let Some(g) = self.groups.get(group_id) else {
            return;
        };
        if g.state == GroupState::PreparingRebalance
            && g.all_joined()
            && (!g.initial_delay || now_ms >= g.rebalance_deadline_ms)
        {
            self.complete_join(now_ms, group_id);
        }
    }

    /// Ends PreparingRebalance: drops members that did not rejoin, starts a new generation.
    pub(super) fn complete_join(&mut self, now_ms: i64, group_id: &str) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            remove_member(g, &id);
        }
        g.pending_members.clear();
        g.generation += 1;
        if g.members.is_empty() {
            g.protocol = None;
            g.protocol_type = if g.offsets.is_empty() {
                None
            } else {
                g.protocol_type.take()
            };
            g.leader = None;
            g.set_state(GroupState::Empty, now_ms);
            self.persist_group(group_id);
            return;
        }
        g.protocol = g.select_protocol();
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g.set_state(GroupState::CompletingRebalance, now_ms);
        let leader = g.leader.clone().unwrap_or_default();
        let mut replies = Vec::new();
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let result = join_result(g, &id, id == leader);
            if let Some(m) = g.members.get_mut(&id) {
                m.is_new = false;
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
                if let Some(req) = m.awaiting_join.take() {
                    replies.push((req, result));
                }
            }
        }
        for (req, result) in replies {
            self.reply(req, Reply::Join(result));
        }
    }
}

fn join_result(g: &Group, member_id: &str, with_members: bool) -> JoinResult {
    let protocol = g.protocol.clone().unwrap_or_default();
    JoinResult {
        error: NONE,
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol.clone(),
        leader: g.leader.clone().unwrap_or_default(),
        member_id: member_id.to_owned(),
        members: if with_members {
            g.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}
