//! InitProducerId. Idempotent (non-transactional) producers: a fresh producer id from the
//! controller, or — for a producer that already has one (KIP-360) — the same id with its epoch
//! bumped. Transactional producers: their transactional id's coordinator answers
//! (`shard::txns`, docs/architecture.md §7.1).

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::txn::coordinator::{InitRequest, Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{
    OP_IDEMPOTENT_WRITE, OP_WRITE, RESOURCE_TOPIC, RESOURCE_TRANSACTIONAL_ID,
};
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::txns;
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: InitProducerIdRequest, ctx: Ctx) -> ResponseKind {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    if let Some(id) = &req.transactional_id {
        let id = id.0.as_str().to_owned();
        if !ctx.may(&shard, OP_WRITE, RESOURCE_TRANSACTIONAL_ID, &id) {
            return ResponseKind::InitProducerId(
                resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
            );
        }
        let expected = (pid >= 0).then_some((pid, epoch));
        let reply = txns::call(&shard, &id, |partition| {
            Request::Init(InitRequest {
                transactional_id: id.clone(),
                partition,
                timeout_ms: req.transaction_timeout_ms,
                expected,
            })
        })
        .await;
        return ResponseKind::InitProducerId(match reply {
            Ok(Reply::Init {
                error,
                producer_id,
                producer_epoch,
            }) => resp
                .with_error_code(error)
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch),
            Ok(_) => resp.with_error_code(ResponseError::UnknownServerError.code()),
            Err(e) => resp.with_error_code(e.code()),
        });
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic
    // (KIP-679).
    if !may_write_idempotently(&shard, &ctx) {
        return ResponseKind::InitProducerId(
            resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    if pid >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        return ResponseKind::InitProducerId(
            resp.with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch + 1),
        );
    }
    let r = on_controller(&shard, ControllerOp::AllocateProducerId)
        .await
        .and_then(ControllerReply::producer_id);
    ResponseKind::InitProducerId(match r {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => resp.with_error_code(e.error.code()),
    })
}

fn may_write_idempotently(shard: &Shard, ctx: &Ctx) -> bool {
    use crate::security::acl::{CLUSTER_NAME, RESOURCE_CLUSTER};
    ctx.allowed(shard, OP_IDEMPOTENT_WRITE, RESOURCE_CLUSTER, CLUSTER_NAME)
        || shard
            .metadata()
            .topics
            .keys()
            .any(|t| ctx.allowed(shard, OP_WRITE, RESOURCE_TOPIC, t))
        || ctx.may_cluster(shard, OP_IDEMPOTENT_WRITE)
}
