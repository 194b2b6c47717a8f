//! SyncGroup: the leader hands in every member's assignment; each member gets its own.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{Reply, Request, SyncRequest};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_READ, RESOURCE_GROUP};
use crate::shard::groups;
use crate::shard::Shard;
use crate::util::sb;

pub async fn handle(shard: Rc<Shard>, req: SyncGroupRequest, ctx: Ctx) -> ResponseKind {
    if !ctx.may(&shard, OP_READ, RESOURCE_GROUP, req.group_id.0.as_str()) {
        return ResponseKind::SyncGroup(
            SyncGroupResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let version = ctx.version;
    let group_id = req.group_id.0.as_str().to_owned();
    let sync = |partition| SyncRequest {
        group_id: group_id.clone(),
        partition,
        generation: req.generation_id,
        member_id: req.member_id.as_str().to_owned(),
        instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        protocol_type: req.protocol_type.as_ref().map(|s| s.as_str().to_owned()),
        protocol_name: req.protocol_name.as_ref().map(|s| s.as_str().to_owned()),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.as_str().to_owned(), a.assignment.clone()))
            .collect(),
    };
    let mut resp = SyncGroupResponse::default();
    match groups::call(&shard, &group_id, |partition| {
        Request::Sync(sync(partition))
    })
    .await
    {
        Ok(Reply::Sync(r)) => {
            resp.error_code = r.error;
            resp.assignment = r.assignment;
            if version >= 5 {
                resp.protocol_type = r.protocol_type.map(sb);
                resp.protocol_name = r.protocol_name.map(sb);
            }
        }
        Ok(_) => resp.error_code = ResponseError::UnknownServerError.code(),
        Err(e) => resp.error_code = e.code(),
    }
    ResponseKind::SyncGroup(resp)
}
