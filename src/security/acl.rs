//! Access control lists in Kafka's model (KIP-11, KIP-290's prefixed patterns), and the
//! decision Kafka's StandardAuthorizer makes. Pure: the bindings come from the metadata image.
//!
//! A binding allows or denies one principal (`User:alice`, or `User:*`) from one host (or `*`)
//! one operation (or ALL) on resources of one type whose name equals the binding's (LITERAL,
//! where `*` is every name) or starts with it (PREFIXED). For a request:
//!
//! 1. a super user (`--super-users`) is allowed;
//! 2. any matching DENY denies (deny wins);
//! 3. a matching ALLOW allows; DESCRIBE is implied by READ, WRITE, DELETE or ALTER, and
//!    DESCRIBE_CONFIGS by ALTER_CONFIGS;
//! 4. otherwise, when no binding at all names the resource, `--allow-everyone-if-no-acl-found`
//!    decides; else denied.
//!
//! The numbers are Kafka's wire values (`AclOperation`, `ResourceType`, `PatternType`,
//! `AclPermissionType`).

use serde::{Deserialize, Serialize};

/// Resource types.
pub const RESOURCE_ANY: i8 = 1;
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_GROUP: i8 = 3;
pub const RESOURCE_CLUSTER: i8 = 4;
pub const RESOURCE_TRANSACTIONAL_ID: i8 = 5;
/// The one cluster resource's name.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Pattern types.
pub const PATTERN_ANY: i8 = 1;
pub const PATTERN_MATCH: i8 = 2;
pub const PATTERN_LITERAL: i8 = 3;
pub const PATTERN_PREFIXED: i8 = 4;

/// Permission types.
pub const PERMISSION_ANY: i8 = 1;
pub const PERMISSION_DENY: i8 = 2;
pub const PERMISSION_ALLOW: i8 = 3;

/// Operations.
pub const OP_ANY: i8 = 1;
pub const OP_ALL: i8 = 2;
pub const OP_READ: i8 = 3;
pub const OP_WRITE: i8 = 4;
pub const OP_CREATE: i8 = 5;
pub const OP_DELETE: i8 = 6;
pub const OP_ALTER: i8 = 7;
pub const OP_DESCRIBE: i8 = 8;
pub const OP_CLUSTER_ACTION: i8 = 9;
pub const OP_DESCRIBE_CONFIGS: i8 = 10;
pub const OP_ALTER_CONFIGS: i8 = 11;
pub const OP_IDEMPOTENT_WRITE: i8 = 12;

/// One ACL binding, as CreateAcls carries it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// Why a binding cannot be stored (CreateAcls answers INVALID_REQUEST with this).
pub fn validate(b: &AclBinding) -> Result<(), String> {
    if !(RESOURCE_TOPIC..=RESOURCE_TRANSACTIONAL_ID).contains(&b.resource_type) {
        return Err(format!("unsupported resource type {}", b.resource_type));
    }
    if !matches!(b.pattern_type, PATTERN_LITERAL | PATTERN_PREFIXED) {
        return Err(format!(
            "pattern type must be LITERAL or PREFIXED, got {}",
            b.pattern_type
        ));
    }
    if b.resource_name.is_empty() {
        return Err("resource name must not be empty".into());
    }
    if b.resource_type == RESOURCE_CLUSTER && b.resource_name != CLUSTER_NAME {
        return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
    }
    if !b.principal.starts_with("User:") || b.principal.len() == "User:".len() {
        return Err(format!(
            "principal must be User:NAME, got {:?}",
            b.principal
        ));
    }
    if b.host.is_empty() {
        return Err("host must be an address or *".into());
    }
    if !(OP_ALL..=OP_IDEMPOTENT_WRITE).contains(&b.operation) {
        return Err(format!("unsupported operation {}", b.operation));
    }
    if !matches!(b.permission_type, PERMISSION_DENY | PERMISSION_ALLOW) {
        return Err(format!(
            "permission must be ALLOW or DENY, got {}",
            b.permission_type
        ));
    }
    Ok(())
}

/// A DescribeAcls / DeleteAcls filter: `None` (or ANY) fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclFilter {
    /// Whether `b` matches, as Kafka's `AclBindingFilter.matches`: pattern MATCH finds the
    /// bindings that would apply to the named resource (literal equal or `*`, or a prefix).
    pub fn matches(&self, b: &AclBinding) -> bool {
        let resource_ok =
            self.resource_type == RESOURCE_ANY || self.resource_type == b.resource_type;
        let name_ok = match (&self.resource_name, self.pattern_type) {
            (None, _) => true,
            (Some(n), PATTERN_MATCH) => applies(b, n),
            (Some(n), _) => *n == b.resource_name,
        };
        let pattern_ok = match self.pattern_type {
            PATTERN_ANY | PATTERN_MATCH => true,
            p => p == b.pattern_type,
        };
        resource_ok
            && name_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == OP_ANY || self.operation == b.operation)
            && (self.permission_type == PERMISSION_ANY || self.permission_type == b.permission_type)
    }
}

/// Whether binding `b`'s resource pattern covers the resource named `name` (of its type).
fn applies(b: &AclBinding, name: &str) -> bool {
    match b.pattern_type {
        PATTERN_LITERAL => b.resource_name == name || b.resource_name == "*",
        PATTERN_PREFIXED => name.starts_with(&b.resource_name),
        _ => false,
    }
}

/// How the broker decides (`--authorizer`, `--super-users`,
/// `--allow-everyone-if-no-acl-found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    pub enabled: bool,
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

/// Kafka's decision for `principal` from `host` doing `operation` on the resource
/// (`resource_type`, `name`), given every binding.
pub fn authorize<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding>,
    principal: &str,
    host: &str,
    operation: i8,
    resource_type: i8,
    name: &str,
) -> bool {
    if !config.enabled || config.super_users.iter().any(|s| s == principal) {
        return true;
    }
    let mut any_for_resource = false;
    let mut allowed = false;
    for b in acls {
        if b.resource_type != resource_type || !applies(b, name) {
            continue;
        }
        any_for_resource = true;
        let who = b.principal == principal || b.principal == "User:*";
        let from = b.host == "*" || b.host == host;
        if !who || !from {
            continue;
        }
        match b.permission_type {
            PERMISSION_DENY if b.operation == OP_ALL || b.operation == operation => return false,
            PERMISSION_ALLOW if grants(b.operation, operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any_for_resource && config.allow_if_no_acl)
}

/// Whether an ALLOW of `granted` permits `wanted` (Kafka's implied operations).
fn grants(granted: i8, wanted: i8) -> bool {
    granted == OP_ALL
        || granted == wanted
        || (wanted == OP_DESCRIBE && matches!(granted, OP_READ | OP_WRITE | OP_DELETE | OP_ALTER))
        || (wanted == OP_DESCRIBE_CONFIGS && granted == OP_ALTER_CONFIGS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(rt: i8, name: &str, pattern: i8, who: &str, op: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: who.into(),
            host: "*".into(),
            operation: op,
            permission_type: perm,
        }
    }

    fn on() -> AuthorizerConfig {
        AuthorizerConfig {
            enabled: true,
            super_users: vec!["User:admin".into()],
            allow_if_no_acl: false,
        }
    }

    #[test]
    fn deny_wins_super_users_pass_and_implied_describe() {
        let acls = vec![
            b(
                RESOURCE_TOPIC,
                "orders",
                PATTERN_LITERAL,
                "User:alice",
                OP_READ,
                PERMISSION_ALLOW,
            ),
            b(
                RESOURCE_TOPIC,
                "ord",
                PATTERN_PREFIXED,
                "User:*",
                OP_WRITE,
                PERMISSION_ALLOW,
            ),
            b(
                RESOURCE_TOPIC,
                "orders",
                PATTERN_LITERAL,
                "User:mallory",
                OP_ALL,
                PERMISSION_DENY,
            ),
        ];
        let can = |who: &str, op: i8, topic: &str| {
            authorize(&on(), &acls, who, "127.0.0.1", op, RESOURCE_TOPIC, topic)
        };
        assert!(can("User:alice", OP_READ, "orders"));
        assert!(
            can("User:alice", OP_DESCRIBE, "orders"),
            "READ implies DESCRIBE"
        );
        assert!(!can("User:alice", OP_DELETE, "orders"));
        assert!(can("User:bob", OP_WRITE, "orders-eu"), "prefixed, any user");
        assert!(!can("User:bob", OP_READ, "orders"));
        assert!(
            !can("User:mallory", OP_WRITE, "orders"),
            "deny wins over the prefixed allow"
        );
        assert!(can("User:mallory", OP_WRITE, "ordinary"));
        assert!(can("User:admin", OP_DELETE, "orders"), "super user");
        assert!(
            !can("User:alice", OP_READ, "payments"),
            "no ACL, not allowed by default"
        );
        let open = AuthorizerConfig {
            allow_if_no_acl: true,
            ..on()
        };
        assert!(authorize(
            &open,
            &acls,
            "User:x",
            "h",
            OP_READ,
            RESOURCE_TOPIC,
            "payments"
        ));
        assert!(
            !authorize(
                &open,
                &acls,
                "User:x",
                "h",
                OP_READ,
                RESOURCE_TOPIC,
                "orders"
            ),
            "orders has ACLs, none for x"
        );
        assert!(authorize(
            &AuthorizerConfig::default(),
            &acls,
            "User:mallory",
            "h",
            OP_ALL,
            RESOURCE_TOPIC,
            "orders"
        ));
    }

    #[test]
    fn hosts_and_filters_match_as_kafka_does() {
        let mut only_local = b(
            RESOURCE_GROUP,
            "g",
            PATTERN_LITERAL,
            "User:alice",
            OP_READ,
            PERMISSION_ALLOW,
        );
        only_local.host = "127.0.0.1".into();
        let acls = [only_local.clone()];
        assert!(authorize(
            &on(),
            &acls,
            "User:alice",
            "127.0.0.1",
            OP_READ,
            RESOURCE_GROUP,
            "g"
        ));
        assert!(!authorize(
            &on(),
            &acls,
            "User:alice",
            "10.0.0.1",
            OP_READ,
            RESOURCE_GROUP,
            "g"
        ));
        let all = AclFilter {
            resource_type: RESOURCE_ANY,
            pattern_type: PATTERN_ANY,
            operation: OP_ANY,
            permission_type: PERMISSION_ANY,
            ..Default::default()
        };
        assert!(all.matches(&only_local));
        let by_match = AclFilter {
            resource_name: Some("g".into()),
            pattern_type: PATTERN_MATCH,
            ..all.clone()
        };
        assert!(by_match.matches(&only_local));
        let other = AclFilter {
            principal: Some("User:bob".into()),
            ..all
        };
        assert!(!other.matches(&only_local));
    }

    #[test]
    fn invalid_bindings_are_refused() {
        let good = b(
            RESOURCE_TOPIC,
            "t",
            PATTERN_LITERAL,
            "User:a",
            OP_READ,
            PERMISSION_ALLOW,
        );
        assert!(validate(&good).is_ok());
        for bad in [
            AclBinding {
                resource_type: 9,
                ..good.clone()
            },
            AclBinding {
                pattern_type: PATTERN_MATCH,
                ..good.clone()
            },
            AclBinding {
                resource_name: String::new(),
                ..good.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            AclBinding {
                operation: OP_ANY,
                ..good.clone()
            },
            AclBinding {
                permission_type: PERMISSION_ANY,
                ..good.clone()
            },
            AclBinding {
                resource_type: RESOURCE_CLUSTER,
                resource_name: "x".into(),
                ..good.clone()
            },
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
    }
}
