//! LeaveGroup: one member (v0–2) or a batch of members by id or group.instance.id (v3+).

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{LeaveRequest, Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_READ, RESOURCE_GROUP};
use crate::shard::groups;
use crate::shard::Shard;
use crate::util::sb;

pub async fn handle(shard: Rc<Shard>, req: LeaveGroupRequest, ctx: Ctx) -> ResponseKind {
    if !ctx.may(&shard, OP_READ, RESOURCE_GROUP, req.group_id.0.as_str()) {
        return ResponseKind::LeaveGroup(
            LeaveGroupResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let version = ctx.version;
    let group_id = req.group_id.0.as_str().to_owned();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_owned(),
                    m.group_instance_id.as_ref().map(|s| s.as_str().to_owned()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.as_str().to_owned(), None)]
    };
    let leave = |partition| LeaveRequest {
        group_id: group_id.clone(),
        partition,
        members,
    };
    let mut resp = LeaveGroupResponse::default();
    match groups::call(&shard, &group_id, |partition| {
        Request::Leave(leave(partition))
    })
    .await
    {
        Ok(Reply::Leave(top, results)) => {
            if version >= 3 {
                resp.members = results
                    .into_iter()
                    .map(|(m, i, e)| {
                        MemberResponse::default()
                            .with_member_id(sb(m))
                            .with_group_instance_id(i.map(sb))
                            .with_error_code(e)
                    })
                    .collect();
                // v3+: the top level carries only group-wide errors.
                if resp.members.is_empty() {
                    resp.error_code = top;
                }
            } else {
                resp.error_code = top;
            }
        }
        Ok(_) => resp.error_code = ResponseError::UnknownServerError.code(),
        Err(e) => resp.error_code = e.code(),
    }
    ResponseKind::LeaveGroup(resp)
}
