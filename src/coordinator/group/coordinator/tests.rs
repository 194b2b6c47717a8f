//! Deterministic tests of the coordinator with a simulated clock: every reply and record is
//! observed through the actions it returns.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const P: i32 = 0;

struct Sim {
    c: Coordinator,
    now: i64,
    next: ReqId,
    replies: HashMap<ReqId, Reply>,
    log: Vec<StoredRecord>,
    auto_persist: bool,
    held: Vec<u64>,
}

fn e(err: ResponseError) -> i16 {
    err.code()
}

impl Sim {
    fn new() -> Sim {
        let mut s = Sim {
            c: Coordinator::new(CoordinatorConfig::default(), 7),
            now: 1_000,
            next: 1,
            replies: HashMap::new(),
            log: Vec::new(),
            auto_persist: true,
            held: Vec::new(),
        };
        s.event(Event::LoadStarted(P));
        s.event(Event::LoadCompleted {
            partition: P,
            records_read: 0,
        });
        s
    }

    /// A fresh coordinator that loaded partition P from `records`.
    fn replayed(records: Vec<StoredRecord>, records_read: usize) -> Sim {
        let mut s = Sim::new();
        s.event(Event::LoadStarted(P));
        for rec in records {
            s.event(Event::Replay(P, rec));
        }
        s.event(Event::LoadCompleted {
            partition: P,
            records_read,
        });
        s
    }

    fn event(&mut self, ev: Event) {
        let actions = self.c.on_event(self.now, ev);
        for a in actions {
            match a {
                Action::Reply(id, r) => {
                    assert!(
                        self.replies.insert(id, r).is_none(),
                        "request {id} answered twice"
                    );
                }
                Action::Persist { records, token, .. } => {
                    self.log.extend(records);
                    if let Some(t) = token {
                        if self.auto_persist {
                            self.event(Event::Persisted { token: t, error: 0 });
                        } else {
                            self.held.push(t);
                        }
                    }
                }
            }
        }
    }

    fn send(&mut self, f: impl FnOnce(ReqId) -> Event) -> ReqId {
        let id = self.next;
        self.next += 1;
        self.event(f(id));
        id
    }

    fn take(&mut self, id: ReqId) -> Option<Reply> {
        self.replies.remove(&id)
    }

    fn advance(&mut self, ms: i64) {
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + 100).min(end);
            self.event(Event::Tick);
        }
    }

    fn join_as(&mut self, member: &str, instance: Option<&str>, protocols: &[&str]) -> ReqId {
        let r = JoinRequest {
            group_id: "g".into(),
            partition: P,
            member_id: member.into(),
            instance_id: instance.map(Into::into),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            require_known_member_id: true,
        };
        self.send(|id| Event::Join(id, r))
    }

    fn join(&mut self, member: &str) -> ReqId {
        self.join_as(member, None, &["range"])
    }

    fn join_result(&mut self, id: ReqId) -> JoinResult {
        match self.take(id) {
            Some(Reply::Join(r)) => r,
            other => panic!("expected a join reply, got {other:?}"),
        }
    }

    /// The two-step join of a new dynamic member; returns its id (the join stays pending).
    fn new_member(&mut self) -> (String, ReqId) {
        let first = self.join("");
        let r = self.join_result(first);
        assert_eq!(r.error, e(ResponseError::MemberIdRequired));
        assert!(!r.member_id.is_empty());
        let id = self.join(&r.member_id);
        (r.member_id, id)
    }

    fn sync(&mut self, member: &str, generation: i32, assignments: &[(&str, &str)]) -> ReqId {
        let r = SyncRequest {
            group_id: "g".into(),
            partition: P,
            generation,
            member_id: member.into(),
            instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        };
        self.send(|id| Event::Sync(id, r))
    }

    fn sync_result(&mut self, id: ReqId) -> SyncResult {
        match self.take(id) {
            Some(Reply::Sync(r)) => r,
            other => panic!("expected a sync reply, got {other:?}"),
        }
    }

    fn heartbeat_as(&mut self, member: &str, instance: Option<&str>, generation: i32) -> i16 {
        let r = HeartbeatRequest {
            group_id: "g".into(),
            partition: P,
            generation,
            member_id: member.into(),
            instance_id: instance.map(Into::into),
        };
        let id = self.send(|id| Event::Heartbeat(id, r));
        match self.take(id) {
            Some(Reply::Heartbeat(code)) => code,
            other => panic!("expected a heartbeat reply, got {other:?}"),
        }
    }

    fn heartbeat(&mut self, member: &str, generation: i32) -> i16 {
        self.heartbeat_as(member, None, generation)
    }

    fn commit(&mut self, member: &str, generation: i32, offsets: &[(&str, i32, i64)]) -> ReqId {
        let r = CommitRequest {
            txn: None,
            transactional_id: None,
            txn_add: false,
            group_id: "g".into(),
            partition: P,
            generation,
            member_id: member.into(),
            instance_id: None,
            offsets: offsets
                .iter()
                .map(|(t, p, o)| CommitPartition {
                    topic: t.to_string(),
                    partition: *p,
                    offset: *o,
                    leader_epoch: 3,
                    metadata: Some("m".into()),
                })
                .collect(),
        };
        self.send(|id| Event::Commit(id, r))
    }

    fn fetch_all(&mut self) -> Vec<(String, i32, i64)> {
        let id = self.send(|id| {
            Event::Fetch(
                id,
                FetchRequest {
                    group_id: "g".into(),
                    partition: P,
                    topics: None,
                    require_stable: false,
                },
            )
        });
        match self.take(id) {
            Some(Reply::Fetch(0, offsets)) => offsets
                .into_iter()
                .map(|o| (o.topic, o.partition, o.offset))
                .collect(),
            other => panic!("expected offsets, got {other:?}"),
        }
    }

    fn describe(&mut self) -> GroupDescription {
        let id = self.send(|id| Event::Describe(id, "g".into(), P));
        match self.take(id) {
            Some(Reply::Describe(d)) => d,
            other => panic!("expected a description, got {other:?}"),
        }
    }

    /// One member alone, stable at generation 1 with assignment "a".
    fn stable_single(&mut self) -> String {
        let (a, join) = self.new_member();
        let r = self.join_result(join);
        assert_eq!(
            (r.error, r.generation, r.leader.as_str()),
            (0, 1, a.as_str())
        );
        assert_eq!(r.members.len(), 1);
        let s = self.sync(&a, 1, &[(&a, "a")]);
        assert_eq!(self.sync_result(s).assignment, Bytes::from("a"));
        a
    }

    /// Two members stable at generation 2: (leader, follower).
    fn stable_pair(&mut self) -> (String, String) {
        let a = self.stable_single();
        let (b, b_join) = self.new_member();
        assert!(self.take(b_join).is_none(), "B waits for A to rejoin");
        assert_eq!(self.heartbeat(&a, 1), e(ResponseError::RebalanceInProgress));
        let a_join = self.join(&a);
        let ra = self.join_result(a_join);
        let rb = self.join_result(b_join);
        assert_eq!((ra.generation, rb.generation), (2, 2));
        assert_eq!(ra.leader, a);
        assert_eq!(ra.members.len(), 2, "the leader sees every member");
        assert!(rb.members.is_empty());
        let sb = self.sync(&b, 2, &[]);
        assert!(
            self.take(sb).is_none(),
            "a follower's sync waits for the leader"
        );
        let sa = self.sync(&a, 2, &[(&a, "pa"), (&b, "pb")]);
        assert_eq!(self.sync_result(sa).assignment, Bytes::from("pa"));
        assert_eq!(self.sync_result(sb).assignment, Bytes::from("pb"));
        (a, b)
    }
}

#[test]
fn join_sync_heartbeat_of_one_member() {
    let mut s = Sim::new();
    let a = s.stable_single();
    assert_eq!(s.heartbeat(&a, 1), 0);
    let d = s.describe();
    assert_eq!(d.state, "Stable");
    assert_eq!(d.protocol, "range");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].assignment, Bytes::from("a"));
}

#[test]
fn second_member_triggers_a_rebalance_and_both_get_assignments() {
    let mut s = Sim::new();
    let (a, b) = s.stable_pair();
    assert_eq!(s.heartbeat(&a, 2), 0);
    assert_eq!(s.heartbeat(&b, 2), 0);
    assert_eq!(s.describe().members.len(), 2);
}

#[test]
fn fencing_errors() {
    let mut s = Sim::new();
    let (a, b) = s.stable_pair();
    assert_eq!(s.heartbeat(&a, 1), e(ResponseError::IllegalGeneration));
    assert_eq!(s.heartbeat("nobody", 2), e(ResponseError::UnknownMemberId));
    let c = s.commit(&b, 1, &[("t", 0, 5)]);
    assert_eq!(
        s.take(c),
        Some(Reply::Commit(vec![(
            "t".into(),
            0,
            e(ResponseError::IllegalGeneration)
        )]))
    );
    // A third member starts a rebalance: syncs now fail with REBALANCE_IN_PROGRESS.
    let (_c, _cj) = s.new_member();
    let sy = s.sync(&a, 2, &[]);
    assert_eq!(
        s.sync_result(sy).error,
        e(ResponseError::RebalanceInProgress)
    );
    // Join with an unknown member id.
    let j = s.join("ghost");
    assert_eq!(s.join_result(j).error, e(ResponseError::UnknownMemberId));
}

#[test]
fn a_silent_member_is_removed_after_its_session_timeout() {
    let mut s = Sim::new();
    let (a, b) = s.stable_pair();
    // A keeps heartbeating, B goes silent.
    for _ in 0..12 {
        s.advance(1_000);
        assert_eq!(
            s.heartbeat(&a, 2),
            if s.describe().members.len() == 2 {
                0
            } else {
                e(ResponseError::RebalanceInProgress)
            }
        );
    }
    assert_eq!(s.describe().members.len(), 1);
    assert_eq!(s.heartbeat(&b, 2), e(ResponseError::UnknownMemberId));
    let j = s.join(&a);
    let r = s.join_result(j);
    assert_eq!((r.generation, r.members.len()), (3, 1));
}

#[test]
fn members_not_rejoining_within_the_rebalance_timeout_are_dropped() {
    let mut s = Sim::new();
    let (a, b) = s.stable_pair();
    let (_c, c_join) = s.new_member();
    let a_join = s.join(&a);
    // B heartbeats (learns of the rebalance) but never rejoins: its poll loop is stuck.
    s.advance(5_000);
    assert_eq!(s.heartbeat(&b, 2), e(ResponseError::RebalanceInProgress));
    assert!(s.take(a_join).is_none());
    s.advance(REBALANCE_MS as i64);
    let ra = s.join_result(a_join);
    let rc = s.join_result(c_join);
    assert_eq!((ra.generation, rc.generation), (3, 3));
    assert_eq!(ra.members.len(), 2);
    assert_eq!(s.heartbeat(&b, 3), e(ResponseError::UnknownMemberId));
}

#[test]
fn leave_rebalances_the_rest() {
    let mut s = Sim::new();
    let (a, b) = s.stable_pair();
    let l = s.send(|id| {
        Event::Leave(
            id,
            LeaveRequest {
                group_id: "g".into(),
                partition: P,
                members: vec![(b.clone(), None), ("ghost".into(), None)],
            },
        )
    });
    match s.take(l) {
        Some(Reply::Leave(0, rs)) => {
            assert_eq!(rs[0].2, 0);
            assert_eq!(rs[1].2, e(ResponseError::UnknownMemberId));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.heartbeat(&a, 2), e(ResponseError::RebalanceInProgress));
    let j = s.join(&a);
    let r = s.join_result(j);
    assert_eq!((r.generation, r.members.len()), (3, 1));
    // The last member leaving empties the group.
    let l = s.send(|id| {
        Event::Leave(
            id,
            LeaveRequest {
                group_id: "g".into(),
                partition: P,
                members: vec![(a.clone(), None)],
            },
        )
    });
    assert!(matches!(s.take(l), Some(Reply::Leave(0, _))));
    assert_eq!(s.describe().state, "Empty");
}

#[test]
fn static_member_rejoining_replaces_its_old_id_without_rebalance() {
    let mut s = Sim::new();
    // Static members join without MEMBER_ID_REQUIRED.
    let j1 = s.join_as("", Some("i1"), &["range"]);
    let r1 = s.join_result(j1);
    assert_eq!((r1.error, r1.generation), (0, 1));
    let a = r1.member_id.clone();
    let sy = s.sync(&a, 1, &[(&a, "pa")]);
    assert_eq!(s.sync_result(sy).assignment, Bytes::from("pa"));
    let j2 = s.join_as("", Some("i2"), &["range"]);
    let a_again = s.join_as(&a, Some("i1"), &["range"]);
    let ra = s.join_result(a_again);
    let rb = s.join_result(j2);
    let b = rb.member_id.clone();
    assert_eq!(ra.generation, 2);
    let sb = s.sync(&b, 2, &[]);
    let sa = s.sync(&a, 2, &[(&a, "pa"), (&b, "pb")]);
    assert_eq!(s.sync_result(sa).error, 0);
    assert_eq!(s.sync_result(sb).assignment, Bytes::from("pb"));

    // i2 restarts: new member id, same generation, old assignment kept; old id fenced.
    let j = s.join_as("", Some("i2"), &["range"]);
    let r = s.join_result(j);
    assert_eq!((r.error, r.generation), (0, 2));
    assert_ne!(r.member_id, b);
    assert_eq!(s.describe().state, "Stable");
    assert_eq!(
        s.heartbeat_as(&b, Some("i2"), 2),
        e(ResponseError::FencedInstanceId)
    );
    let sy = s.sync(&r.member_id, 2, &[]);
    assert_eq!(s.sync_result(sy).assignment, Bytes::from("pb"));
    assert_eq!(s.heartbeat_as(&r.member_id, Some("i2"), 2), 0);
}

#[test]
fn protocol_is_one_every_member_supports() {
    let mut s = Sim::new();
    let j = s.join_as("", Some("i1"), &["range", "roundrobin"]);
    let a = s.join_result(j).member_id;
    let sy = s.sync(&a, 1, &[]);
    assert_eq!(s.sync_result(sy).error, 0);
    let jb = s.join_as("", Some("i2"), &["roundrobin"]);
    let ja = s.join_as(&a, Some("i1"), &["range", "roundrobin"]);
    assert_eq!(
        s.join_result(ja).protocol_name.as_deref(),
        Some("roundrobin")
    );
    assert_eq!(
        s.join_result(jb).protocol_name.as_deref(),
        Some("roundrobin")
    );
    let jc = s.join_as("", Some("i3"), &["cooperative-sticky"]);
    assert_eq!(
        s.join_result(jc).error,
        e(ResponseError::InconsistentGroupProtocol)
    );
}

#[test]
fn offsets_are_visible_only_once_durable_and_simple_consumers_may_commit() {
    let mut s = Sim::new();
    s.auto_persist = false;
    let c = s.commit("", -1, &[("t", 0, 10), ("t", 1, 20)]);
    assert!(s.take(c).is_none(), "answered only once durable");
    assert!(s.fetch_all().is_empty());
    let token = s.held.pop().unwrap();
    s.event(Event::Persisted { token, error: 0 });
    assert_eq!(
        s.take(c),
        Some(Reply::Commit(vec![("t".into(), 0, 0), ("t".into(), 1, 0)]))
    );
    assert_eq!(
        s.fetch_all(),
        vec![("t".into(), 0, 10), ("t".into(), 1, 20)]
    );
    // A failed append is reported and changes nothing.
    let c = s.commit("", -1, &[("t", 0, 99)]);
    let token = s.held.pop().unwrap();
    s.event(Event::Persisted {
        token,
        error: e(ResponseError::CoordinatorNotAvailable),
    });
    assert_eq!(
        s.take(c),
        Some(Reply::Commit(vec![(
            "t".into(),
            0,
            e(ResponseError::CoordinatorNotAvailable)
        )]))
    );
    assert_eq!(s.fetch_all()[0].2, 10);
}

#[test]
fn a_group_with_members_refuses_simple_commits_and_deletion() {
    let mut s = Sim::new();
    let a = s.stable_single();
    let c = s.commit("", -1, &[("t", 0, 1)]);
    assert_eq!(
        s.take(c),
        Some(Reply::Commit(vec![(
            "t".into(),
            0,
            e(ResponseError::UnknownMemberId)
        )]))
    );
    let c = s.commit(&a, 1, &[("t", 0, 7)]);
    assert_eq!(s.take(c), Some(Reply::Commit(vec![("t".into(), 0, 0)])));
    let d = s.send(|id| Event::Delete(id, "g".into(), P));
    assert_eq!(
        s.take(d),
        Some(Reply::Delete(e(ResponseError::NonEmptyGroup)))
    );
    // Session expires → Empty → deletable; offsets go with it.
    s.advance(SESSION_MS as i64 + 200);
    assert_eq!(s.describe().state, "Empty");
    let d = s.send(|id| Event::Delete(id, "g".into(), P));
    assert_eq!(s.take(d), Some(Reply::Delete(0)));
    assert!(s.fetch_all().is_empty());
    assert_eq!(s.describe().state, "Dead");
    assert!(s
        .log
        .iter()
        .any(|r| matches!(r, StoredRecord::Offset { value: None, .. })));
}

#[test]
fn replaying_the_log_restores_offsets_and_groups() {
    let mut s = Sim::new();
    let a = s.stable_single();
    for i in 0..100 {
        let c = s.commit(&a, 1, &[("t", 0, i), ("t", 1, 1000 + i)]);
        assert!(matches!(s.take(c), Some(Reply::Commit(_))));
    }
    let log = s.log.clone();

    let mut r = Sim::new();
    r.event(Event::LoadStarted(P));
    let list = r.send(|id| {
        Event::Fetch(
            id,
            FetchRequest {
                group_id: "g".into(),
                partition: P,
                topics: None,
                require_stable: false,
            },
        )
    });
    assert_eq!(
        r.take(list),
        Some(Reply::Fetch(
            e(ResponseError::CoordinatorLoadInProgress),
            Vec::new()
        ))
    );
    for rec in log.clone() {
        r.event(Event::Replay(P, rec));
    }
    r.event(Event::LoadCompleted {
        partition: P,
        records_read: log.len(),
    });
    assert_eq!(
        r.fetch_all(),
        vec![("t".into(), 0, 99), ("t".into(), 1, 1099)]
    );
    // The member survives the reload and can keep heartbeating.
    assert_eq!(r.heartbeat(&a, 1), 0);
    assert_eq!(r.describe().state, "Stable");

    // What the log cleaner leaves (the last record of each key, in log order) rebuilds the
    // same state.
    let mut last: Vec<StoredRecord> = Vec::new();
    for rec in log.iter().rev() {
        if !last.iter().any(|l| l.encode_key() == rec.encode_key()) {
            last.insert(0, rec.clone());
        }
    }
    assert_eq!(last.len(), 3, "two offsets and the group record");
    let mut t = Sim::replayed(last, 3);
    assert_eq!(
        t.fetch_all(),
        vec![("t".into(), 0, 99), ("t".into(), 1, 1099)]
    );
}

#[test]
fn requests_for_unloaded_partitions_are_refused() {
    let mut s = Sim::new();
    let r = JoinRequest {
        group_id: "g".into(),
        partition: 3,
        member_id: String::new(),
        instance_id: None,
        client_id: "c".into(),
        client_host: String::new(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::new())],
        require_known_member_id: true,
    };
    let j = s.send(|id| Event::Join(id, r));
    assert_eq!(
        s.join_result(j).error,
        e(ResponseError::CoordinatorLoadInProgress)
    );
}

#[test]
fn subscription_topics_parse_and_never_panic() {
    let mut m = vec![0u8, 1, 0, 0, 0, 2];
    for t in ["ab", "c"] {
        m.extend_from_slice(&(t.len() as i16).to_be_bytes());
        m.extend_from_slice(t.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(
        subscribed_topics(&m),
        vec!["ab".to_string(), "c".to_string()]
    );
    for cut in 0..m.len() {
        let _ = subscribed_topics(&m[..cut]);
    }
}

#[test]
fn deleting_a_topic_drops_its_offsets_and_buries_commits_in_flight() {
    let mut s = Sim::new();
    let c = s.commit("", -1, &[("gone", 0, 50), ("kept", 0, 7)]);
    assert!(s.take(c).is_some());
    // A commit of the deleted topic still waiting for its write when the topic goes.
    s.auto_persist = false;
    let late = s.commit("", -1, &[("gone", 1, 60), ("kept", 1, 8)]);
    s.event(Event::TopicsDeleted(vec!["gone".into()]));
    let token = s.held.pop().unwrap();
    s.event(Event::Persisted { token, error: 0 });
    assert_eq!(
        s.take(late),
        Some(Reply::Commit(vec![
            ("gone".into(), 1, 0),
            ("kept".into(), 1, 0)
        ])),
        "answered: the commit was durable before the tombstones"
    );
    assert_eq!(
        s.fetch_all(),
        vec![("kept".into(), 0, 7), ("kept".into(), 1, 8)]
    );
    // The log says the same: replaying it restores only the kept topic's offsets.
    let tombstones: Vec<(String, i32)> = s
        .log
        .iter()
        .filter_map(|r| match r {
            StoredRecord::Offset {
                topic,
                partition,
                value: None,
                ..
            } => Some((topic.clone(), *partition)),
            _ => None,
        })
        .collect();
    assert_eq!(tombstones, vec![("gone".into(), 0), ("gone".into(), 1)]);
    let mut r = Sim::replayed(std::mem::take(&mut s.log), 0);
    assert_eq!(
        r.fetch_all(),
        vec![("kept".into(), 0, 7), ("kept".into(), 1, 8)]
    );
}

#[test]
fn losing_the_partition_answers_waiting_members_not_coordinator_and_drops_its_groups() {
    let mut s = Sim::new();
    s.stable_single();
    // A second member joins: it waits for the first to rejoin; meanwhile the partition moves
    // to another broker.
    let (_, pending) = s.new_member();
    assert!(s.take(pending).is_none(), "waiting in the rebalance");
    s.event(Event::Unloaded(P));
    let r = s.join_result(pending);
    assert_eq!(r.error, e(ResponseError::NotCoordinator));
    assert!(
        s.c.summaries().is_empty(),
        "the group is gone from this coordinator"
    );
    assert!(!s.c.is_loaded(P));
}

/// TxnOffsetCommit: offsets wait for the producer's marker; `require_stable` fetches see
/// UNSTABLE_OFFSET_COMMIT meanwhile; commit makes them visible, abort drops them, and a reload
/// from the log (transactional records, then the marker) ends the same.
#[test]
fn transactional_offsets_wait_for_the_marker() {
    let mut s = Sim::new();
    s.commit("", -1, &[("t", 0, 5)]);
    let txn_commit = |s: &mut Sim, pid: i64, offset: i64| {
        let r = CommitRequest {
            txn: Some((pid, 0)),
            transactional_id: None,
            txn_add: false,
            group_id: "g".into(),
            partition: P,
            generation: -1,
            member_id: String::new(),
            instance_id: None,
            offsets: vec![CommitPartition {
                topic: "t".into(),
                partition: 0,
                offset,
                leader_epoch: -1,
                metadata: None,
            }],
        };
        let id = s.send(|id| Event::Commit(id, r));
        assert_eq!(s.take(id), Some(Reply::Commit(vec![("t".into(), 0, 0)])));
    };
    let fetch = |s: &mut Sim, require_stable: bool| {
        let id = s.send(|id| {
            Event::Fetch(
                id,
                FetchRequest {
                    group_id: "g".into(),
                    partition: P,
                    topics: Some(vec![("t".into(), vec![0])]),
                    require_stable,
                },
            )
        });
        match s.take(id) {
            Some(Reply::Fetch(0, o)) => (o[0].offset, o[0].error),
            other => panic!("{other:?}"),
        }
    };
    txn_commit(&mut s, 42, 9);
    assert_eq!(
        fetch(&mut s, false),
        (5, 0),
        "not visible before the marker"
    );
    assert_eq!(
        fetch(&mut s, true),
        (-1, e(ResponseError::UnstableOffsetCommit))
    );
    s.event(Event::TxnMarker {
        partition: P,
        producer_id: 42,
        commit: false,
    });
    assert_eq!(fetch(&mut s, true), (5, 0), "aborted: dropped");
    txn_commit(&mut s, 42, 11);
    s.event(Event::TxnMarker {
        partition: P,
        producer_id: 42,
        commit: true,
    });
    assert_eq!(fetch(&mut s, true), (11, 0), "committed: visible");

    // A load replays the pending record and then the marker.
    let mut r = Sim::new();
    r.event(Event::LoadStarted(P));
    r.event(Event::ReplayTxn(
        P,
        7,
        StoredRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: Some(crate::coordinator::group::records::OffsetValue {
                offset: 3,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 0,
            }),
        },
    ));
    r.event(Event::LoadCompleted {
        partition: P,
        records_read: 1,
    });
    assert_eq!(
        fetch(&mut r, true),
        (-1, e(ResponseError::UnstableOffsetCommit))
    );
    r.event(Event::TxnMarker {
        partition: P,
        producer_id: 7,
        commit: true,
    });
    assert_eq!(fetch(&mut r, true), (3, 0));
}
