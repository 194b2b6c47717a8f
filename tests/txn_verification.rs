//! KIP-890 over the wire. Part 1: a partition leader asks the transaction coordinator whether a
//! producer added the partition before it appends the producer's first transactional batch
//! there. A batch for a partition outside the transaction is refused (INVALID_TXN_STATE, or
//! TRANSACTION_ABORTABLE from Produce v11), and a late batch of a transaction that already
//! ended cannot open a transaction nobody will close (the hanging transaction KIP-890 is
//! about). On one node, with verification turned off for contrast, and in a cluster where the
//! coordinator is another broker (AddPartitionsToTxn v4 between brokers, which a broker that is
//! not the coordinator answers NOT_COORDINATOR). Part 2 (transaction version 2): the leader
//! adds the partition itself (Produce v12, TxnOffsetCommit v5; AddPartitionsToTxn v5 between
//! brokers), every EndTxn v5 bumps the epoch and hands it to the producer, and the ended
//! transaction's late batches are fenced by their old epoch.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{leader_and_isr, Cluster};
use common::raw::Raw;
use common::{http_get, Broker, WAIT};
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, GroupId, OffsetFetchRequest,
    OffsetFetchResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse, ProducerId,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use sluice_net::records::BatchBuilder;

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const NOT_COORDINATOR: i16 = 16;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const TRANSACTION_ABORTABLE: i16 = 120;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Runs `f` until it answers `Ok` (an error code is retried for up to WAIT: coordinators
/// load, the transaction topic is created on first use, markers complete).
fn retry<T>(what: &str, mut f: impl FnMut() -> Result<T, i16>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match f() {
            Ok(v) => return v,
            Err(code) if Instant::now() < deadline => {
                eprintln!("{what}: error {code}, retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(code) => panic!("{what}: error {code}"),
        }
    }
}

/// The node id of `id`'s transaction coordinator, asked through `addr`.
fn find_coordinator(addr: &str, id: &str) -> i32 {
    retry("FindCoordinator", || {
        let r: FindCoordinatorResponse = Raw::connect(addr).call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default()
                .with_key(sb(id))
                .with_key_type(1),
        );
        if r.error_code == 0 {
            Ok(r.node_id.0)
        } else {
            Err(r.error_code)
        }
    })
}

#[derive(Clone, Copy)]
struct Txn {
    id: &'static str,
    pid: i64,
    epoch: i16,
}

fn init(coordinator: &str, id: &'static str) -> Txn {
    retry("InitProducerId", || {
        let r: InitProducerIdResponse = Raw::connect(coordinator).call(
            ApiKey::InitProducerId,
            3,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(sb(id))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
        if r.error_code == 0 {
            Ok(Txn {
                id,
                pid: r.producer_id.0,
                epoch: r.producer_epoch,
            })
        } else {
            Err(r.error_code)
        }
    })
}

fn add(coordinator: &str, t: &Txn, topic: &str, partition: i32) {
    retry("AddPartitionsToTxn", || {
        let r: AddPartitionsToTxnResponse = Raw::connect(coordinator).call(
            ApiKey::AddPartitionsToTxn,
            3,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(sb(t.id)))
                .with_v3_and_below_producer_id(ProducerId(t.pid))
                .with_v3_and_below_producer_epoch(t.epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(sb(topic)))
                    .with_partitions(vec![partition])]),
        );
        match r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code {
            0 => Ok(()),
            e => Err(e),
        }
    })
}

/// EndTxn at `version` of `t`, once.
fn end_txn(version: i16, coordinator: &str, t: &Txn, commit: bool) -> EndTxnResponse {
    Raw::connect(coordinator).call(
        ApiKey::EndTxn,
        version,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(sb(t.id)))
            .with_producer_id(ProducerId(t.pid))
            .with_producer_epoch(t.epoch)
            .with_committed(commit),
    )
}

/// EndTxn v5 (transaction version 2) of `t`: the error code and the (producer id, epoch) the
/// coordinator hands out.
fn end_v5(coordinator: &str, t: &Txn, commit: bool) -> (i16, (i64, i16)) {
    let r = end_txn(5, coordinator, t, commit);
    (r.error_code, (r.producer_id.0, r.producer_epoch))
}

/// [`end_v5`] until it succeeds; `t` takes the identity handed out.
fn end_v5_ok(coordinator: &str, t: &mut Txn, commit: bool) {
    let (pid, epoch) = retry("EndTxn v5", || match end_v5(coordinator, t, commit) {
        (0, next) => Ok(next),
        (e, _) => Err(e),
    });
    assert_eq!(pid, t.pid, "no rotation this early");
    assert_eq!(epoch, t.epoch + 1, "EndTxn v5 bumps the epoch");
    t.epoch = epoch;
}

fn end(coordinator: &str, t: &Txn, commit: bool) {
    retry("EndTxn", || {
        let r = end_txn(3, coordinator, t, commit);
        match r.error_code {
            0 => Ok(()),
            e => Err(e),
        }
    })
}

fn add_offsets(coordinator: &str, t: &Txn, group: &str) {
    retry("AddOffsetsToTxn", || {
        let r: AddOffsetsToTxnResponse = Raw::connect(coordinator).call(
            ApiKey::AddOffsetsToTxn,
            3,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(sb(t.id)))
                .with_producer_id(ProducerId(t.pid))
                .with_producer_epoch(t.epoch)
                .with_group_id(GroupId(sb(group))),
        );
        match r.error_code {
            0 => Ok(()),
            e => Err(e),
        }
    })
}

/// TxnOffsetCommit v2 (no member: a simple consumer's) of `offset` for partition 0 of
/// `topic` in `t`'s transaction: its error code.
fn txn_offset_commit(addr: &str, t: &Txn, group: &str, topic: &str, offset: i64) -> i16 {
    txn_offset_commit_at(2, addr, t, group, topic, offset)
}

/// [`txn_offset_commit`] at TxnOffsetCommit `version` (v5: transaction version 2's).
fn txn_offset_commit_at(
    version: i16,
    addr: &str,
    t: &Txn,
    group: &str,
    topic: &str,
    offset: i64,
) -> i16 {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let r: TxnOffsetCommitResponse = Raw::connect(addr).call(
        ApiKey::TxnOffsetCommit,
        version,
        &TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(sb(t.id)))
            .with_group_id(GroupId(sb(group)))
            .with_producer_id(ProducerId(t.pid))
            .with_producer_epoch(t.epoch)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(sb(topic)))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)])]),
    );
    r.topics[0].partitions[0].error_code
}

/// OffsetFetch v7 with `require_stable` (a read_committed consumer's) of partition 0 of
/// `topic`: (error code, committed offset). UNSTABLE_OFFSET_COMMIT while transactional offsets
/// of the partition are pending.
fn stable_offset(addr: &str, group: &str, topic: &str) -> (i16, i64) {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let r: OffsetFetchResponse = Raw::connect(addr).call(
        ApiKey::OffsetFetch,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_require_stable(true)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(sb(topic)))
                .with_partition_indexes(vec![0])])),
    );
    assert_eq!(r.error_code, 0, "OffsetFetch");
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

/// Produce (acks=all, Produce `version`) of one transactional batch of `n` records of `t`
/// starting at sequence `seq` to the partition's leader `addr`: its error code.
fn produce(
    addr: &str,
    version: i16,
    t: &Txn,
    topic: &str,
    partition: i32,
    seq: i32,
    n: usize,
) -> i16 {
    let mut b = BatchBuilder::new()
        .transactional(true)
        .producer(t.pid, t.epoch, seq);
    for i in 0..n {
        b.push(
            None,
            Some(Bytes::from(format!("{}-{}", t.id, seq as usize + i))),
            1_700_000_000_000,
            &[],
        );
    }
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(sb(t.id))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(sb(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(b.build().unwrap()))])]);
    let r: ProduceResponse = Raw::connect(addr).call(ApiKey::Produce, version, &req);
    r.responses[0].partition_responses[0].error_code
}

/// (last stable offset, high watermark) of a partition, from its leader `addr`.
fn lso_and_hw(addr: &str, topic: &str, partition: i32) -> (i64, i64) {
    let latest = |isolation: i8| {
        let r: ListOffsetsResponse = Raw::connect(addr).call(
            ApiKey::ListOffsets,
            4,
            &ListOffsetsRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_isolation_level(isolation)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(sb(topic)))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(-1)])]),
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "ListOffsets");
        p.offset
    };
    (latest(1), latest(0))
}

/// `f`'s error code once it is not one the client retries: NOT_ENOUGH_REPLICAS (a produce) or
/// COORDINATOR_LOAD_IN_PROGRESS (an offset commit) answer a verification the coordinator could
/// not give yet, e.g. while the previous transaction's markers are being written.
fn settled(what: &str, mut f: impl FnMut() -> i16) -> i16 {
    let deadline = Instant::now() + WAIT;
    loop {
        let code = f();
        if code != NOT_ENOUGH_REPLICAS && code != COORDINATOR_LOAD_IN_PROGRESS {
            return code;
        }
        assert!(Instant::now() < deadline, "{what}: still {code}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum over shards of a counter in the broker's /metrics.
fn metric(metrics_addr: &str, name: &str) -> f64 {
    let (status, body) = http_get(metrics_addr, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_batch_for_a_partition_outside_the_transaction_is_refused_and_cannot_hang_it() {
    let broker = Broker::start(&[]);
    // Four partitions: with two shards, the guards come from both (through the mesh).
    broker.create_topic("v", 4, &[]);
    let addr = broker.addr.as_str();
    find_coordinator(addr, "tx-v");
    let t = init(addr, "tx-v");
    add(addr, &t, "v", 0);

    // Partitions 1..3 were not added: refused, with the error each Produce version knows.
    assert_eq!(produce(addr, 9, &t, "v", 1, 0, 1), INVALID_TXN_STATE);
    assert_eq!(produce(addr, 11, &t, "v", 2, 0, 1), TRANSACTION_ABORTABLE);
    assert_eq!(lso_and_hw(addr, "v", 1), (0, 0), "nothing written");
    // The added partition takes the first batch (verified) and the next (its transaction is
    // open there: no question to the coordinator).
    assert_eq!(produce(addr, 9, &t, "v", 0, 0, 3), 0);
    assert_eq!(produce(addr, 9, &t, "v", 0, 3, 3), 0);
    assert_eq!(lso_and_hw(addr, "v", 0), (0, 6), "open transaction");
    end(addr, &t, false);
    retry("abort marker", || match lso_and_hw(addr, "v", 0) {
        (7, 7) => Ok(()),
        _ => Err(-1),
    });

    // A late batch of the aborted transaction (a retry the network held back) must not open
    // a new transaction in the partition: nothing would ever close it.
    let late = settled("late batch", || produce(addr, 9, &t, "v", 0, 6, 1));
    assert_eq!(late, INVALID_TXN_STATE);
    assert_eq!(lso_and_hw(addr, "v", 0), (7, 7), "no hanging transaction");
    // A producer with a newer epoch fences this one: its batch is an old epoch's.
    let newer = init(addr, "tx-v");
    assert_eq!(newer.pid, t.pid);
    assert!(newer.epoch > t.epoch);
    let stale = produce(addr, 9, &t, "v", 3, 0, 1);
    assert!(
        stale == INVALID_PRODUCER_EPOCH || stale == INVALID_TXN_STATE,
        "stale epoch: {stale}"
    );
    // The fenced producer's new transaction works as before.
    add(addr, &newer, "v", 3);
    assert_eq!(produce(addr, 9, &newer, "v", 3, 0, 2), 0);
    end(addr, &newer, true);
    retry("commit marker", || match lso_and_hw(addr, "v", 3) {
        (3, 3) => Ok(()),
        _ => Err(-1),
    });

    let m = &broker.metrics_addr;
    assert!(metric(m, "sluice_txn_verifications_total") >= 5.0);
    assert!(metric(m, "sluice_txn_verification_failures_total") >= 3.0);

    // Without verification the same late batch goes in and hangs the partition (the last
    // stable offset stays behind until a coordinator or an operator writes a marker): what
    // the check above prevents.
    let off = Broker::start(&["--transaction-partition-verification-enable", "false"]);
    off.create_topic("v", 1, &[]);
    let addr = off.addr.as_str();
    find_coordinator(addr, "tx-off");
    let t = init(addr, "tx-off");
    assert_eq!(
        produce(addr, 9, &t, "v", 0, 0, 1),
        0,
        "not added, yet written"
    );
    let (lso, hw) = lso_and_hw(addr, "v", 0);
    assert_eq!(
        (lso, hw),
        (0, 1),
        "a transaction its coordinator does not know"
    );
}

/// DeleteRecords (as retention would) past the start of a transaction still open: the last
/// stable offset stays at the log start, never below it (Kafka's rule), until the
/// transaction ends.
#[test]
fn the_last_stable_offset_never_falls_below_the_log_start() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
    let broker = Broker::start(&[]);
    broker.create_topic("lso", 1, &[]);
    let addr = broker.addr.as_str();
    find_coordinator(addr, "tx-lso");
    let t = init(addr, "tx-lso");
    add(addr, &t, "lso", 0);
    assert_eq!(produce(addr, 9, &t, "lso", 0, 0, 3), 0);
    assert_eq!(lso_and_hw(addr, "lso", 0), (0, 3), "open transaction");
    let r: DeleteRecordsResponse = Raw::connect(addr).call(
        ApiKey::DeleteRecords,
        2,
        &DeleteRecordsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName(sb("lso")))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(2)])]),
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 2));
    assert_eq!(lso_and_hw(addr, "lso", 0), (2, 3), "held at the log start");
    end(addr, &t, false);
    retry("abort marker", || match lso_and_hw(addr, "lso", 0) {
        (4, 4) => Ok(()),
        _ => Err(-1),
    });
}

#[test]
fn a_leader_verifies_with_a_coordinator_on_another_broker() {
    let cluster = Cluster::start(3, false, &[]);
    cluster.wait_settled(&[0, 1, 2]);
    let any = cluster.nodes[0].addr.clone();
    cluster.nodes[0].create_topic("cv", 6, &[]);
    cluster.wait_for("every partition led", || {
        (0..6).all(|p| leader_and_isr(&any, "cv", p).is_some_and(|(l, _)| l >= 0))
    });
    let id = "tx-cv";
    let c = find_coordinator(&any, id) as usize;
    let coordinator = cluster.nodes[c].addr.clone();
    // Two partitions led by brokers other than the coordinator.
    let elsewhere: Vec<(i32, usize)> = (0..6)
        .filter_map(|p| {
            let (leader, _) = leader_and_isr(&any, "cv", p)?;
            (leader as usize != c).then_some((p, leader as usize))
        })
        .take(2)
        .collect();
    assert_eq!(elsewhere.len(), 2, "six partitions over three brokers");
    let (added, added_leader) = elsewhere[0];
    let (other, other_leader) = elsewhere[1];

    let t = init(&coordinator, id);
    add(&coordinator, &t, "cv", added);
    let leader = |i: usize| cluster.nodes[i].addr.clone();
    assert_eq!(
        produce(&leader(other_leader), 9, &t, "cv", other, 0, 1),
        INVALID_TXN_STATE,
        "not added: the coordinator on broker {c} said so"
    );
    assert_eq!(produce(&leader(added_leader), 9, &t, "cv", added, 0, 2), 0);
    end(&coordinator, &t, true);
    let a = leader(added_leader);
    retry("commit marker", || match lso_and_hw(&a, "cv", added) {
        (3, 3) => Ok(()),
        _ => Err(-1),
    });
    // A broker that is not the coordinator answers a leader's question NOT_COORDINATOR rather
    // than pass it on (brokers whose metadata disagree could otherwise bounce it).
    let not_coordinator = (0..3).find(|&i| i != c).expect("another broker");
    let r: AddPartitionsToTxnResponse = Raw::connect(&cluster.nodes[not_coordinator].addr).call(
        ApiKey::AddPartitionsToTxn,
        4,
        &AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(sb(id)))
                .with_producer_id(ProducerId(t.pid))
                .with_producer_epoch(t.epoch)
                .with_verify_only(true)
                .with_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(sb("cv")))
                    .with_partitions(vec![added])]),
        ]),
    );
    assert_eq!(r.error_code, 0);
    let code =
        r.results_by_transaction[0].topic_results[0].results_by_partition[0].partition_error_code;
    assert_eq!(code, NOT_COORDINATOR);
    let asked: f64 = [added_leader, other_leader]
        .iter()
        .map(|&i| {
            metric(
                &cluster.nodes[i].metrics_addr,
                "sluice_txn_verifications_total",
            )
        })
        .sum();
    assert!(asked >= 2.0, "the leaders asked the coordinator: {asked}");

    // Transaction version 2: the leader of a partition elsewhere adds it to the transaction
    // with the coordinator (AddPartitionsToTxn v5 between brokers), and the coordinator's
    // markers carry the epoch EndTxn v5 hands out.
    let mut t = t;
    let o = leader(other_leader);
    assert_eq!(
        settled("v12 produce", || produce(&o, 12, &t, "cv", other, 0, 2)),
        0
    );
    end_v5_ok(&coordinator, &mut t, true);
    retry("commit marker", || match lso_and_hw(&o, "cv", other) {
        (3, 3) => Ok(()),
        _ => Err(-1),
    });
    let late = Txn {
        epoch: t.epoch - 1,
        ..t
    };
    assert_eq!(
        produce(&o, 12, &late, "cv", other, 2, 1),
        INVALID_PRODUCER_EPOCH
    );

    // The cluster's transaction.version: changed through one broker, every broker lists it.
    for i in 0..3 {
        assert_eq!(finalized_transaction_version(&leader(i)), Some(2));
    }
    let (ok, text) = features(
        &leader(1),
        &["downgrade", "--feature", "transaction.version=1"],
    );
    assert!(ok, "{text}");
    cluster.wait_for("every broker at level 1", || {
        (0..3).all(|i| finalized_transaction_version(&leader(i)) == Some(1))
    });
}

#[test]
fn transactional_offsets_of_a_group_outside_the_transaction_are_refused() {
    for verification in [true, false] {
        let broker = Broker::start(&[
            "--transaction-partition-verification-enable",
            &verification.to_string(),
        ]);
        broker.create_topic("in", 1, &[]);
        let addr = broker.addr.as_str();
        find_coordinator(addr, "tx-o");
        let t = init(addr, "tx-o");
        if !verification {
            // Without verification a commit for a group the transaction never added is taken
            // and pending (UNSTABLE_OFFSET_COMMIT to a read_committed consumer), though the
            // transaction's end will never reach that partition.
            assert_eq!(txn_offset_commit(addr, &t, "g-o", "in", 7), 0);
            assert_eq!(stable_offset(addr, "g-o", "in").0, UNSTABLE_OFFSET_COMMIT);
            continue;
        }
        // Not added with AddOffsetsToTxn: refused, nothing pending.
        assert_eq!(
            txn_offset_commit(addr, &t, "g-o", "in", 7),
            INVALID_TXN_STATE
        );
        assert_eq!(stable_offset(addr, "g-o", "in"), (0, -1));
        // Added: taken, pending until the commit marker, then the group's offset.
        add_offsets(addr, &t, "g-o");
        assert_eq!(txn_offset_commit(addr, &t, "g-o", "in", 42), 0);
        assert_eq!(stable_offset(addr, "g-o", "in").0, UNSTABLE_OFFSET_COMMIT);
        end(addr, &t, true);
        retry("committed offset", || {
            match stable_offset(addr, "g-o", "in") {
                (0, 42) => Ok(()),
                (e, _) => Err(e),
            }
        });
        // A late commit of the ended transaction: refused, and nothing left pending.
        let late = settled("late commit", || {
            txn_offset_commit(addr, &t, "g-o", "in", 99)
        });
        assert_eq!(late, INVALID_TXN_STATE);
        assert_eq!(stable_offset(addr, "g-o", "in"), (0, 42));
        assert!(
            metric(
                &broker.metrics_addr,
                "sluice_txn_verification_failures_total"
            ) >= 2.0
        );
    }
}

/// The `transaction.version` level a broker's ApiVersions (v3) finalizes, if any.
fn finalized_transaction_version(addr: &str) -> Option<i16> {
    finalized_transaction_version_at(addr).0
}

/// The finalized `transaction.version` ApiVersions v3 lists, and the features epoch.
fn finalized_transaction_version_at(addr: &str) -> (Option<i16>, i64) {
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
    let r: ApiVersionsResponse = Raw::connect(addr).call(
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(sb("sluice-test"))
            .with_client_software_version(sb("1")),
    );
    assert_eq!(r.error_code, 0);
    assert!(r.finalized_features_epoch >= 0);
    let supported = r
        .supported_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map(|f| (f.min_version, f.max_version));
    assert_eq!(supported, Some((0, 2)));
    let level = r
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map(|f| f.max_version_level);
    (level, r.finalized_features_epoch)
}

/// `sluice features ARGS` against `addr`: (success, stdout + stderr).
fn features(addr: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("features")
        .args(args)
        .args(["--bootstrap", addr, "--timeout-ms", "10000"])
        .env_remove("SLUICE_BOOTSTRAP")
        .output()
        .expect("run sluice features");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `transaction.version` is the cluster's (KIP-584): a node finalizes `--transaction-version`
/// at start when the cluster has no level; UpdateFeatures (`sluice features`) changes it, and
/// the changed level outlives a restart whatever the flag says; a downgrade needs a downgrade
/// type, and a refused update changes nothing.
#[test]
fn transaction_version_is_finalized_in_the_cluster_metadata() {
    let mut broker = Broker::start(&[]);
    let addr = broker.addr.clone();
    // Finalized at start: written to the metadata log (the epoch is its offset).
    retry(
        "bootstrap level",
        || match finalized_transaction_version_at(&addr) {
            (Some(2), epoch) if epoch > 0 => Ok(()),
            _ => Err(-1),
        },
    );
    let (ok, text) = features(&addr, &["describe"]);
    assert!(
        ok && text.contains("transaction.version") && text.contains("0-2"),
        "{text}"
    );
    // Refused, nothing changed: down with an upgrade type, out of range, unknown.
    for args in [
        &["upgrade", "--feature", "transaction.version=1"][..],
        &["upgrade", "--feature", "transaction.version=3"],
        &["upgrade", "--feature", "metadata.version=20"],
    ] {
        let (ok, text) = features(&addr, args);
        assert!(
            !ok && text.contains("INVALID_UPDATE_VERSION"),
            "{args:?}: {text}"
        );
    }
    let (ok, text) = features(
        &addr,
        &[
            "downgrade",
            "--feature",
            "transaction.version=1",
            "--dry-run",
        ],
    );
    assert!(ok, "{text}");
    assert_eq!(finalized_transaction_version(&addr), Some(2));
    // A safe downgrade takes: every broker reads it from the metadata.
    let (ok, text) = features(&addr, &["downgrade", "--feature", "transaction.version=1"]);
    assert!(ok, "{text}");
    retry("level 1", || match finalized_transaction_version(&addr) {
        Some(1) => Ok(()),
        _ => Err(-1),
    });
    // It outlives a restart although the flag still says 2.
    broker.stop();
    broker.restart();
    let addr = broker.addr.clone();
    assert_eq!(finalized_transaction_version(&addr), Some(1));
    // Level 0 disables the feature: no longer listed as finalized.
    let (ok, text) = features(&addr, &["downgrade", "--feature", "transaction.version=0"]);
    assert!(ok, "{text}");
    retry("level 0", || match finalized_transaction_version(&addr) {
        None => Ok(()),
        _ => Err(-1),
    });
    let (ok, text) = features(&addr, &["upgrade", "--feature", "transaction.version=2"]);
    assert!(ok, "{text}");
    retry("level 2 again", || {
        match finalized_transaction_version(&addr) {
            Some(2) => Ok(()),
            _ => Err(-1),
        }
    });
}

#[test]
fn version_2_the_leader_adds_partitions_and_every_end_txn_bumps_the_epoch() {
    // Produce v12 adds the partition whether or not part 1's verification is on.
    for verification in [true, false] {
        let broker = Broker::start(&[
            "--transaction-partition-verification-enable",
            &verification.to_string(),
        ]);
        let addr = broker.addr.as_str();
        assert_eq!(finalized_transaction_version(addr), Some(2));
        broker.create_topic("w", 3, &[]);
        find_coordinator(addr, "tx-w");
        let mut t = init(addr, "tx-w");
        let first_epoch = t.epoch;

        // No AddPartitionsToTxn, no AddOffsetsToTxn: Produce v12 and TxnOffsetCommit v5 add
        // the partitions to the transaction.
        assert_eq!(
            settled("v12 produce", || produce(addr, 12, &t, "w", 0, 0, 3)),
            0
        );
        assert_eq!(produce(addr, 12, &t, "w", 0, 3, 2), 0);
        assert_eq!(
            settled("v12 produce", || produce(addr, 12, &t, "w", 1, 0, 1)),
            0
        );
        assert_eq!(lso_and_hw(addr, "w", 0), (0, 5), "open transaction");
        let commit = settled("TxnOffsetCommit v5", || {
            txn_offset_commit_at(5, addr, &t, "g-w", "w", 9)
        });
        assert_eq!(commit, 0);
        assert_eq!(stable_offset(addr, "g-w", "w").0, UNSTABLE_OFFSET_COMMIT);
        // The same requests at the classic versions are refused (nothing added them), when
        // verification is on.
        if verification {
            assert_eq!(produce(addr, 11, &t, "w", 2, 0, 1), TRANSACTION_ABORTABLE);
        }

        // EndTxn v5: committed, the epoch bumped and handed over, the markers carry it.
        let old = t;
        end_v5_ok(addr, &mut t, true);
        retry("commit markers", || {
            match (lso_and_hw(addr, "w", 0), lso_and_hw(addr, "w", 1)) {
                ((6, 6), (2, 2)) => Ok(()),
                _ => Err(-1),
            }
        });
        retry("committed offset", || {
            match stable_offset(addr, "g-w", "w") {
                (0, 9) => Ok(()),
                _ => Err(-1),
            }
        });
        // A retry of that EndTxn (the response was lost) is answered again, no new bump.
        assert_eq!(end_v5(addr, &old, true), (0, (t.pid, t.epoch)));

        // The ended transaction's late batches are fenced by their epoch: where its marker
        // went (an older epoch than the partition's) and where it never wrote (the
        // coordinator refuses to add a partition for an old epoch).
        assert_eq!(
            produce(addr, 12, &old, "w", 0, 5, 1),
            INVALID_PRODUCER_EPOCH
        );
        assert_eq!(
            settled("late batch", || produce(addr, 12, &old, "w", 2, 0, 1)),
            INVALID_PRODUCER_EPOCH
        );
        assert_eq!(
            lso_and_hw(addr, "w", 2),
            (0, 0),
            "nothing written, nothing hanging"
        );

        // The next transaction starts its sequences again under the new epoch.
        assert_eq!(
            settled("next txn", || produce(addr, 12, &t, "w", 0, 0, 2)),
            0
        );
        end_v5_ok(addr, &mut t, false);
        retry("abort marker", || match lso_and_hw(addr, "w", 0) {
            (9, 9) => Ok(()),
            _ => Err(-1),
        });
        // An abort with nothing added still bumps (the producer cannot know whether a leader
        // added a partition); a commit of nothing is INVALID_TXN_STATE.
        let (code, _) = end_v5(addr, &t, true);
        assert_eq!(code, INVALID_TXN_STATE);
        end_v5_ok(addr, &mut t, false);
        assert_eq!(t.epoch, first_epoch + 3);
    }
    // A broker told to keep clients on the classic protocol finalizes level 1.
    let classic = Broker::start(&["--transaction-version", "1"]);
    assert_eq!(finalized_transaction_version(&classic.addr), Some(1));
}
