//! Heartbeat: keeps a member's session alive; tells it when a rebalance started.

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{HeartbeatRequest as Hb, Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_READ, RESOURCE_GROUP};
use crate::shard::groups;
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: HeartbeatRequest, ctx: Ctx) -> ResponseKind {
    if !ctx.may(&shard, OP_READ, RESOURCE_GROUP, req.group_id.0.as_str()) {
        return ResponseKind::Heartbeat(
            HeartbeatResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let group_id = req.group_id.0.as_str().to_owned();
    let hb = |partition| Hb {
        group_id: group_id.clone(),
        partition,
        generation: req.generation_id,
        member_id: req.member_id.as_str().to_owned(),
        instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
    };
    let error = match groups::call(&shard, &group_id, |partition| {
        Request::Heartbeat(hb(partition))
    })
    .await
    {
        Ok(Reply::Heartbeat(e)) => e,
        Ok(_) => ResponseError::UnknownServerError.code(),
        Err(e) => e.code(),
    };
    ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(error))
}
