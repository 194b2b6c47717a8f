//! ListGroups: every group of every shard's coordinator, filtered by state (v4+,
//! case-insensitive) and type (v5+; all groups here are "classic").

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_DESCRIBE, RESOURCE_GROUP};
use crate::shard::{MeshMsg, Shard};
use crate::util::sb;

pub async fn handle(shard: Rc<Shard>, req: ListGroupsRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    let calls = (0..shard.shards).map(|target| {
        shard.request(target, |reply| MeshMsg::Group {
            request: Request::List,
            reply,
        })
    });
    let mut error = 0;
    let mut groups = Vec::new();
    for r in join_all(calls).await {
        match r {
            Ok(Ok(Reply::List(gs))) => groups.extend(gs),
            _ => error = ResponseError::CoordinatorNotAvailable.code(),
        }
    }
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let all_groups = ctx.allowed(
        &shard,
        OP_DESCRIBE,
        crate::security::acl::RESOURCE_CLUSTER,
        crate::security::acl::CLUSTER_NAME,
    );
    let types_ok = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case("classic"));
    let listed = groups
        .into_iter()
        .filter(|g| types_ok && (states.is_empty() || states.contains(&g.state.to_lowercase())))
        // ACLs: DESCRIBE on the cluster lists every group; otherwise those it may DESCRIBE.
        .filter(|g| all_groups || ctx.may(&shard, OP_DESCRIBE, RESOURCE_GROUP, &g.group_id))
        .map(|g| {
            let mut out = ListedGroup::default()
                .with_group_id(GroupId(sb(g.group_id)))
                .with_protocol_type(sb(g.protocol_type));
            if version >= 4 {
                out.group_state = sb(g.state);
            }
            if version >= 5 {
                out.group_type = sb("classic");
            }
            out
        })
        .collect();
    ResponseKind::ListGroups(
        ListGroupsResponse::default()
            .with_error_code(error)
            .with_groups(listed),
    )
}
