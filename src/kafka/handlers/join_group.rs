//! JoinGroup: forwarded to the group's coordinator shard; answers once the rebalance completes
//! (or at once with MEMBER_ID_REQUIRED, errors, or the current generation).

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{JoinRequest, JoinResult, Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_READ, RESOURCE_GROUP};
use crate::shard::groups;
use crate::shard::Shard;
use crate::util::sb;

pub async fn handle(shard: Rc<Shard>, req: JoinGroupRequest, ctx: Ctx) -> ResponseKind {
    if !ctx.may(&shard, OP_READ, RESOURCE_GROUP, req.group_id.0.as_str()) {
        return ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let version = ctx.version;
    let client_id = ctx.client_id.unwrap_or_default();
    let group_id = req.group_id.0.as_str().to_owned();
    let join = |partition| JoinRequest {
        group_id: group_id.clone(),
        partition,
        member_id: req.member_id.as_str().to_owned(),
        instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        client_id,
        client_host: String::new(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.as_str().to_owned(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_owned(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let result = match groups::call(&shard, &group_id, |partition| {
        Request::Join(join(partition))
    })
    .await
    {
        Ok(Reply::Join(r)) => r,
        Ok(_) => error_result(ResponseError::UnknownServerError, &req),
        Err(e) => error_result(e, &req),
    };
    ResponseKind::JoinGroup(response(result, version))
}

fn error_result(e: ResponseError, req: &JoinGroupRequest) -> JoinResult {
    JoinResult {
        error: e.code(),
        generation: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: req.member_id.as_str().to_owned(),
        members: Vec::new(),
    }
}

fn response(r: JoinResult, version: i16) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            let mut out = JoinGroupResponseMember::default()
                .with_member_id(sb(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                out.group_instance_id = m.instance_id.map(sb);
            }
            out
        })
        .collect();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_leader(sb(r.leader))
        .with_member_id(sb(r.member_id))
        .with_members(members);
    resp.protocol_name = if version >= 7 {
        r.protocol_name.map(sb)
    } else {
        Some(sb(r.protocol_name.unwrap_or_default()))
    };
    if version >= 7 {
        resp.protocol_type = r.protocol_type.map(sb);
    }
    resp
}
