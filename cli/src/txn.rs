//! `sluice txn list|describe|abort`, as Kafka's `kafka-transactions.sh`.
//!
//! ListTransactions goes to every broker (each lists the transactional ids it coordinates);
//! DescribeTransactions to the id's coordinator (FindCoordinator, key type 1). `abort` ends a
//! hanging transaction in one partition by writing an abort marker there (WriteTxnMarkers to the
//! partition's leader), given the producer id, epoch and coordinator epoch — for a transaction
//! its coordinator lost track of; a coordinator that still knows it aborts it by itself after
//! its timeout.

use clap::{Args, Subcommand};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use serde::Serialize;

use crate::client::{sb, versions, Session};
use crate::output::{emit, join, Table};
use crate::{AdminError, ClientArgs};

#[derive(Debug, Args)]
pub struct TxnCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: TxnAction,
}

#[derive(Debug, Subcommand)]
pub enum TxnAction {
    /// Transactional ids on every broker, with their producer id and state.
    List {
        /// Only these states (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
        /// CompleteAbort).
        #[arg(long = "state")]
        states: Vec<String>,
    },
    /// State, producer id and epoch, timeout, start time and partitions of transactional ids.
    Describe {
        #[arg(required = true)]
        transactional_ids: Vec<String>,
    },
    /// Write an abort marker for a hanging transaction into one partition.
    Abort {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        #[arg(long)]
        producer_id: i64,
        #[arg(long)]
        producer_epoch: i16,
        /// The coordinator epoch of the marker (the leader epoch of the id's
        /// `__transaction_state` partition); an older one than the partition saw is refused.
        #[arg(long)]
        coordinator_epoch: i32,
    },
}

pub fn run(cmd: TxnCmd) -> Result<(), AdminError> {
    match cmd.action {
        TxnAction::List { states } => list(&cmd.client, &states),
        TxnAction::Describe { transactional_ids } => describe(&cmd.client, &transactional_ids),
        TxnAction::Abort {
            topic,
            partition,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => abort(
            &cmd.client,
            &topic,
            partition,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        ),
    }
}

#[derive(Serialize)]
struct Listed {
    transactional_id: String,
    producer_id: i64,
    state: String,
    coordinator: i32,
}

fn list(c: &ClientArgs, states: &[String]) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let mut out = Vec::new();
    let req = ListTransactionsRequest::default()
        .with_state_filters(states.iter().map(|st| sb(st.as_str())).collect());
    for node in s.broker_ids()? {
        let resp: ListTransactionsResponse =
            s.broker(node)?
                .call(ApiKey::ListTransactions, versions::LIST_TRANSACTIONS, &req)?;
        AdminError::check(
            resp.error_code,
            None,
            format!("ListTransactions on broker {node}"),
        )?;
        if !resp.unknown_state_filters.is_empty() {
            let unknown: Vec<String> = resp
                .unknown_state_filters
                .iter()
                .map(|f| f.to_string())
                .collect();
            return Err(AdminError::Usage(format!(
                "unknown transaction states: {}",
                unknown.join(", ")
            )));
        }
        out.extend(resp.transaction_states.into_iter().map(|t| Listed {
            transactional_id: t.transactional_id.0.to_string(),
            producer_id: t.producer_id.0,
            state: t.transaction_state.to_string(),
            coordinator: node,
        }));
    }
    out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    emit(c.format, &out, || {
        let mut t = Table::new(&["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE", "COORDINATOR"]);
        for x in &out {
            t.row(vec![
                x.transactional_id.clone(),
                x.producer_id.to_string(),
                x.state.clone(),
                x.coordinator.to_string(),
            ]);
        }
        t.render()
    })
}

/// The broker coordinating `transactional_id`.
fn coordinator(s: &mut Session, transactional_id: &str) -> Result<i32, AdminError> {
    let req = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![sb(transactional_id)]);
    let resp: FindCoordinatorResponse =
        s.bootstrap()
            .call(ApiKey::FindCoordinator, versions::FIND_COORDINATOR, &req)?;
    let c = resp
        .coordinators
        .first()
        .ok_or_else(|| AdminError::Protocol {
            addr: s.bootstrap().addr().to_owned(),
            reason: "FindCoordinator answered no coordinator".into(),
        })?;
    AdminError::check(
        c.error_code,
        c.error_message.as_deref(),
        format!("transactional id {transactional_id:?}: FindCoordinator"),
    )?;
    Ok(c.node_id.0)
}

#[derive(Serialize)]
struct Described {
    transactional_id: String,
    coordinator: i32,
    state: String,
    producer_id: i64,
    producer_epoch: i16,
    timeout_ms: i32,
    start_time_ms: i64,
    partitions: Vec<(String, Vec<i32>)>,
}

fn describe(c: &ClientArgs, ids: &[String]) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let mut out = Vec::new();
    for id in ids {
        let node = coordinator(&mut s, id)?;
        let req = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(sb(id.as_str()))]);
        let resp: DescribeTransactionsResponse = s.broker_or_bootstrap(node)?.call(
            ApiKey::DescribeTransactions,
            versions::DESCRIBE_TRANSACTIONS,
            &req,
        )?;
        let t = resp
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| AdminError::NotFound(format!("transactional id {id:?}")))?;
        AdminError::check(
            t.error_code,
            None,
            format!("transactional id {id:?}: DescribeTransactions"),
        )?;
        out.push(Described {
            transactional_id: id.clone(),
            coordinator: node,
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions: t
                .topics
                .into_iter()
                .map(|d| (d.topic.0.to_string(), d.partitions))
                .collect(),
        });
    }
    emit(c.format, &out, || {
        let mut t = Table::new(&[
            "TRANSACTIONAL-ID",
            "COORDINATOR",
            "STATE",
            "PRODUCER-ID",
            "EPOCH",
            "TIMEOUT-MS",
            "START-MS",
            "PARTITIONS",
        ]);
        for d in &out {
            let parts: Vec<String> = d
                .partitions
                .iter()
                .map(|(topic, ps)| format!("{topic}:{}", join(ps)))
                .collect();
            t.row(vec![
                d.transactional_id.clone(),
                d.coordinator.to_string(),
                d.state.clone(),
                d.producer_id.to_string(),
                d.producer_epoch.to_string(),
                d.timeout_ms.to_string(),
                d.start_time_ms.to_string(),
                parts.join(" "),
            ]);
        }
        t.render()
    })
}

fn abort(
    c: &ClientArgs,
    topic: &str,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let leaders = s.leaders(&[topic.to_owned()])?;
    let leader = *leaders
        .get(&(topic.to_owned(), partition))
        .ok_or_else(|| AdminError::NotFound(format!("partition {topic}-{partition}")))?;
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_transaction_result(false)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_partition_indexes(vec![partition])])]);
    let resp: WriteTxnMarkersResponse = s.broker_or_bootstrap(leader)?.call(
        ApiKey::WriteTxnMarkers,
        versions::WRITE_TXN_MARKERS,
        &req,
    )?;
    let code = resp
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| &t.partitions)
        .map(|p| p.error_code)
        .find(|c| *c != 0)
        .unwrap_or(0);
    AdminError::check(code, None, format!("abort marker on {topic}-{partition}"))?;
    #[derive(Serialize)]
    struct Aborted<'a> {
        topic: &'a str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
    }
    let done = Aborted {
        topic,
        partition,
        producer_id,
        producer_epoch,
    };
    emit(c.format, &done, || {
        format!("aborted producer {producer_id} (epoch {producer_epoch}) on {topic}-{partition}\n")
    })
}
