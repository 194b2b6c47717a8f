//! FindCoordinator: a group's coordinator is the broker leading its `__consumer_offsets`
//! partition (this broker, on a single node); COORDINATOR_NOT_AVAILABLE until that topic exists
//! and the partition has a live leader. A cluster creates the topic on the first request.
//! Batched keys (v4+) answer per key. A transactional id's coordinator (key type 1) is the
//! broker leading its `__transaction_state` partition; the topic is created on the first such
//! lookup (as Kafka does), replicated in a cluster with `min.insync.replicas` 2 (Kafka's
//! `transaction.state.log.min.isr`) where it has more than one replica.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use tracing::warn;

use crate::controller::{NewTopic, OpError};
use crate::coordinator::group::{offsets_topic_configs, OFFSETS_TOPIC};
use crate::coordinator::txn::{transaction_state_topic_configs, TRANSACTION_STATE_TOPIC};
use crate::security::acl::{OP_DESCRIBE, RESOURCE_GROUP, RESOURCE_TRANSACTIONAL_ID};
use crate::shard::controller::{self, ControllerOp, ControllerReply};
use crate::shard::{groups, txns};
use crate::shard::{BrokerInfo, Shard};
use crate::util::sb;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn lookup(
    shard: &Shard,
    key: &str,
    key_type: i8,
    listener: &str,
) -> Result<BrokerInfo, (ResponseError, &'static str)> {
    if key_type == KEY_TYPE_TRANSACTION {
        let unavailable = (
            ResponseError::CoordinatorNotAvailable,
            "the transactional id's __transaction_state partition is not available yet",
        );
        let (_, leader) = txns::coordinator_of(shard, key).map_err(|_| unavailable)?;
        return shard.broker(leader, listener).ok_or(unavailable);
    }
    if key_type != KEY_TYPE_GROUP {
        return Err((
            ResponseError::InvalidRequest,
            "unknown coordinator key type",
        ));
    }
    let unavailable = (
        ResponseError::CoordinatorNotAvailable,
        "the group's __consumer_offsets partition is not available yet",
    );
    let (_, leader) = groups::coordinator_of(shard, key).map_err(|_| unavailable)?;
    shard.broker(leader, listener).ok_or(unavailable)
}

/// A cluster creates `__consumer_offsets` when a client first looks for a coordinator.
fn request_offsets_topic(shard: &Rc<Shard>) {
    if !shard.config.clustered()
        || shard.metadata().topic(OFFSETS_TOPIC).is_some()
        || shard.groups.offsets_topic_requested.replace(true)
    {
        return;
    }
    // Kafka refuses to create the topic with fewer live brokers than the factor; Sluice takes
    // what there is (a one- or two-broker cluster still gets its groups).
    let live = shard.metadata().live_brokers().count().max(1);
    let replication_factor = shard
        .config
        .args
        .offsets_topic_replication_factor
        .min(i16::try_from(live).unwrap_or(i16::MAX));
    let topic = NewTopic {
        assignment: None,
        name: OFFSETS_TOPIC.to_owned(),
        partitions: shard.config.args.offsets_topic_num_partitions,
        replication_factor,
        configs: offsets_topic_configs(),
    };
    create_internal_topic(shard, topic, |s| &s.groups.offsets_topic_requested);
}

/// `__transaction_state` is created when a client first looks for a transaction coordinator
/// (its partitions then load in `txns::run` on their leaders). A cluster replicates it
/// `--transaction-state-log-replication-factor` times (capped at the live brokers, as for
/// `__consumer_offsets`) and, with more than one replica, asks two in sync for each write.
fn request_transaction_topic(shard: &Rc<Shard>) {
    if shard.metadata().topic(TRANSACTION_STATE_TOPIC).is_some()
        || shard.txns.topic_requested.replace(true)
    {
        return;
    }
    let mut configs = transaction_state_topic_configs();
    let replication_factor = if shard.config.clustered() {
        let live = shard.metadata().live_brokers().count().max(1);
        let rf = shard
            .config
            .args
            .transaction_state_log_replication_factor
            .min(i16::try_from(live).unwrap_or(i16::MAX));
        configs.insert("min.insync.replicas".to_owned(), rf.clamp(1, 2).to_string());
        rf
    } else {
        -1
    };
    let topic = NewTopic {
        assignment: None,
        name: TRANSACTION_STATE_TOPIC.to_owned(),
        partitions: shard.config.args.transaction_state_log_num_partitions,
        replication_factor,
        configs,
    };
    create_internal_topic(shard, topic, |s| &s.txns.topic_requested);
}

/// Creates an internal topic in the background, through the controller's shard (this request
/// may have arrived on any shard). On failure `requested(shard)` is cleared, so the next
/// FindCoordinator tries again.
fn create_internal_topic(
    shard: &Rc<Shard>,
    topic: NewTopic,
    requested: fn(&Shard) -> &std::cell::Cell<bool>,
) {
    let s = shard.clone();
    crate::runtime::spawn(async move {
        let name = topic.name.clone();
        let op = ControllerOp::CreateTopics {
            topics: vec![topic],
            validate_only: false,
        };
        let created = controller::on_controller(&s, op)
            .await
            .and_then(ControllerReply::topics)
            .and_then(|mut r| r.pop().unwrap_or_else(|| Err(OpError::new(ResponseError::UnknownServerError, "no result"))));
        match created {
            Ok(_) => {}
            Err(e) if matches!(e.error, ResponseError::TopicAlreadyExists) => {}
            Err(e) => {
                warn!(topic = %name, error = %e.message, "creating an internal topic failed; the next FindCoordinator retries");
                requested(&s).set(false);
            }
        }
    })
    .detach();
}

pub async fn handle(shard: Rc<Shard>, req: FindCoordinatorRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    if req.key_type == KEY_TYPE_TRANSACTION {
        request_transaction_topic(&shard);
    } else {
        request_offsets_topic(&shard);
    }
    let keys: Vec<StrBytes> = if version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let c = Coordinator::default().with_key(key.clone());
        // ACLs: DESCRIBE on the group or the transactional id.
        let (resource, denial) = if req.key_type == KEY_TYPE_TRANSACTION {
            (
                RESOURCE_TRANSACTIONAL_ID,
                ResponseError::TransactionalIdAuthorizationFailed,
            )
        } else {
            (RESOURCE_GROUP, ResponseError::GroupAuthorizationFailed)
        };
        let looked_up = if ctx.may(&shard, OP_DESCRIBE, resource, key.as_str()) {
            lookup(&shard, key.as_str(), req.key_type, ctx.listener)
        } else {
            Err((denial, "not authorized"))
        };
        coordinators.push(match looked_up {
            Ok(b) => c
                .with_node_id(BrokerId(b.id))
                .with_host(sb(b.host))
                .with_port(b.port),
            Err((e, why)) => c
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(e.code())
                .with_error_message(Some(sb(why))),
        });
    }
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = coordinators;
    } else if let Some(c) = coordinators.pop() {
        resp.error_code = c.error_code;
        if version >= 1 {
            resp.error_message = c.error_message;
        }
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    ResponseKind::FindCoordinator(resp)
}
