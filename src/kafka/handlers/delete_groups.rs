//! DeleteGroups: an empty group and all its committed offsets are removed (tombstones in
//! `__consumer_offsets`); a group with members answers NON_EMPTY_GROUP.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_DELETE, RESOURCE_GROUP};
use crate::shard::groups;
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, req: DeleteGroupsRequest, ctx: Ctx) -> ResponseKind {
    // ACLs: DELETE on each group.
    let allowed: Vec<bool> = req
        .groups_names
        .iter()
        .map(|g| ctx.may(&shard, OP_DELETE, RESOURCE_GROUP, g.0.as_str()))
        .collect();
    let calls = req.groups_names.iter().zip(allowed).map(|(g, allowed)| {
        let shard = shard.clone();
        let id = g.0.as_str().to_owned();
        async move {
            if !allowed {
                return ResponseError::GroupAuthorizationFailed.code();
            }
            let gid = id.clone();
            match groups::call(&shard, &id, move |partition| {
                Request::Delete(gid, partition)
            })
            .await
            {
                Ok(Reply::Delete(e)) => e,
                Ok(_) => ResponseError::UnknownServerError.code(),
                Err(e) => e.code(),
            }
        }
    });
    let results = join_all(calls).await;
    let results = req
        .groups_names
        .iter()
        .zip(results)
        .map(|(g, e)| {
            DeletableGroupResult::default()
                .with_group_id(GroupId(g.0.clone()))
                .with_error_code(e)
        })
        .collect();
    ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
}
