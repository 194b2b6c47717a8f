//! Staying in a group: SyncGroup (the leader's assignments end CompletingRebalance → Stable),
//! Heartbeat, LeaveGroup, and session expiry on `Tick` (which also ends rebalances whose
//! timeout passed).

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::state::remove_member;
use super::{
    code, Action, Coordinator, GroupState, HeartbeatRequest, JoinResult, LeaveRequest, Reply,
    ReqId, SyncRequest, SyncResult, NONE,
};

impl Coordinator {
    /// Checks member id, static instance and generation; `Err` is the error to answer.
    pub(super) fn check_member(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let g = self
            .groups
            .get(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if g.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(instance) = instance_id {
            if let Some(current) = g.static_members.get(instance) {
                if current != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !g.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub(super) fn sync(&mut self, now_ms: i64, req: ReqId, r: SyncRequest) {
        let fail = |e| Reply::Sync(SyncResult::error(e));
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, fail(e));
        }
        if let Err(e) = self.check_member(
            &r.group_id,
            &r.member_id,
            r.instance_id.as_deref(),
            r.generation,
        ) {
            return self.reply(req, fail(e));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        let mismatch = r
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != g.protocol_type.as_ref())
            || r.protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != g.protocol.as_ref());
        if mismatch {
            return self.reply(req, fail(ResponseError::InconsistentGroupProtocol));
        }
        let protocol_type = g.protocol_type.clone();
        let protocol_name = g.protocol.clone();
        let ok = |assignment: Bytes| {
            Reply::Sync(SyncResult {
                error: NONE,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment,
            })
        };
        match g.state {
            GroupState::Empty | GroupState::Dead => {
                self.reply(req, fail(ResponseError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                self.reply(req, fail(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let Some(m) = g.members.get_mut(&r.member_id) else {
                    return;
                };
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
                let a = m.assignment.clone();
                self.reply(req, ok(a));
            }
            GroupState::CompletingRebalance => {
                let is_leader = g.leader.as_deref() == Some(r.member_id.as_str());
                let Some(m) = g.members.get_mut(&r.member_id) else {
                    return;
                };
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
                if let Some(old) = m.awaiting_sync.replace(req) {
                    self.out
                        .push(Action::Reply(old, fail(ResponseError::RebalanceInProgress)));
                }
                if !is_leader {
                    return;
                }
                let Some(g) = self.groups.get_mut(&r.group_id) else {
                    return;
                };
                let assigned: HashMap<&String, &Bytes> =
                    r.assignments.iter().map(|(k, v)| (k, v)).collect();
                let mut replies = Vec::new();
                for m in g.members.values_mut() {
                    m.assignment = assigned
                        .get(&m.id)
                        .map(|b| (*b).clone())
                        .unwrap_or_default();
                    if let Some(s) = m.awaiting_sync.take() {
                        replies.push((s, m.assignment.clone()));
                    }
                }
                g.set_state(GroupState::Stable, now_ms);
                let group_id = r.group_id.clone();
                self.persist_group(&group_id);
                for (s, a) in replies {
                    self.reply(s, ok(a));
                }
            }
        }
    }

    pub(super) fn heartbeat(&mut self, now_ms: i64, req: ReqId, r: HeartbeatRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, Reply::Heartbeat(code(e)));
        }
        if let Err(e) = self.check_member(
            &r.group_id,
            &r.member_id,
            r.instance_id.as_deref(),
            r.generation,
        ) {
            return self.reply(req, Reply::Heartbeat(code(e)));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            return;
        };
        let state = g.state;
        if let Some(m) = g.members.get_mut(&r.member_id) {
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
        let error = match state {
            GroupState::Empty | GroupState::Dead => code(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => NONE,
        };
        self.reply(req, Reply::Heartbeat(error));
    }

    pub(super) fn leave(&mut self, now_ms: i64, req: ReqId, r: LeaveRequest) {
        if let Some(e) = self.partition_error(r.partition) {
            return self.reply(req, Reply::Leave(code(e), Vec::new()));
        }
        let Some(g) = self.groups.get_mut(&r.group_id) else {
            let results = r
                .members
                .iter()
                .map(|(m, i)| (m.clone(), i.clone(), code(ResponseError::UnknownMemberId)))
                .collect();
            return self.reply(
                req,
                Reply::Leave(code(ResponseError::UnknownMemberId), results),
            );
        };
        let mut results = Vec::with_capacity(r.members.len());
        let mut removed_any = false;
        let mut replies = Vec::new();
        for (member_id, instance_id) in &r.members {
            let resolved = match instance_id {
                Some(instance) => match g.static_members.get(instance) {
                    Some(current) if member_id.is_empty() || current == member_id => {
                        Ok(current.clone())
                    }
                    Some(_) => Err(ResponseError::FencedInstanceId),
                    None => Err(ResponseError::UnknownMemberId),
                },
                None if g.pending_members.remove(member_id).is_some() => {
                    results.push((member_id.clone(), None, NONE));
                    continue;
                }
                None if g.members.contains_key(member_id) => Ok(member_id.clone()),
                None => Err(ResponseError::UnknownMemberId),
            };
            match resolved {
                Ok(id) => {
                    if let Some(m) = remove_member(g, &id) {
                        if let Some(j) = m.awaiting_join {
                            replies.push((
                                j,
                                Reply::Join(JoinResult::error(ResponseError::UnknownMemberId, &id)),
                            ));
                        }
                        if let Some(s) = m.awaiting_sync {
                            replies.push((
                                s,
                                Reply::Sync(SyncResult::error(ResponseError::UnknownMemberId)),
                            ));
                        }
                    }
                    removed_any = true;
                    results.push((member_id.clone(), instance_id.clone(), NONE));
                }
                Err(e) => results.push((member_id.clone(), instance_id.clone(), code(e))),
            }
        }
        let top = if r.members.len() == 1 {
            results[0].2
        } else {
            NONE
        };
        for (id, reply) in replies {
            self.reply(id, reply);
        }
        if removed_any {
            self.on_members_removed(now_ms, &r.group_id);
        }
        self.reply(req, Reply::Leave(top, results));
    }

    /// After members left or expired: rebalance the rest (or finish an ongoing one).
    fn on_members_removed(&mut self, now_ms: i64, group_id: &str) {
        let Some(g) = self.groups.get(group_id) else {
            return;
        };
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, group_id);
                self.maybe_complete_join(now_ms, group_id);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, group_id),
            GroupState::Empty | GroupState::Dead => {}
        }
        // A rebalance with nobody left completes at once (→ Empty).
        if let Some(g) = self.groups.get(group_id) {
            if g.state == GroupState::PreparingRebalance && g.members.is_empty() {
                self.complete_join(now_ms, group_id);
            }
        }
    }

    pub(super) fn tick(&mut self, now_ms: i64) {
        let mut expired: Vec<(String, String)> = Vec::new();
        let mut due: Vec<String> = Vec::new();
        for g in self.groups.values_mut() {
            g.pending_members.retain(|_, deadline| *deadline > now_ms);
            for m in g.members.values() {
                // Members waiting in a join are kept alive by the rebalance timeout instead;
                // members waiting for the leader's sync are kept alive until it comes.
                let waiting = m.awaiting_join.is_some() || m.awaiting_sync.is_some();
                if !waiting && m.heartbeat_deadline_ms <= now_ms {
                    expired.push((g.id.clone(), m.id.clone()));
                }
            }
            if g.state == GroupState::PreparingRebalance {
                due.push(g.id.clone());
            }
        }
        for (group_id, member_id) in expired {
            if let Some(g) = self.groups.get_mut(&group_id) {
                remove_member(g, &member_id);
            }
            self.on_members_removed(now_ms, &group_id);
        }
        for group_id in due {
            let still = self.groups.get(&group_id).is_some_and(|g| {
                g.state == GroupState::PreparingRebalance && now_ms >= g.rebalance_deadline_ms
            });
            if still {
                self.complete_join(now_ms, &group_id);
            } else {
                // Expired MEMBER_ID_REQUIRED reservations may have been all it waited for.
                self.maybe_complete_join(now_ms, &group_id);
            }
        }
    }
}
