//! Kafka's transaction coordinator behaviours, one at a time, on a simulated clock.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use super::coordinator::{
    Action, AddRequest, EndRequest, Event, InitRequest, ListFilter, Reply, TxnConfig,
    TxnCoordinator,
};
use super::records::{TxnRecord, TxnState, TxnValue};

const P: i32 = 7;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// A coordinator with state partition `P` loaded, at `transaction.version` 1 (the classic
/// protocol's fencing: one epoch bump).
fn loaded() -> TxnCoordinator {
    loaded_at(1)
}

fn loaded_at(transaction_version: i16) -> TxnCoordinator {
    let mut c = TxnCoordinator::new(TxnConfig {
        transaction_version,
        ..TxnConfig::default()
    });
    c.on_event(
        0,
        Event::LoadStarted {
            partition: P,
            coordinator_epoch: 3,
        },
    );
    c.on_event(0, Event::LoadCompleted(P));
    c
}

fn init(id: &str, timeout_ms: i32) -> InitRequest {
    InitRequest {
        transactional_id: id.into(),
        partition: P,
        timeout_ms,
        expected: None,
    }
}

fn add(pid: i64, epoch: i16, parts: &[(&str, i32)]) -> AddRequest {
    AddRequest {
        transactional_id: "t".into(),
        partition: P,
        producer_id: pid,
        producer_epoch: epoch,
        partitions: parts.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        verify_only: false,
    }
}

fn end(pid: i64, epoch: i16, commit: bool) -> EndRequest {
    EndRequest {
        transactional_id: "t".into(),
        partition: P,
        producer_id: pid,
        producer_epoch: epoch,
        commit,
        bump_epoch: false,
    }
}

/// EndTxn v5 (transaction version 2).
fn end_v2(pid: i64, epoch: i16, commit: bool) -> EndRequest {
    EndRequest {
        bump_epoch: true,
        ..end(pid, epoch, commit)
    }
}

/// A classic EndTxn's answer (no producer id or epoch in it).
fn ended(error: i16) -> Reply {
    Reply::End {
        error,
        producer_id: -1,
        producer_epoch: -1,
    }
}

/// Completes every write, allocation and marker write the actions ask for (the log is
/// `log`), and returns the replies, in order.
fn settle(
    c: &mut TxnCoordinator,
    now: i64,
    actions: Vec<Action>,
    log: &mut Vec<TxnRecord>,
) -> Vec<Reply> {
    drive(c, now, actions, log).0
}

/// [`settle`], also returning the markers written: (producer id, epoch, commit).
fn drive(
    c: &mut TxnCoordinator,
    now: i64,
    mut actions: Vec<Action>,
    log: &mut Vec<TxnRecord>,
) -> (Vec<Reply>, Vec<(i64, i16, bool)>) {
    let mut replies = Vec::new();
    let mut markers = Vec::new();
    let mut next_pid = 5000;
    while !actions.is_empty() {
        let mut next = Vec::new();
        for a in actions {
            match a {
                Action::Reply(_, r) => replies.push(r),
                Action::AllocateProducerId { token } => {
                    next_pid += 1;
                    next.extend(c.on_event(
                        now,
                        Event::ProducerId {
                            token,
                            result: Ok(next_pid),
                        },
                    ));
                }
                Action::Persist { record, token, .. } => {
                    log.push(record);
                    next.extend(c.on_event(now, Event::Persisted { token, error: 0 }));
                }
                Action::WriteMarkers {
                    token,
                    producer_id,
                    producer_epoch,
                    commit,
                    ..
                } => {
                    markers.push((producer_id, producer_epoch, commit));
                    next.extend(c.on_event(
                        now,
                        Event::MarkersWritten {
                            token,
                            retry: Vec::new(),
                        },
                    ));
                }
            }
        }
        actions = next;
    }
    (replies, markers)
}

/// EndTxn `end` as request `req` at `now`, with its Prepare record made durable: the
/// coordinator's actions after that (the reply, then the markers to write).
fn prepared(c: &mut TxnCoordinator, now: i64, req: u64, end: EndRequest) -> Vec<Action> {
    let a = c.on_event(now, Event::End(req, end));
    let [Action::Persist { token, .. }] = &a[..] else {
        panic!("{a:?}")
    };
    c.on_event(
        now,
        Event::Persisted {
            token: *token,
            error: 0,
        },
    )
}

fn init_ok(c: &mut TxnCoordinator, log: &mut Vec<TxnRecord>) -> (i64, i16) {
    let a = c.on_event(0, Event::Init(1, init("t", 60_000)));
    match settle(c, 0, a, log).as_slice() {
        [Reply::Init {
            error: 0,
            producer_id,
            producer_epoch,
        }] => (*producer_id, *producer_epoch),
        other => panic!("{other:?}"),
    }
}

fn last_state(log: &[TxnRecord]) -> (TxnState, i16) {
    let v = log.last().and_then(|r| r.value.as_ref()).unwrap();
    (v.state, v.producer_epoch)
}

#[test]
fn a_new_id_gets_a_producer_id_then_each_init_bumps_the_epoch() {
    let mut c = loaded();
    let mut log = Vec::new();
    let (pid, epoch) = init_ok(&mut c, &mut log);
    assert_eq!((pid, epoch), (5001, 0));
    assert_eq!(last_state(&log), (TxnState::Empty, 0));
    let (pid2, epoch2) = init_ok(&mut c, &mut log);
    assert_eq!((pid2, epoch2), (pid, 1));
}

#[test]
fn commit_writes_prepare_then_markers_then_complete() {
    let mut c = loaded();
    let mut log = Vec::new();
    let (pid, e) = init_ok(&mut c, &mut log);
    let a = c.on_event(1, Event::Add(2, add(pid, e, &[("a", 0), ("b", 1)])));
    assert!(matches!(&a[..], [Action::Persist { .. }]));
    let r = settle(&mut c, 1, a, &mut log);
    assert_eq!(
        r,
        vec![Reply::Add(vec![("a".into(), 0, 0), ("b".into(), 1, 0)])]
    );
    // Partitions already in the transaction: answered at once, nothing written.
    let a = c.on_event(2, Event::Add(3, add(pid, e, &[("a", 0)])));
    assert_eq!(
        a,
        vec![Action::Reply(3, Reply::Add(vec![("a".into(), 0, 0)]))]
    );

    let a = c.on_event(3, Event::End(4, end(pid, e, true)));
    let [Action::Persist { record, token, .. }] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(
        record.value.as_ref().unwrap().state,
        TxnState::PrepareCommit
    );
    let a = c.on_event(
        3,
        Event::Persisted {
            token: *token,
            error: 0,
        },
    );
    assert_eq!(a[0], Action::Reply(4, ended(0)));
    let Action::WriteMarkers {
        token,
        producer_id,
        producer_epoch,
        commit,
        coordinator_epoch,
        partitions,
        ..
    } = &a[1]
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        (*producer_id, *producer_epoch, *commit, *coordinator_epoch),
        (pid, e, true, 3)
    );
    assert_eq!(partitions, &vec![("a".to_owned(), 0), ("b".to_owned(), 1)]);
    // Until the markers are written, the transaction cannot be touched.
    let busy = c.on_event(3, Event::End(5, end(pid, e, true)));
    assert_eq!(
        busy,
        vec![Action::Reply(
            5,
            ended(code(ResponseError::ConcurrentTransactions))
        )]
    );
    let a = c.on_event(
        4,
        Event::MarkersWritten {
            token: *token,
            retry: Vec::new(),
        },
    );
    settle(&mut c, 4, a, &mut Vec::new());
    // A retried EndTxn of the finished commit succeeds; an abort of it does not.
    let a = c.on_event(5, Event::End(6, end(pid, e, true)));
    assert_eq!(a, vec![Action::Reply(6, ended(0))]);
    let a = c.on_event(5, Event::End(7, end(pid, e, false)));
    assert_eq!(
        a,
        vec![Action::Reply(
            7,
            ended(code(ResponseError::InvalidTxnState))
        )]
    );
}

#[test]
fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
    // Version 2 ends the fenced transaction as a version 2 one: one more bump (Kafka's).
    for (version, bumps) in [(1, 1), (2, 2)] {
        fence_and_abort_at(version, bumps);
    }
}

fn fence_and_abort_at(version: i16, bumps: i16) {
    let mut c = loaded_at(version);
    let mut log = Vec::new();
    let (pid, e) = init_ok(&mut c, &mut log);
    let a = c.on_event(1, Event::Add(2, add(pid, e, &[("a", 0)])));
    settle(&mut c, 1, a, &mut log);
    // The new producer: the ongoing transaction is aborted with the epoch bumped.
    let a = c.on_event(2, Event::Init(3, init("t", 60_000)));
    for x in &a {
        if let Action::Persist { record, .. } = x {
            let v = record.value.as_ref().unwrap();
            assert_eq!(
                (v.state, v.producer_epoch),
                (TxnState::PrepareAbort, e + bumps)
            );
        }
    }
    let (replies, markers) = drive(&mut c, 2, a, &mut log);
    assert_eq!(markers, vec![(pid, e + bumps, false)]);
    assert_eq!(
        replies,
        vec![Reply::Init {
            error: code(ResponseError::ConcurrentTransactions),
            producer_id: -1,
            producer_epoch: -1
        }]
    );
    assert_eq!(last_state(&log), (TxnState::CompleteAbort, e + bumps));
    // The old producer is fenced; the new one's retry gets the next epoch.
    let a = c.on_event(3, Event::Add(4, add(pid, e, &[("a", 1)])));
    assert_eq!(
        a,
        vec![Action::Reply(
            4,
            Reply::Add(vec![("a".into(), 1, code(ResponseError::ProducerFenced))])
        )]
    );
    assert_eq!(init_ok(&mut c, &mut log), (pid, e + bumps + 1));
}

#[test]
fn a_timed_out_transaction_is_aborted_with_the_epoch_bumped() {
    for (version, bumps) in [(1, 1), (2, 2)] {
        time_out_at(version, bumps);
    }
}

fn time_out_at(version: i16, bumps: i16) {
    let mut c = loaded_at(version);
    let mut log = Vec::new();
    let a = c.on_event(0, Event::Init(1, init("t", 1_000)));
    let pid = match settle(&mut c, 0, a, &mut log).as_slice() {
        [Reply::Init { producer_id, .. }] => *producer_id,
        other => panic!("{other:?}"),
    };
    let a = c.on_event(100, Event::Add(2, add(pid, 0, &[("a", 0)])));
    settle(&mut c, 100, a, &mut log);
    assert!(c.on_event(1_099, Event::Tick).is_empty());
    let a = c.on_event(1_100, Event::Tick);
    settle(&mut c, 1_100, a, &mut log);
    assert_eq!(last_state(&log), (TxnState::CompleteAbort, bumps));
    let a = c.on_event(1_200, Event::End(3, end(pid, 0, true)));
    assert_eq!(
        a,
        vec![Action::Reply(3, ended(code(ResponseError::ProducerFenced)))]
    );
}

#[test]
fn bad_requests_get_kafkas_errors() {
    let mut c = loaded();
    let mut log = Vec::new();
    let err = |a: Vec<Action>| match &a[..] {
        [Action::Reply(_, Reply::Init { error, .. })] => *error,
        [Action::Reply(_, Reply::End { error, .. })] => *error,
        [Action::Reply(_, Reply::Add(v))] => v[0].2,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        err(c.on_event(0, Event::Init(1, init("", 1_000)))),
        code(ResponseError::InvalidRequest)
    );
    assert_eq!(
        err(c.on_event(0, Event::Init(1, init("t", 900_001)))),
        code(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(
        err(c.on_event(0, Event::Init(1, init("t", 0)))),
        code(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(
        err(c.on_event(0, Event::Add(1, add(1, 0, &[("a", 0)])))),
        code(ResponseError::InvalidProducerIdMapping)
    );
    let (pid, e) = init_ok(&mut c, &mut log);
    assert_eq!(
        err(c.on_event(0, Event::Add(1, add(pid + 1, e, &[("a", 0)])))),
        code(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        err(c.on_event(0, Event::End(1, end(pid, e, true)))),
        code(ResponseError::InvalidTxnState)
    );
    // A partition this shard does not lead, and one still loading.
    let mut other = init("t", 1_000);
    other.partition = P + 1;
    assert_eq!(
        err(c.on_event(0, Event::Init(1, other.clone()))),
        code(ResponseError::NotCoordinator)
    );
    c.on_event(
        0,
        Event::LoadStarted {
            partition: P + 1,
            coordinator_epoch: 0,
        },
    );
    assert_eq!(
        err(c.on_event(0, Event::Init(1, other))),
        code(ResponseError::CoordinatorLoadInProgress)
    );
    // Only one transition at a time.
    let a = c.on_event(0, Event::Add(1, add(pid, e, &[("a", 0)])));
    assert!(matches!(&a[..], [Action::Persist { .. }]));
    assert_eq!(
        err(c.on_event(0, Event::Init(2, init("t", 1_000)))),
        code(ResponseError::ConcurrentTransactions)
    );
}

#[test]
fn an_exhausted_epoch_gets_a_new_producer_id() {
    let mut c = loaded();
    let value = TxnValue {
        producer_id: 9,
        producer_epoch: i16::MAX - 1,
        timeout_ms: 1_000,
        state: TxnState::CompleteCommit,
        partitions: BTreeSet::new(),
        last_update_ms: 0,
        start_ms: -1,
        prev_producer_id: -1,
        next_producer_id: -1,
    };
    c.on_event(
        0,
        Event::LoadStarted {
            partition: P,
            coordinator_epoch: 4,
        },
    );
    c.on_event(
        0,
        Event::Replay(
            P,
            TxnRecord {
                transactional_id: "t".into(),
                value: Some(value),
            },
        ),
    );
    c.on_event(0, Event::LoadCompleted(P));
    let mut log = Vec::new();
    assert_eq!(init_ok(&mut c, &mut log), (5001, 0));
}

#[test]
fn a_reload_finishes_decided_transactions() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    c.on_event(
        0,
        Event::LoadStarted {
            partition: P,
            coordinator_epoch: 8,
        },
    );
    let decided = TxnValue {
        producer_id: 9,
        producer_epoch: 2,
        timeout_ms: 1_000,
        state: TxnState::PrepareCommit,
        partitions: BTreeSet::from([("a".to_owned(), 0)]),
        last_update_ms: 0,
        start_ms: 0,
        prev_producer_id: -1,
        next_producer_id: -1,
    };
    c.on_event(
        0,
        Event::Replay(
            P,
            TxnRecord {
                transactional_id: "t".into(),
                value: Some(decided),
            },
        ),
    );
    let a = c.on_event(0, Event::LoadCompleted(P));
    assert!(
        matches!(&a[..], [Action::WriteMarkers { producer_id: 9, producer_epoch: 2, commit: true, coordinator_epoch: 8, partitions, .. }] if partitions.len() == 1),
        "{a:?}"
    );
    // Describe and List see it.
    let a = c.on_event(0, Event::Describe(1, "t".into(), P));
    let [Action::Reply(1, Reply::Describe(d))] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(
        (d.error, d.state.as_str(), d.producer_epoch),
        (0, "PrepareCommit", 2)
    );
    let a = c.on_event(0, Event::Describe(2, "nope".into(), P));
    let [Action::Reply(2, Reply::Describe(d))] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(d.error, code(ResponseError::TransactionalIdNotFound));
    let filter = ListFilter {
        states: vec!["Ongoing".into()],
        producer_ids: vec![],
    };
    let a = c.on_event(0, Event::List(3, filter));
    assert_eq!(a, vec![Action::Reply(3, Reply::List(vec![]))]);
    // Losing the partition answers nothing twice and forgets the id.
    assert!(c.on_event(0, Event::Unloaded(P)).is_empty());
    let a = c.on_event(0, Event::Describe(4, "t".into(), P));
    let [Action::Reply(4, Reply::Describe(d))] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(d.error, code(ResponseError::NotCoordinator));
}

#[test]
fn the_next_transactions_add_waits_for_the_previous_one_to_complete() {
    let mut c = loaded();
    let mut log = Vec::new();
    let (pid, e) = init_ok(&mut c, &mut log);
    let a = c.on_event(1, Event::Add(2, add(pid, e, &[("a", 0)])));
    settle(&mut c, 1, a, &mut log);
    let a = prepared(&mut c, 2, 3, end(pid, e, true));
    let Some(Action::WriteMarkers { token: markers, .. }) = a.get(1).cloned() else {
        panic!("{a:?}")
    };
    // The client's next transaction starts while the markers are being written: no answer yet.
    assert!(c
        .on_event(3, Event::Add(4, add(pid, e, &[("b", 1)])))
        .is_empty());
    // Others sent at the same time (librdkafka's AddOffsetsToTxn beside AddPartitionsToTxn)
    // wait too, up to four; a fifth does not.
    for (req, p) in [(5, 2), (6, 3), (7, 4)] {
        assert!(c
            .on_event(3, Event::Add(req, add(pid, e, &[("b", p)])))
            .is_empty());
    }
    let busy = c.on_event(3, Event::Add(8, add(pid, e, &[("b", 5)])));
    assert_eq!(
        busy,
        vec![Action::Reply(
            8,
            Reply::Add(vec![(
                "b".into(),
                5,
                code(ResponseError::ConcurrentTransactions)
            )])
        )]
    );
    let a = c.on_event(
        4,
        Event::MarkersWritten {
            token: markers,
            retry: vec![],
        },
    );
    // Complete record, then the waiting adds go on one after the other in arrival order (each
    // its Ongoing record, then its answer).
    let replies = settle(&mut c, 4, a, &mut log);
    assert_eq!(
        replies,
        (1..=4)
            .map(|p| Reply::Add(vec![("b".into(), p, 0)]))
            .collect::<Vec<_>>()
    );
    assert_eq!(last_state(&log), (TxnState::Ongoing, e));

    // One that waits too long (markers stuck) gets CONCURRENT_TRANSACTIONS on a tick.
    let a = c.on_event(5, Event::End(6, end(pid, e, false)));
    let [Action::Persist { token, .. }] = &a[..] else {
        panic!("{a:?}")
    };
    c.on_event(
        5,
        Event::Persisted {
            token: *token,
            error: 0,
        },
    );
    assert!(c
        .on_event(6, Event::Add(7, add(pid, e, &[("c", 0)])))
        .is_empty());
    assert!(c
        .on_event(6 + super::coordinator::PARK_MS - 1, Event::Tick)
        .iter()
        .all(|a| !matches!(a, Action::Reply(7, _))));
    let a = c.on_event(6 + super::coordinator::PARK_MS, Event::Tick);
    assert!(a.contains(&Action::Reply(
        7,
        Reply::Add(vec![(
            "c".into(),
            0,
            code(ResponseError::ConcurrentTransactions)
        )])
    )));
}

#[test]
fn verify_only_answers_from_the_durable_state_and_writes_nothing() {
    let mut c = loaded();
    let mut log = Vec::new();
    let (pid, e) = init_ok(&mut c, &mut log);
    let verify = |pid: i64, epoch: i16, parts: &[(&str, i32)]| AddRequest {
        verify_only: true,
        ..add(pid, epoch, parts)
    };
    let abortable = code(ResponseError::TransactionAbortable);
    // No transaction yet: nothing is in it.
    let a = c.on_event(1, Event::Add(2, verify(pid, e, &[("a", 0)])));
    assert_eq!(
        a,
        vec![Action::Reply(
            2,
            Reply::Add(vec![("a".into(), 0, abortable)])
        )]
    );
    let a = c.on_event(1, Event::Add(3, add(pid, e, &[("a", 0)])));
    settle(&mut c, 1, a, &mut log);
    let written = log.len();
    // While another partition's add is being written, "a" verifies at once (it is durable).
    let pending = c.on_event(2, Event::Add(4, add(pid, e, &[("b", 0)])));
    let a = c.on_event(2, Event::Add(5, verify(pid, e, &[("a", 0), ("b", 0)])));
    assert_eq!(
        a,
        vec![Action::Reply(
            5,
            Reply::Add(vec![("a".into(), 0, 0), ("b".into(), 0, abortable)])
        )]
    );
    settle(&mut c, 2, pending, &mut log);
    assert_eq!(log.len(), written + 1, "verification writes nothing");
    // Another epoch is fenced, another producer id unknown, another id unknown.
    let a = c.on_event(3, Event::Add(6, verify(pid, e + 1, &[("a", 0)])));
    let fenced = code(ResponseError::ProducerFenced);
    assert_eq!(
        a,
        vec![Action::Reply(6, Reply::Add(vec![("a".into(), 0, fenced)]))]
    );
    let a = c.on_event(3, Event::Add(7, verify(pid + 1, e, &[("a", 0)])));
    let mapping = code(ResponseError::InvalidProducerIdMapping);
    assert_eq!(
        a,
        vec![Action::Reply(7, Reply::Add(vec![("a".into(), 0, mapping)]))]
    );
    // A transaction being decided: CONCURRENT_TRANSACTIONS (the leader's client retries).
    let a = prepared(&mut c, 4, 8, end(pid, e, false));
    let a2 = c.on_event(4, Event::Add(9, verify(pid, e, &[("a", 0)])));
    let busy = code(ResponseError::ConcurrentTransactions);
    assert_eq!(
        a2,
        vec![Action::Reply(9, Reply::Add(vec![("a".into(), 0, busy)]))]
    );
    // Once it ended, its partitions are no longer in a transaction.
    settle(&mut c, 4, a, &mut log);
    let a = c.on_event(5, Event::Add(10, verify(pid, e, &[("a", 0)])));
    assert_eq!(
        a,
        vec![Action::Reply(
            10,
            Reply::Add(vec![("a".into(), 0, abortable)])
        )]
    );
}

/// Answers of `actions` (driven to the end by [`settle`] at `now`), and the log they wrote.
fn run(c: &mut TxnCoordinator, now: i64, event: Event) -> (Vec<Reply>, Vec<TxnRecord>) {
    let a = c.on_event(now, event);
    let mut log = Vec::new();
    let replies = settle(c, now, a, &mut log);
    (replies, log)
}

fn ended_as(pid: i64, epoch: i16) -> Reply {
    Reply::End {
        error: 0,
        producer_id: pid,
        producer_epoch: epoch,
    }
}

#[test]
fn version_2_end_txn_bumps_the_epoch_and_answers_retries_by_kafkas_table() {
    let mut c = loaded_at(2);
    let mut log = Vec::new();
    let (pid, e) = init_ok(&mut c, &mut log);
    let fenced = ended(code(ResponseError::ProducerFenced));
    let its = ended(code(ResponseError::InvalidTxnState));
    // Empty: a commit is refused, a retry's abort is fenced.
    assert_eq!(
        run(&mut c, 1, Event::End(2, end_v2(pid, e, true))).0,
        vec![its.clone()]
    );
    // The leader's implicit add (an AddPartitionsToTxn from a broker) opens the transaction.
    let (r, _) = run(&mut c, 1, Event::Add(3, add(pid, e, &[("a", 0)])));
    assert_eq!(r, vec![Reply::Add(vec![("a".into(), 0, 0)])]);
    // Commit: the Prepare record carries epoch + 1, the reply hands it over, the markers use it.
    let a = prepared(&mut c, 2, 4, end_v2(pid, e, true));
    assert_eq!(a[0], Action::Reply(4, ended_as(pid, e + 1)));
    let Action::WriteMarkers {
        token,
        producer_epoch,
        ..
    } = &a[1]
    else {
        panic!("{a:?}")
    };
    assert_eq!(*producer_epoch, e + 1);
    // A retry while the markers are written: CONCURRENT_TRANSACTIONS; the old epoch is fenced
    // at the partitions' coordinator too.
    assert_eq!(
        run(&mut c, 2, Event::End(5, end_v2(pid, e, true))).0,
        vec![ended(code(ResponseError::ConcurrentTransactions))]
    );
    let a = c.on_event(
        3,
        Event::MarkersWritten {
            token: *token,
            retry: vec![],
        },
    );
    settle(&mut c, 3, a, &mut log);
    assert_eq!(last_state(&log), (TxnState::CompleteCommit, e + 1));
    // CompleteCommit: the retried commit is answered again (no write), its abort is not;
    // the current epoch's commit is INVALID_TXN_STATE.
    assert_eq!(
        run(&mut c, 4, Event::End(6, end_v2(pid, e, true))),
        (vec![ended_as(pid, e + 1)], vec![])
    );
    assert_eq!(
        run(&mut c, 4, Event::End(7, end_v2(pid, e, false))).0,
        vec![its.clone()]
    );
    assert_eq!(
        run(&mut c, 4, Event::End(8, end_v2(pid, e + 1, true))).0,
        vec![its.clone()]
    );
    // Older than a retry: fenced. A classic request of the old epoch: fenced too.
    assert_eq!(
        run(&mut c, 4, Event::End(9, end_v2(pid, e - 1, false))).0,
        vec![fenced.clone()]
    );
    let (r, _) = run(&mut c, 4, Event::Add(10, add(pid, e, &[("a", 1)])));
    assert_eq!(
        r,
        vec![Reply::Add(vec![(
            "a".into(),
            1,
            code(ResponseError::ProducerFenced)
        )])]
    );
    // The current epoch aborts with no partition added: bumped, completed, no markers.
    let (r, written) = run(&mut c, 5, Event::End(11, end_v2(pid, e + 1, false)));
    assert_eq!(r, vec![ended_as(pid, e + 2)]);
    let states: Vec<_> = written
        .iter()
        .map(|w| {
            let v = w.value.as_ref().unwrap();
            (v.state, v.producer_epoch, v.partitions.len(), v.start_ms)
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (TxnState::PrepareAbort, e + 2, 0, 5),
            (TxnState::CompleteAbort, e + 2, 0, 5)
        ]
    );
    // CompleteAbort: the retried abort is answered, a commit is not.
    assert_eq!(
        run(&mut c, 6, Event::End(12, end_v2(pid, e + 1, false))).0,
        vec![ended_as(pid, e + 2)]
    );
    assert_eq!(
        run(&mut c, 6, Event::End(13, end_v2(pid, e + 1, true))).0,
        vec![its]
    );
    // Empty after a new InitProducerId: a retry's abort is fenced.
    let (pid2, e2) = init_ok(&mut c, &mut log);
    assert_eq!((pid2, e2), (pid, e + 3));
    assert_eq!(
        run(&mut c, 7, Event::End(14, end_v2(pid, e2 - 1, false))).0,
        vec![fenced]
    );
    assert_eq!(
        run(&mut c, 7, Event::End(15, end_v2(pid + 1, e2, false))).0,
        vec![ended(code(ResponseError::InvalidProducerIdMapping))]
    );
}

#[test]
fn a_version_2_abort_whose_write_failed_fences_nobody() {
    let mut c = loaded_at(2);
    let mut log = Vec::new();
    let (pid, e) = init_ok(&mut c, &mut log);
    let (r, _) = run(&mut c, 1, Event::Add(2, add(pid, e, &[("a", 0)])));
    assert_eq!(r, vec![Reply::Add(vec![("a".into(), 0, 0)])]);
    // The Prepare record (epoch + 1) fails to be written: the EndTxn gets the write's error.
    let a = c.on_event(2, Event::End(3, end_v2(pid, e, false)));
    let [Action::Persist { token, .. }] = &a[..] else {
        panic!("{a:?}")
    };
    let a = c.on_event(
        2,
        Event::Persisted {
            token: *token,
            error: code(ResponseError::NotEnoughReplicas),
        },
    );
    assert_eq!(
        a,
        vec![Action::Reply(
            3,
            ended(code(ResponseError::CoordinatorNotAvailable))
        )]
    );
    // Its retry, with the epoch the producer still has, aborts (not PRODUCER_FENCED), and the
    // transaction's markers carry the bumped epoch.
    let (r, markers) = {
        let a = c.on_event(3, Event::End(4, end_v2(pid, e, false)));
        drive(&mut c, 3, a, &mut log)
    };
    assert_eq!(r, vec![ended_as(pid, e + 1)]);
    assert_eq!(markers, vec![(pid, e + 1, false)]);
}

/// A coordinator at version 2 whose id "t" is in `state` as producer 9 at `epoch` with
/// partition a-0 (when ongoing or decided) and `next` as its next producer id.
fn replayed(state: TxnState, epoch: i16, next: i64) -> TxnCoordinator {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    c.on_event(
        0,
        Event::LoadStarted {
            partition: P,
            coordinator_epoch: 5,
        },
    );
    let partitions = match state {
        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort => {
            BTreeSet::from([("a".to_owned(), 0)])
        }
        _ => BTreeSet::new(),
    };
    let value = TxnValue {
        producer_id: 9,
        producer_epoch: epoch,
        timeout_ms: 60_000,
        state,
        partitions,
        last_update_ms: 0,
        start_ms: 0,
        prev_producer_id: -1,
        next_producer_id: next,
    };
    let record = TxnRecord {
        transactional_id: "t".into(),
        value: Some(value),
    };
    c.on_event(0, Event::Replay(P, record));
    c
}

#[test]
fn version_2_end_txn_moves_an_exhausted_producer_to_a_new_id() {
    let mut c = replayed(TxnState::Ongoing, i16::MAX - 1, -1);
    c.on_event(0, Event::LoadCompleted(P));
    let a = c.on_event(1, Event::End(2, end_v2(9, i16::MAX - 1, true)));
    let [Action::AllocateProducerId { token }] = &a[..] else {
        panic!("{a:?}")
    };
    let a = c.on_event(
        1,
        Event::ProducerId {
            token: *token,
            result: Ok(77),
        },
    );
    for x in &a {
        if let Action::Persist { record, .. } = x {
            let v = record.value.as_ref().unwrap();
            assert_eq!(
                (v.state, v.producer_id, v.producer_epoch, v.next_producer_id),
                (TxnState::PrepareCommit, 9, i16::MAX, 77)
            );
        }
    }
    let mut log = Vec::new();
    let (replies, markers) = drive(&mut c, 1, a, &mut log);
    assert_eq!(replies, vec![ended_as(77, 0)]);
    assert_eq!(markers, vec![(9, i16::MAX, true)]);
    let v = log.last().and_then(|r| r.value.clone()).unwrap();
    assert_eq!(
        (
            v.state,
            v.producer_id,
            v.producer_epoch,
            v.prev_producer_id,
            v.next_producer_id
        ),
        (TxnState::CompleteCommit, 77, 0, 9, -1)
    );
    // A retry names the previous id at i16::MAX - 1: answered with the new one.
    assert_eq!(
        run(&mut c, 2, Event::End(3, end_v2(9, i16::MAX - 1, true))).0,
        vec![ended_as(77, 0)]
    );
    // The new id's next transaction works as any.
    let (r, _) = run(&mut c, 3, Event::Add(4, add(77, 0, &[("b", 0)])));
    assert_eq!(r, vec![Reply::Add(vec![("b".into(), 0, 0)])]);

    // A coordinator that loads the Prepare record finishes the move.
    let mut c = replayed(TxnState::PrepareCommit, i16::MAX, 77);
    let a = c.on_event(0, Event::LoadCompleted(P));
    let mut log = Vec::new();
    let (_, markers) = drive(&mut c, 0, a, &mut log);
    assert_eq!(markers, vec![(9, i16::MAX, true)]);
    let v = log.last().and_then(|r| r.value.clone()).unwrap();
    assert_eq!(
        (v.state, v.producer_id, v.producer_epoch, v.prev_producer_id),
        (TxnState::CompleteCommit, 77, 0, 9)
    );
}
