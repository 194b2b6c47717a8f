//! DescribeGroups: state, protocol type and name, members with their metadata and assignment
//! (both only in Stable, as Kafka). Unknown groups are "Dead" (v6+: GROUP_ID_NOT_FOUND).

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::coordinator::group::coordinator::{Reply, Request};
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_DESCRIBE, RESOURCE_GROUP};
use crate::shard::groups;
use crate::shard::Shard;
use crate::util::sb;

pub async fn handle(shard: Rc<Shard>, req: DescribeGroupsRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    // ACLs: DESCRIBE on each group.
    let allowed: Vec<bool> = req
        .groups
        .iter()
        .map(|g| ctx.may(&shard, OP_DESCRIBE, RESOURCE_GROUP, g.0.as_str()))
        .collect();
    let calls = req.groups.iter().zip(allowed).map(|(g, allowed)| {
        let shard = shard.clone();
        let id = g.0.as_str().to_owned();
        async move {
            if !allowed {
                return Err(ResponseError::GroupAuthorizationFailed);
            }
            let gid = id.clone();
            groups::call(&shard, &id, move |partition| {
                Request::Describe(gid, partition)
            })
            .await
        }
    });
    let results = join_all(calls).await;
    let groups = req
        .groups
        .iter()
        .zip(results)
        .map(|(id, r)| {
            let base = DescribedGroup::default()
                .with_group_id(GroupId(id.0.clone()))
                .with_group_state(sb("Dead"));
            match r {
                Ok(Reply::Describe(d)) => {
                    let mut out = base
                        .with_error_code(d.error)
                        .with_group_state(sb(d.state.clone()))
                        .with_protocol_type(sb(d.protocol_type))
                        .with_protocol_data(sb(d.protocol))
                        .with_members(
                            d.members
                                .into_iter()
                                .map(|m| {
                                    let mut dm = DescribedGroupMember::default()
                                        .with_member_id(sb(m.member_id))
                                        .with_client_id(sb(m.client_id))
                                        .with_client_host(sb(m.client_host))
                                        .with_member_metadata(m.metadata)
                                        .with_member_assignment(m.assignment);
                                    if version >= 4 {
                                        dm.group_instance_id = m.instance_id.map(sb);
                                    }
                                    dm
                                })
                                .collect(),
                        );
                    if version >= 6 && d.error == 0 && d.state == "Dead" {
                        out.error_code = ResponseError::GroupIdNotFound.code();
                        out.error_message = Some(sb(format!("group {} not found", id.0.as_str())));
                    }
                    out
                }
                Ok(_) => base.with_error_code(ResponseError::UnknownServerError.code()),
                Err(e) => base.with_error_code(e.code()),
            }
        })
        .collect();
    ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
}
