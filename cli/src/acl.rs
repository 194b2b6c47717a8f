//! `sluice acl add|list|remove`, as Kafka's `kafka-acls.sh`: CreateAcls, DescribeAcls and
//! DeleteAcls on the bootstrap broker (it forwards changes to the active controller).
//!
//! A binding: principals (`--allow-principal User:alice`, `--deny-principal User:*`), hosts
//! (`--host`, default `*`), operations (`--operation Read`, repeatable), and one resource
//! (`--topic`, `--group`, `--transactional-id` or `--cluster`) with its pattern
//! (`--resource-pattern-type literal|prefixed`).

use clap::{Args, Subcommand};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use serde::Serialize;

use crate::client::{sb, versions};
use crate::output::{emit, Table};
use crate::{AdminError, ClientArgs};

#[derive(Debug, Args)]
pub struct AclCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: AclAction,
}

/// Which resource, as kafka-acls.sh names it.
#[derive(Debug, Clone, Args)]
pub struct Resource {
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub transactional_id: Option<String>,
    #[arg(long)]
    pub cluster: bool,
    /// literal (the name, or `*` for all) or prefixed (names starting with it).
    #[arg(long, default_value = "literal")]
    pub resource_pattern_type: String,
}

#[derive(Debug, Clone, Args)]
pub struct Binding {
    #[command(flatten)]
    pub resource: Resource,
    #[arg(long = "allow-principal")]
    pub allow: Vec<String>,
    #[arg(long = "deny-principal")]
    pub deny: Vec<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
    /// AlterConfigs, IdempotentWrite or All.
    #[arg(long = "operation", required = true)]
    pub operations: Vec<String>,
    #[arg(long, default_value = "*")]
    pub host: String,
}

#[derive(Debug, Subcommand)]
pub enum AclAction {
    /// Create bindings: every principal × operation given.
    Add(Binding),
    /// Bindings, optionally of one resource or principal.
    List {
        #[arg(long)]
        topic: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        transactional_id: Option<String>,
        #[arg(long)]
        cluster: bool,
        #[arg(long)]
        principal: Option<String>,
    },
    /// Delete exactly the bindings `add` with the same flags creates.
    Remove(Binding),
}

pub fn run(cmd: AclCmd) -> Result<(), AdminError> {
    match cmd.action {
        AclAction::Add(b) => add(&cmd.client, &b),
        AclAction::List {
            topic,
            group,
            transactional_id,
            cluster,
            principal,
        } => {
            let r = Resource {
                topic,
                group,
                transactional_id,
                cluster,
                resource_pattern_type: "literal".into(),
            };
            list(&cmd.client, &r, principal)
        }
        AclAction::Remove(b) => remove(&cmd.client, &b),
    }
}

const OPERATIONS: [(&str, i8); 11] = [
    ("All", 2),
    ("Read", 3),
    ("Write", 4),
    ("Create", 5),
    ("Delete", 6),
    ("Alter", 7),
    ("Describe", 8),
    ("ClusterAction", 9),
    ("DescribeConfigs", 10),
    ("AlterConfigs", 11),
    ("IdempotentWrite", 12),
];

fn operation(name: &str) -> Result<i8, AdminError> {
    let squashed = name.replace(['_', '-'], "").to_lowercase();
    OPERATIONS
        .iter()
        .find(|(n, _)| n.to_lowercase() == squashed)
        .map(|(_, c)| *c)
        .ok_or_else(|| AdminError::Usage(format!("unknown operation {name:?}")))
}

fn operation_name(code: i8) -> String {
    OPERATIONS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("Unknown({code})"), |(n, _)| (*n).to_owned())
}

fn resource_type_name(code: i8) -> &'static str {
    match code {
        2 => "Topic",
        3 => "Group",
        4 => "Cluster",
        5 => "TransactionalId",
        _ => "Unknown",
    }
}

/// (resource type, name, pattern type); `None` for `list` without a resource.
fn resource(r: &Resource) -> Result<Option<(i8, String, i8)>, AdminError> {
    let pattern = match r.resource_pattern_type.to_lowercase().as_str() {
        "literal" => 3,
        "prefixed" => 4,
        other => {
            return Err(AdminError::Usage(format!(
                "--resource-pattern-type must be literal or prefixed, got {other:?}"
            )))
        }
    };
    let mut found = Vec::new();
    if let Some(t) = &r.topic {
        found.push((2, t.clone()));
    }
    if let Some(g) = &r.group {
        found.push((3, g.clone()));
    }
    if let Some(x) = &r.transactional_id {
        found.push((5, x.clone()));
    }
    if r.cluster {
        found.push((4, "kafka-cluster".to_owned()));
    }
    match found.len() {
        0 => Ok(None),
        1 => {
            let (t, n) = found.remove(0);
            Ok(Some((t, n, pattern)))
        }
        _ => Err(AdminError::Usage(
            "name one resource: --topic, --group, --transactional-id or --cluster".into(),
        )),
    }
}

/// Every (principal, permission, operation) the flags name, on one resource.
fn bindings(b: &Binding) -> Result<Vec<AclCreation>, AdminError> {
    let (rt, name, pattern) = resource(&b.resource)?.ok_or_else(|| {
        AdminError::Usage(
            "name a resource: --topic, --group, --transactional-id or --cluster".into(),
        )
    })?;
    if b.allow.is_empty() && b.deny.is_empty() {
        return Err(AdminError::Usage(
            "give --allow-principal or --deny-principal".into(),
        ));
    }
    let who = b
        .allow
        .iter()
        .map(|p| (p, 3i8))
        .chain(b.deny.iter().map(|p| (p, 2i8)));
    let mut out = Vec::new();
    for (principal, permission) in who {
        for op in &b.operations {
            out.push(
                AclCreation::default()
                    .with_resource_type(rt)
                    .with_resource_name(sb(name.as_str()))
                    .with_resource_pattern_type(pattern)
                    .with_principal(sb(principal.as_str()))
                    .with_host(sb(b.host.as_str()))
                    .with_operation(operation(op)?)
                    .with_permission_type(permission),
            );
        }
    }
    Ok(out)
}

fn add(c: &ClientArgs, b: &Binding) -> Result<(), AdminError> {
    let creations = bindings(b)?;
    let n = creations.len();
    let mut s = c.session()?;
    let resp: CreateAclsResponse = s.bootstrap().call(
        ApiKey::CreateAcls,
        versions::CREATE_ACLS,
        &CreateAclsRequest::default().with_creations(creations),
    )?;
    for r in &resp.results {
        AdminError::check(r.error_code, r.error_message.as_deref(), "CreateAcls")?;
    }
    println!("{n} ACL binding(s) added");
    Ok(())
}

fn remove(c: &ClientArgs, b: &Binding) -> Result<(), AdminError> {
    let filters: Vec<DeleteAclsFilter> = bindings(b)?
        .into_iter()
        .map(|a| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(a.resource_type)
                .with_resource_name_filter(Some(a.resource_name))
                .with_pattern_type_filter(a.resource_pattern_type)
                .with_principal_filter(Some(a.principal))
                .with_host_filter(Some(a.host))
                .with_operation(a.operation)
                .with_permission_type(a.permission_type)
        })
        .collect();
    let mut s = c.session()?;
    let resp: DeleteAclsResponse = s.bootstrap().call(
        ApiKey::DeleteAcls,
        versions::DELETE_ACLS,
        &DeleteAclsRequest::default().with_filters(filters),
    )?;
    let mut removed = 0;
    for r in &resp.filter_results {
        AdminError::check(r.error_code, r.error_message.as_deref(), "DeleteAcls")?;
        removed += r.matching_acls.len();
    }
    println!("{removed} ACL binding(s) removed");
    Ok(())
}

#[derive(Serialize)]
struct Listed {
    resource_type: String,
    name: String,
    pattern: String,
    principal: String,
    host: String,
    operation: String,
    permission: String,
}

fn list(c: &ClientArgs, r: &Resource, principal: Option<String>) -> Result<(), AdminError> {
    let (rt, name, pattern) = match resource(r)? {
        Some((t, n, _)) => (t, Some(n), 2), // MATCH: the bindings that apply to it
        None => (1, None, 1),               // ANY
    };
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(rt)
        .with_resource_name_filter(name.map(sb))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(principal.map(sb))
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1);
    let mut s = c.session()?;
    let resp: DescribeAclsResponse =
        s.bootstrap()
            .call(ApiKey::DescribeAcls, versions::DESCRIBE_ACLS, &req)?;
    AdminError::check(
        resp.error_code,
        resp.error_message.as_deref(),
        "DescribeAcls",
    )?;
    let mut out = Vec::new();
    for res in &resp.resources {
        for a in &res.acls {
            out.push(Listed {
                resource_type: resource_type_name(res.resource_type).to_owned(),
                name: res.resource_name.to_string(),
                pattern: if res.pattern_type == 4 {
                    "PREFIXED"
                } else {
                    "LITERAL"
                }
                .to_owned(),
                principal: a.principal.to_string(),
                host: a.host.to_string(),
                operation: operation_name(a.operation),
                permission: if a.permission_type == 2 {
                    "DENY"
                } else {
                    "ALLOW"
                }
                .to_owned(),
            });
        }
    }
    emit(c.format, &out, || {
        let mut t = Table::new(&[
            "RESOURCE",
            "NAME",
            "PATTERN",
            "PRINCIPAL",
            "HOST",
            "OPERATION",
            "PERMISSION",
        ]);
        for x in &out {
            t.row(vec![
                x.resource_type.clone(),
                x.name.clone(),
                x.pattern.clone(),
                x.principal.clone(),
                x.host.clone(),
                x.operation.clone(),
                x.permission.clone(),
            ]);
        }
        t.render()
    })
}
