//! A seeded, deterministic simulation of the transaction coordinator: transactional producers
//! (two instances per transactional id, so each fences the other; every other id's producers
//! use transaction version 2, whose EndTxn bumps the epoch and may abort a transaction that
//! added nothing), a log that loses, fails or
//! ambiguously completes writes (a write that reached the log but reported an error), marker
//! writes that fail per partition, producer id allocations that fail, leadership moves of state
//! partitions and whole-process restarts that reload from the log — all on a simulated clock.
//!
//! Checked: every request gets exactly one reply; the (producer id, epoch) InitProducerId and
//! version 2 EndTxn hand out only grow per transactional id; a version 2 EndTxn's markers
//! carry the epoch it hands out; AddPartitions and EndTxn succeed only for the newest
//! producer (zombies fenced); markers are written only after the matching Prepare record is
//! durable; one transaction never gets both commit and abort markers; every committed
//! or aborted EndTxn gets its markers on every partition, and every partition a successful
//! AddPartitions named gets a marker (no hanging transaction), across every failure; after the
//! failures stop, no transaction is left open or undecided.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::ResponseError;
use sluice_base::Rng;

use super::coordinator::{
    Action, AddRequest, EndRequest, Event, InitRequest, ListFilter, Reply, ReqId, TxnConfig,
    TxnCoordinator,
};
use super::records::{TxnRecord, TxnState};
use crate::coordinator::partition_for;

const STATE_PARTITIONS: i32 = 3;
const TIMEOUT_MS: i32 = 2_000;
const TOPICS: [&str; 2] = ["a", "b"];

fn code(e: ResponseError) -> i16 {
    e.code()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ClientState {
    NeedInit,
    /// Has a producer id, no transaction.
    Idle,
    InTxn,
    /// EndTxn with this decision must be (re)sent.
    Ending(bool),
}

struct Client {
    txn: String,
    /// Transaction version 2: EndTxn v5.
    v2: bool,
    state: ClientState,
    pid: Option<(i64, i16)>,
    added: BTreeSet<(String, i32)>,
    /// The transaction its successful AddPartitions joined (an EndTxn retried after the
    /// transaction completed is answered after the log moved on, so it is named here).
    key: Option<TxnKey>,
    busy: bool,
    next_at: i64,
}

#[derive(Debug, Clone)]
enum Op {
    Init,
    Add(Vec<(String, i32)>),
    End(bool),
}

/// One transaction: its transactional id and how many transactions of that id the log shows
/// completed before it (with the classic protocol, one producer epoch spans many
/// transactions, so (producer id, epoch) does not name one).
type TxnKey = (String, usize);
type Tp = (String, i32);
/// A marker as written: (transaction, producer id, epoch, commit).
type Marker = (TxnKey, i64, i16, bool);

struct Sim {
    rng: Rng,
    now: i64,
    chaos: bool,
    coord: TxnCoordinator,
    /// The durable `__transaction_state` log: (partition, record).
    log: Vec<(i32, TxnRecord)>,
    epochs: HashMap<i32, i32>,
    /// Responses on their way: (due, seq, event).
    inflight: Vec<(i64, u64, Event)>,
    seq: u64,
    /// Markers written per (topic, partition): (transaction, producer id, epoch, commit).
    markers: BTreeMap<Tp, Vec<Marker>>,
    next_pid: i64,
    clients: Vec<Client>,
    outstanding: HashMap<ReqId, (usize, Op)>,
    next_req: ReqId,
    /// The newest (producer id, epoch) InitProducerId returned per transactional id.
    latest: HashMap<String, (i64, i16)>,
    /// EndTxn successes: (transaction, partitions, commit).
    decisions: Vec<(TxnKey, BTreeSet<Tp>, bool)>,
    /// AddPartitions successes: (transaction, partition).
    adds: Vec<(TxnKey, (String, i32))>,
    /// Version 2 EndTxn successes: (transaction, the identity handed out), which its markers
    /// must carry.
    v2_markers: Vec<(TxnKey, (i64, i16))>,
    stats: BTreeMap<&'static str, u64>,
}

impl Sim {
    fn new(seed: u64, ids: usize) -> Sim {
        let mut clients = Vec::new();
        for i in 0..ids {
            for _ in 0..2 {
                clients.push(Client {
                    txn: format!("tx-{i}"),
                    v2: i % 2 == 1,
                    state: ClientState::NeedInit,
                    pid: None,
                    added: BTreeSet::new(),
                    key: None,
                    busy: false,
                    next_at: 0,
                });
            }
        }
        let mut sim = Sim {
            rng: Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            now: 0,
            chaos: true,
            coord: TxnCoordinator::new(config()),
            log: Vec::new(),
            epochs: HashMap::new(),
            inflight: Vec::new(),
            seq: 0,
            markers: BTreeMap::new(),
            next_pid: 1000,
            clients,
            outstanding: HashMap::new(),
            next_req: 1,
            latest: HashMap::new(),
            decisions: Vec::new(),
            adds: Vec::new(),
            v2_markers: Vec::new(),
            stats: BTreeMap::new(),
        };
        for p in 0..STATE_PARTITIONS {
            sim.load(p);
        }
        sim
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.rng.below(100) < percent
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_insert(0) += 1;
    }

    fn feed(&mut self, event: Event) {
        let actions = self.coord.on_event(self.now, event);
        for a in actions {
            self.carry_out(a);
        }
    }

    fn later(&mut self, event: Event) {
        let due = self.now + self.rng.below(30) as i64;
        self.seq += 1;
        self.inflight.push((due, self.seq, event));
    }

    fn txn_key(&self, id: &str) -> TxnKey {
        let done = self
            .log
            .iter()
            .filter(|(_, r)| r.transactional_id == id)
            .filter(|(_, r)| {
                r.value.as_ref().is_some_and(|v| {
                    matches!(v.state, TxnState::CompleteCommit | TxnState::CompleteAbort)
                })
            })
            .count();
        (id.to_owned(), done)
    }

    fn load(&mut self, p: i32) {
        let epoch = self.epochs.entry(p).or_insert(0);
        *epoch += 1;
        let coordinator_epoch = *epoch;
        self.feed(Event::LoadStarted {
            partition: p,
            coordinator_epoch,
        });
        let records: Vec<TxnRecord> = self
            .log
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, r)| r.clone())
            .collect();
        for r in records {
            self.feed(Event::Replay(p, r));
        }
        self.feed(Event::LoadCompleted(p));
    }

    fn carry_out(&mut self, action: Action) {
        match action {
            Action::Reply(req, reply) => self.on_reply(req, reply),
            Action::AllocateProducerId { token } => {
                let result = if self.chaos && self.chance(5) {
                    Err(code(ResponseError::CoordinatorNotAvailable))
                } else {
                    self.next_pid += 1;
                    Ok(self.next_pid)
                };
                self.later(Event::ProducerId { token, result });
            }
            Action::Persist {
                partition,
                record,
                token,
            } => {
                let roll = if self.chaos { self.rng.below(100) } else { 99 };
                let error = if roll < 6 {
                    self.count("write failed");
                    code(ResponseError::NotEnoughReplicas)
                } else if roll < 12 {
                    // Reached the log, but the caller hears of a failure.
                    self.count("write ambiguous");
                    self.log.push((partition, record));
                    code(ResponseError::RequestTimedOut)
                } else {
                    self.log.push((partition, record));
                    0
                };
                self.later(Event::Persisted { token, error });
            }
            Action::WriteMarkers {
                token,
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
                partitions,
                ..
            } => {
                // The decision must be durable before any marker.
                let last = self
                    .log
                    .iter()
                    .rev()
                    .find(|(_, r)| r.transactional_id == transactional_id)
                    .and_then(|(_, r)| r.value.clone());
                let want = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                match last {
                    Some(v)
                        if v.state == want
                            && v.producer_id == producer_id
                            && v.producer_epoch == producer_epoch
                            && partitions.iter().all(|tp| v.partitions.contains(tp)) => {}
                    other => panic!(
                        "markers for {transactional_id} ({producer_id}, {producer_epoch}, \
                         commit {commit}) while the log's last record is {other:?}"
                    ),
                }
                let key = self.txn_key(&transactional_id);
                let mut retry = Vec::new();
                for tp in partitions {
                    if self.chaos && self.chance(8) {
                        retry.push(tp);
                        self.count("marker retried");
                    } else {
                        self.markers.entry(tp).or_default().push((
                            key.clone(),
                            producer_id,
                            producer_epoch,
                            commit,
                        ));
                    }
                }
                self.later(Event::MarkersWritten { token, retry });
            }
        }
    }

    fn send(&mut self, c: usize, op: Op) {
        let req = self.next_req;
        self.next_req += 1;
        let client = &mut self.clients[c];
        client.busy = true;
        let txn = client.txn.clone();
        let partition = partition_for(&txn, STATE_PARTITIONS);
        let (pid, epoch) = client.pid.unwrap_or((-1, -1));
        let v2 = client.v2;
        self.outstanding.insert(req, (c, op.clone()));
        let event = match op {
            Op::Init => Event::Init(
                req,
                InitRequest {
                    transactional_id: txn,
                    partition,
                    timeout_ms: TIMEOUT_MS,
                    expected: None,
                },
            ),
            Op::Add(partitions) => Event::Add(
                req,
                AddRequest {
                    transactional_id: txn,
                    partition,
                    producer_id: pid,
                    producer_epoch: epoch,
                    partitions,
                    verify_only: false,
                },
            ),
            Op::End(commit) => Event::End(
                req,
                EndRequest {
                    transactional_id: txn,
                    partition,
                    producer_id: pid,
                    producer_epoch: epoch,
                    commit,
                    bump_epoch: v2,
                },
            ),
        };
        self.feed(event);
    }

    fn on_reply(&mut self, req: ReqId, reply: Reply) {
        let Some((c, op)) = self.outstanding.remove(&req) else {
            panic!("reply to {req}, which waits for none: {reply:?}");
        };
        let backoff = 5 + self.rng.below(20) as i64;
        let now = self.now;
        let client = &mut self.clients[c];
        client.busy = false;
        client.next_at = now + backoff;
        let txn = client.txn.clone();
        let retriable = |e: i16| {
            e == code(ResponseError::ConcurrentTransactions)
                || e == code(ResponseError::CoordinatorNotAvailable)
                || e == code(ResponseError::NotCoordinator)
                || e == code(ResponseError::CoordinatorLoadInProgress)
                || e == code(ResponseError::UnknownServerError)
        };
        match (op, reply) {
            (
                Op::Init,
                Reply::Init {
                    error,
                    producer_id,
                    producer_epoch,
                },
            ) => {
                if error == 0 {
                    let got = (producer_id, producer_epoch);
                    if let Some(prev) = self.latest.get(&txn) {
                        assert!(
                            got > *prev,
                            "{txn}: InitProducerId gave {got:?} after {prev:?}"
                        );
                    }
                    self.latest.insert(txn, got);
                    let client = &mut self.clients[c];
                    client.pid = Some(got);
                    client.state = ClientState::Idle;
                    client.added.clear();
                    client.key = None;
                    self.count("init ok");
                } else {
                    assert!(retriable(error), "InitProducerId error {error}");
                }
            }
            (Op::Add(partitions), Reply::Add(answers)) => {
                assert_eq!(answers.len(), partitions.len());
                let error = answers[0].2;
                assert!(answers.iter().all(|a| a.2 == error));
                if error == 0 {
                    let pid = self.clients[c].pid.unwrap_or((-1, -1));
                    assert_eq!(
                        self.latest.get(&txn),
                        Some(&pid),
                        "{txn}: AddPartitions succeeded for a fenced producer"
                    );
                    let key = self.txn_key(&txn);
                    for tp in &partitions {
                        self.adds.push((key.clone(), tp.clone()));
                    }
                    let client = &mut self.clients[c];
                    client.added.extend(partitions);
                    client.state = ClientState::InTxn;
                    if let Some(k) = &client.key {
                        assert_eq!(k, &key, "{txn}: one transaction's adds in two transactions");
                    }
                    client.key = Some(key);
                    self.count("add ok");
                } else if !retriable(error) {
                    self.fatal(c, error);
                }
            }
            (
                Op::End(commit),
                Reply::End {
                    error,
                    producer_id,
                    producer_epoch,
                },
            ) => {
                if error == 0 {
                    let pid = self.clients[c].pid.unwrap_or((-1, -1));
                    assert_eq!(
                        self.latest.get(&txn),
                        Some(&pid),
                        "{txn}: EndTxn succeeded for a fenced producer"
                    );
                    let v2 = self.clients[c].v2;
                    if v2 {
                        // The producer's next identity: newer than any handed out.
                        let got = (producer_id, producer_epoch);
                        assert!(got > pid, "{txn}: EndTxn gave {got:?} after {pid:?}");
                        self.latest.insert(txn.clone(), got);
                        self.clients[c].pid = Some(got);
                        self.count("v2 end ok");
                    } else {
                        assert_eq!((producer_id, producer_epoch), (-1, -1));
                    }
                    let client = &mut self.clients[c];
                    let added = std::mem::take(&mut client.added);
                    let key = client.key.take();
                    client.state = ClientState::Idle;
                    let key = match key {
                        Some(k) => k,
                        // Version 2 may abort a transaction that added nothing.
                        None if v2 && !commit => {
                            self.count("v2 empty abort");
                            return;
                        }
                        None => panic!("{txn}: EndTxn without a successful add"),
                    };
                    if v2 && producer_id == pid.0 {
                        self.v2_markers
                            .push((key.clone(), (producer_id, producer_epoch)));
                    }
                    self.decisions.push((key, added, commit));
                    self.count(if commit { "commit ok" } else { "abort ok" });
                } else if !retriable(error) {
                    self.fatal(c, error);
                }
            }
            (op, reply) => panic!("reply {reply:?} to {op:?}"),
        }
    }

    /// A non-retriable error: the client starts over with InitProducerId.
    fn fatal(&mut self, c: usize, error: i16) {
        let ok = [
            ResponseError::ProducerFenced,
            ResponseError::InvalidProducerIdMapping,
            ResponseError::InvalidTxnState,
        ]
        .iter()
        .any(|e| code(*e) == error);
        assert!(ok, "unexpected error {error}");
        self.count("client fenced or reset");
        let client = &mut self.clients[c];
        client.state = ClientState::NeedInit;
        client.added.clear();
        client.key = None;
    }

    fn step_client(&mut self, c: usize) {
        let client = &self.clients[c];
        if client.busy || client.next_at > self.now {
            return;
        }
        let (v2, state) = (client.v2, client.state);
        let op = match state {
            ClientState::NeedInit => Op::Init,
            ClientState::Ending(commit) => Op::End(commit),
            ClientState::Idle if !self.chaos => return,
            ClientState::Idle if v2 && self.chance(10) => {
                // Version 2: abort a transaction that added nothing.
                self.clients[c].state = ClientState::Ending(false);
                Op::End(false)
            }
            ClientState::Idle => Op::Add(self.some_partitions()),
            ClientState::InTxn if !self.chaos => Op::End(self.chance(50)),
            ClientState::InTxn => match self.rng.below(100) {
                0..30 => Op::Add(self.some_partitions()),
                30..92 => {
                    let commit = self.chance(65);
                    self.clients[c].state = ClientState::Ending(commit);
                    Op::End(commit)
                }
                _ => {
                    // Walk away: the coordinator times the transaction out.
                    self.count("abandoned");
                    let client = &mut self.clients[c];
                    client.next_at = self.now + 3 * TIMEOUT_MS as i64;
                    client.state = ClientState::NeedInit;
                    client.added.clear();
                    client.key = None;
                    return;
                }
            },
        };
        self.send(c, op);
    }

    fn some_partitions(&mut self) -> Vec<(String, i32)> {
        let n = 1 + self.rng.below(3);
        let mut out = BTreeSet::new();
        for _ in 0..n {
            if self.chance(10) {
                out.insert(("__consumer_offsets".to_owned(), self.rng.below(3) as i32));
            } else {
                let t = TOPICS[self.rng.below(2) as usize];
                out.insert((t.to_owned(), self.rng.below(3) as i32));
            }
        }
        out.into_iter().collect()
    }

    /// A process restart: the coordinator's memory and everything in flight are gone; clients
    /// waiting for a reply see their connection close and retry.
    fn restart(&mut self) {
        self.count("restart");
        self.coord = TxnCoordinator::new(config());
        self.inflight.clear();
        let waiting: Vec<ReqId> = self.outstanding.keys().copied().collect();
        for req in waiting {
            if let Some((c, _)) = self.outstanding.remove(&req) {
                self.clients[c].busy = false;
            }
        }
        for p in 0..STATE_PARTITIONS {
            self.load(p);
        }
    }

    /// Leadership of one state partition moves away and back: the same coordinator unloads
    /// and reloads it while old responses are still on their way.
    fn move_partition(&mut self) {
        self.count("partition moved");
        let p = self.rng.below(STATE_PARTITIONS as u64) as i32;
        self.feed(Event::Unloaded(p));
        self.load(p);
    }

    fn deliver_due(&mut self) {
        loop {
            let Some(i) = (0..self.inflight.len())
                .filter(|&i| self.inflight[i].0 <= self.now)
                .min_by_key(|&i| (self.inflight[i].0, self.inflight[i].1))
            else {
                return;
            };
            let (_, _, event) = self.inflight.swap_remove(i);
            self.feed(event);
        }
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.now += 1 + self.rng.below(10) as i64;
            self.deliver_due();
            if self.now % 100 < 10 {
                self.feed(Event::Tick);
            }
            if self.chaos {
                match self.rng.below(1000) {
                    0..2 => self.restart(),
                    2..6 => self.move_partition(),
                    _ => {}
                }
            }
            let c = self.rng.below(self.clients.len() as u64) as usize;
            self.step_client(c);
        }
    }

    /// Failures stop; clients finish what they started; time runs past every timeout.
    fn settle(&mut self) {
        self.chaos = false;
        let end = self.now + 10 * TIMEOUT_MS as i64;
        while self.now < end {
            self.now += 5;
            self.deliver_due();
            if self.now % 100 < 5 {
                self.feed(Event::Tick);
            }
            for c in 0..self.clients.len() {
                self.step_client(c);
            }
        }
    }

    fn check(&mut self) {
        assert!(
            self.outstanding.is_empty(),
            "requests never answered: {:?}",
            self.outstanding
        );
        // One transaction never gets both markers.
        let mut flag: HashMap<&TxnKey, bool> = HashMap::new();
        for (tp, ms) in &self.markers {
            for (key, _, _, commit) in ms {
                if let Some(prev) = flag.insert(key, *commit) {
                    assert_eq!(
                        prev, *commit,
                        "{tp:?}: commit and abort markers for {key:?}"
                    );
                }
            }
        }
        // Every decision reached every partition of its transaction.
        for (key, partitions, commit) in &self.decisions {
            for tp in partitions {
                let found = self
                    .markers
                    .get(tp)
                    .is_some_and(|ms| ms.iter().any(|(k, _, _, c)| k == key && c == commit));
                if !found {
                    let history: Vec<String> = self
                        .log
                        .iter()
                        .filter(|(_, r)| r.transactional_id == key.0)
                        .map(|(_, r)| match &r.value {
                            Some(v) => format!(
                                "{}/{} {} {:?}",
                                v.producer_id,
                                v.producer_epoch,
                                v.state.name(),
                                v.partitions
                            ),
                            None => "tombstone".to_owned(),
                        })
                        .collect();
                    panic!(
                        "{tp:?}: no {} marker for {key:?}; markers there: {:?}; log of the id: {history:#?}",
                        if *commit { "commit" } else { "abort" },
                        self.markers.get(tp)
                    );
                }
            }
        }
        // A version 2 transaction's markers carry the epoch its EndTxn handed out.
        for (key, identity) in &self.v2_markers {
            for (tp, ms) in &self.markers {
                for (k, pid, epoch, _) in ms {
                    assert!(
                        k != key || (*pid, *epoch) == *identity,
                        "{tp:?}: marker of {key:?} as {pid}/{epoch}, EndTxn gave {identity:?}"
                    );
                }
            }
        }
        // No hanging transaction: every added partition got a marker of its transaction.
        for (key, tp) in &self.adds {
            let found = self
                .markers
                .get(tp)
                .is_some_and(|ms| ms.iter().any(|(k, ..)| k == key));
            assert!(found, "{tp:?}: added to {key:?} and no marker followed");
        }
        // Nothing left open or undecided.
        let mut list = Vec::new();
        let req = u64::MAX;
        for a in self
            .coord
            .on_event(self.now, Event::List(req, ListFilter::default()))
        {
            if let Action::Reply(_, Reply::List(l)) = a {
                list = l;
            }
        }
        for t in &list {
            assert!(
                ["Empty", "CompleteCommit", "CompleteAbort"].contains(&t.state.as_str()),
                "{} left {}",
                t.transactional_id,
                t.state
            );
        }
    }
}

fn config() -> TxnConfig {
    TxnConfig {
        max_timeout_ms: 10_000,
        id_expiration_ms: 1_000_000_000,
        marker_retry_backoff_ms: 50,
        transaction_version: 2,
    }
}

fn run_seed(seed: u64) -> BTreeMap<&'static str, u64> {
    let mut sim = Sim::new(seed, 3);
    sim.run(6_000);
    sim.settle();
    sim.check();
    sim.stats
}

/// `SLUICE_TXN_SIM_SEED=<n>` replays one seed (printing what it exercised);
/// `SLUICE_TXN_SIM_SEEDS=<n>` runs seeds 0..n instead of the default.
#[test]
fn seeded_simulation_holds_the_invariants() {
    if let Some(seed) = std::env::var("SLUICE_TXN_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("seed {seed}: {:?}", run_seed(seed));
        return;
    }
    let seeds = std::env::var("SLUICE_TXN_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150u64);
    let mut total: BTreeMap<&'static str, u64> = BTreeMap::new();
    for seed in 0..seeds {
        let stats = std::panic::catch_unwind(|| run_seed(seed))
            .unwrap_or_else(|_| panic!("seed {seed} failed (replay: SLUICE_TXN_SIM_SEED={seed})"));
        for (k, v) in stats {
            *total.entry(k).or_insert(0) += v;
        }
    }
    // The runs must have exercised what they claim to.
    for what in [
        "init ok",
        "add ok",
        "v2 end ok",
        "v2 empty abort",
        "commit ok",
        "abort ok",
        "abandoned",
        "client fenced or reset",
        "write failed",
        "write ambiguous",
        "marker retried",
        "restart",
        "partition moved",
    ] {
        assert!(
            total.get(what).copied().unwrap_or(0) > 0,
            "nothing counted as {what:?}: {total:?}"
        );
    }
}
