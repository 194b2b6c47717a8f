//! InitProducerId for idempotent (non-transactional) producers: a fresh producer id from the
//! controller, or — for a producer that already has one (KIP-360) — the same id with its epoch
//! bumped. Transactions are not supported; a transactional id is refused.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: InitProducerIdRequest, _ctx: Ctx) -> ResponseKind {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return ResponseKind::InitProducerId(
            resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
        );
    }
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
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
