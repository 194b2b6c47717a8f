//! CreateAcls, DescribeAcls and DeleteAcls (KIP-11, KIP-290's pattern types). Bindings live in
//! the cluster metadata (`MetadataRecord::Acl`), changed by the active controller; every shard
//! decides from its image ([`crate::kafka::dispatch::Ctx::may`]).
//!
//! Without `--authorizer` the three answer SECURITY_DISABLED, as Kafka does with no authorizer;
//! they need ALTER (create, delete) or DESCRIBE (describe) on the cluster.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::security::acl::{self, AclBinding, AclFilter, OP_ALTER, OP_DESCRIBE};
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::sb;

/// Bindings or filters one request may carry.
const ACLS_PER_REQUEST_MAX: usize = 10_000;

/// Why none of the request is served: SECURITY_DISABLED or CLUSTER_AUTHORIZATION_FAILED.
fn refused(shard: &Shard, ctx: &Ctx, operation: i8) -> Option<(ResponseError, &'static str)> {
    if !shard.config.authorizer.enabled {
        return Some((
            ResponseError::SecurityDisabled,
            "no authorizer is configured (--authorizer standard)",
        ));
    }
    (!ctx.may_cluster(shard, operation)).then_some((
        ResponseError::ClusterAuthorizationFailed,
        "not authorized on the cluster",
    ))
}

pub async fn create(shard: Rc<Shard>, req: CreateAclsRequest, ctx: Ctx) -> ResponseKind {
    let n = req.creations.len();
    let answer = |results: Vec<AclCreationResult>| {
        ResponseKind::CreateAcls(CreateAclsResponse::default().with_results(results))
    };
    let fail = |e: ResponseError, m: &str| {
        AclCreationResult::default()
            .with_error_code(e.code())
            .with_error_message(Some(sb(m)))
    };
    if let Some((e, m)) = refused(&shard, &ctx, OP_ALTER) {
        return answer((0..n).map(|_| fail(e, m)).collect());
    }
    let mut results: Vec<Option<AclCreationResult>> = vec![None; n];
    let mut valid = Vec::new();
    for (i, c) in req.creations.iter().enumerate().take(ACLS_PER_REQUEST_MAX) {
        let b = AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.as_str().to_owned(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.as_str().to_owned(),
            host: c.host.as_str().to_owned(),
            operation: c.operation,
            permission_type: c.permission_type,
        };
        match acl::validate(&b) {
            Ok(()) => valid.push((i, b)),
            Err(why) => results[i] = Some(fail(ResponseError::InvalidRequest, &why)),
        }
    }
    let outcome = if valid.is_empty() {
        Ok(())
    } else {
        let bindings = valid.iter().map(|(_, b)| b.clone()).collect();
        on_controller(&shard, ControllerOp::CreateAcls(bindings))
            .await
            .and_then(ControllerReply::done)
    };
    for (i, _) in &valid {
        results[*i] = Some(match &outcome {
            Ok(()) => AclCreationResult::default(),
            Err(e) => fail(e.error, &e.message),
        });
    }
    answer(
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    fail(
                        ResponseError::InvalidRequest,
                        "too many ACLs in one request",
                    )
                })
            })
            .collect(),
    )
}

fn filter(
    resource_type: i8,
    resource_name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission_type: i8,
) -> AclFilter {
    AclFilter {
        resource_type,
        resource_name: resource_name.map(str::to_owned),
        pattern_type,
        principal: principal.map(str::to_owned),
        host: host.map(str::to_owned),
        operation,
        permission_type,
    }
}

pub async fn describe(shard: Rc<Shard>, req: DescribeAclsRequest, ctx: Ctx) -> ResponseKind {
    if let Some((e, m)) = refused(&shard, &ctx, OP_DESCRIBE) {
        return ResponseKind::DescribeAcls(
            DescribeAclsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(sb(m))),
        );
    }
    let f = filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref().map(|s| s.as_str()),
        req.pattern_type_filter,
        req.principal_filter.as_ref().map(|s| s.as_str()),
        req.host_filter.as_ref().map(|s| s.as_str()),
        req.operation,
        req.permission_type,
    );
    let image = shard.metadata();
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls.iter().filter(|b| f.matches(b)) {
        by_resource
            .entry((b.resource_type, b.resource_name.clone(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(sb(b.principal.as_str()))
                    .with_host(sb(b.host.as_str()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission_type),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt)
                .with_resource_name(sb(name))
                .with_pattern_type(pt)
                .with_acls(acls)
        })
        .collect();
    ResponseKind::DescribeAcls(DescribeAclsResponse::default().with_resources(resources))
}

pub async fn delete(shard: Rc<Shard>, req: DeleteAclsRequest, ctx: Ctx) -> ResponseKind {
    let answer = |results: Vec<DeleteAclsFilterResult>| {
        ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results))
    };
    let fail = |e: ResponseError, m: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(e.code())
            .with_error_message(Some(sb(m)))
    };
    if let Some((e, m)) = refused(&shard, &ctx, OP_ALTER) {
        return answer(req.filters.iter().map(|_| fail(e, m)).collect());
    }
    let filters: Vec<AclFilter> = req
        .filters
        .iter()
        .take(ACLS_PER_REQUEST_MAX)
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref().map(|s| s.as_str()),
                f.pattern_type_filter,
                f.principal_filter.as_ref().map(|s| s.as_str()),
                f.host_filter.as_ref().map(|s| s.as_str()),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let n = filters.len();
    match on_controller(&shard, ControllerOp::DeleteAcls(filters))
        .await
        .and_then(ControllerReply::acls_deleted)
    {
        Ok(per_filter) => answer(
            per_filter
                .into_iter()
                .map(|removed| {
                    DeleteAclsFilterResult::default().with_matching_acls(
                        removed
                            .into_iter()
                            .map(|b| {
                                DeleteAclsMatchingAcl::default()
                                    .with_resource_type(b.resource_type)
                                    .with_resource_name(sb(b.resource_name))
                                    .with_pattern_type(b.pattern_type)
                                    .with_principal(sb(b.principal))
                                    .with_host(sb(b.host))
                                    .with_operation(b.operation)
                                    .with_permission_type(b.permission_type)
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
        Err(e) => answer((0..n).map(|_| fail(e.error, &e.message)).collect()),
    }
}
