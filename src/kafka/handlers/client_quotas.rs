//! DescribeClientQuotas and AlterClientQuotas (KIP-546). Quotas live in the cluster metadata
//! (`MetadataRecord::ClientQuota`), changed by the active controller; see
//! [`crate::security::quota`] for what they limit and how.
//!
//! Describing needs DESCRIBE_CONFIGS on the cluster, altering ALTER_CONFIGS
//! (CLUSTER_AUTHORIZATION_FAILED otherwise). Bad filters, entities, keys or values answer
//! INVALID_REQUEST with a message, as Kafka's controller does.

use std::collections::BTreeSet;
use std::rc::Rc;

use kafka_protocol::messages::alter_client_quotas_response as alter_resp;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::controller::QuotaChange;
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_ALTER_CONFIGS, OP_DESCRIBE_CONFIGS};
use crate::security::quota::{self, EntityName, QuotaEntity, QuotaValue};
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::sb;

/// Entries one AlterClientQuotas may carry.
const ENTRIES_PER_REQUEST_MAX: usize = 10_000;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// One filter component: the entity type must be present with this name (`Some(None)`: the
/// default), or with any name (`None`).
type Component = (String, Option<Option<String>>);

fn parse_filter(req: &DescribeClientQuotasRequest) -> Result<Vec<Component>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(req.components.len());
    for c in &req.components {
        let kind = c.entity_type.as_str();
        if kind != quota::ENTITY_USER && kind != quota::ENTITY_CLIENT_ID {
            return Err(format!("unsupported entity type {kind:?}"));
        }
        if !seen.insert(kind) {
            return Err(format!("duplicate filter component entity type {kind:?}"));
        }
        let name = c._match.as_ref().map(|m| m.as_str().to_owned());
        let wanted = match (c.match_type, name) {
            (MATCH_EXACT, Some(n)) => Some(Some(n)),
            (MATCH_DEFAULT | MATCH_SPECIFIED, Some(_)) | (MATCH_EXACT, None) => {
                return Err(format!(
                    "match type {} does not go with {} match string",
                    c.match_type,
                    if c.match_type == MATCH_EXACT {
                        "a null"
                    } else {
                        "a"
                    }
                ))
            }
            (MATCH_DEFAULT, None) => Some(None),
            (MATCH_SPECIFIED, None) => None,
            (other, _) => return Err(format!("unknown match type {other}")),
        };
        out.push((kind.to_owned(), wanted));
    }
    Ok(out)
}

fn matches(entity: &QuotaEntity, filter: &[Component], strict: bool) -> bool {
    let parts = entity.components();
    let every = filter.iter().all(|(kind, wanted)| {
        parts.iter().any(|(k, name)| {
            k == kind
                && match wanted {
                    None => true,
                    Some(w) => w.as_deref() == *name,
                }
        })
    });
    every && (!strict || parts.len() == filter.len())
}

pub async fn describe(
    shard: Rc<Shard>,
    req: DescribeClientQuotasRequest,
    ctx: Ctx,
) -> ResponseKind {
    let fail = |e: ResponseError, m: String| {
        ResponseKind::DescribeClientQuotas(
            DescribeClientQuotasResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(sb(m)))
                .with_entries(None),
        )
    };
    if !ctx.may_cluster(&shard, OP_DESCRIBE_CONFIGS) {
        return fail(
            ResponseError::ClusterAuthorizationFailed,
            "not authorized to describe the cluster's configs".into(),
        );
    }
    let filter = match parse_filter(&req) {
        Ok(f) => f,
        Err(m) => return fail(ResponseError::InvalidRequest, m),
    };
    let image = shard.metadata();
    let entries = image
        .quotas
        .iter()
        .filter(|(e, _)| matches(e, &filter, req.strict))
        .map(|(e, keys)| {
            EntryData::default()
                .with_entity(
                    e.components()
                        .into_iter()
                        .map(|(kind, name)| {
                            EntityData::default()
                                .with_entity_type(sb(kind))
                                .with_entity_name(name.map(sb))
                        })
                        .collect(),
                )
                .with_values(
                    keys.iter()
                        .map(|(k, v)| ValueData::default().with_key(sb(k.clone())).with_value(v.0))
                        .collect(),
                )
        })
        .collect();
    ResponseKind::DescribeClientQuotas(
        DescribeClientQuotasResponse::default().with_entries(Some(entries)),
    )
}

/// One entry's changes, checked: the entity and its (key, value) ops.
fn parse_entry(
    e: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Result<Vec<QuotaChange>, String> {
    let entity = QuotaEntity::from_components(e.entity.iter().map(|c| {
        (
            c.entity_type.as_str(),
            c.entity_name.as_ref().map(|n| n.as_str()),
        )
    }))?;
    for name in [&entity.user, &entity.client_id].into_iter().flatten() {
        if matches!(name, EntityName::Named(n) if n.is_empty()) {
            return Err("an entity name may not be empty (null is the default)".into());
        }
    }
    let mut keys = BTreeSet::new();
    let mut out = Vec::with_capacity(e.ops.len());
    for op in &e.ops {
        let key = op.key.as_str();
        if !keys.insert(key) {
            return Err(format!("quota key {key:?} given twice"));
        }
        let value = if op.remove {
            if quota::QuotaKind::of_key(key).is_none() {
                return Err(format!("unknown or unsupported quota key {key:?}"));
            }
            None
        } else {
            quota::validate(key, op.value)?;
            Some(QuotaValue(op.value))
        };
        out.push((entity.clone(), key.to_owned(), value));
    }
    Ok(out)
}

pub async fn alter(shard: Rc<Shard>, req: AlterClientQuotasRequest, ctx: Ctx) -> ResponseKind {
    let entity_of = |e: &kafka_protocol::messages::alter_client_quotas_request::EntryData| {
        e.entity
            .iter()
            .map(|c| {
                alter_resp::EntityData::default()
                    .with_entity_type(c.entity_type.clone())
                    .with_entity_name(c.entity_name.clone())
            })
            .collect::<Vec<_>>()
    };
    let result = |e: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
                  code: Option<(ResponseError, String)>| {
        let r = alter_resp::EntryData::default().with_entity(entity_of(e));
        match code {
            None => r,
            Some((err, m)) => r
                .with_error_code(err.code())
                .with_error_message(Some(sb(m))),
        }
    };
    let answer = |entries| {
        ResponseKind::AlterClientQuotas(AlterClientQuotasResponse::default().with_entries(entries))
    };
    if !ctx.may_cluster(&shard, OP_ALTER_CONFIGS) {
        let m = "not authorized to alter the cluster's configs";
        return answer(
            req.entries
                .iter()
                .map(|e| {
                    result(
                        e,
                        Some((ResponseError::ClusterAuthorizationFailed, m.into())),
                    )
                })
                .collect(),
        );
    }
    let mut outcomes: Vec<Option<(ResponseError, String)>> = Vec::with_capacity(req.entries.len());
    let mut changes = Vec::new();
    for (i, e) in req.entries.iter().enumerate() {
        if i >= ENTRIES_PER_REQUEST_MAX {
            outcomes.push(Some((
                ResponseError::InvalidRequest,
                "too many entries in one request".into(),
            )));
            continue;
        }
        match parse_entry(e) {
            Ok(c) => {
                changes.extend(c);
                outcomes.push(None);
            }
            Err(m) => outcomes.push(Some((ResponseError::InvalidRequest, m))),
        }
    }
    if !req.validate_only && !changes.is_empty() {
        let committed = on_controller(&shard, ControllerOp::AlterClientQuotas(changes))
            .await
            .and_then(ControllerReply::done);
        if let Err(e) = committed {
            for o in outcomes.iter_mut().filter(|o| o.is_none()) {
                *o = Some((e.error, e.message.clone()));
            }
        }
    }
    answer(
        req.entries
            .iter()
            .zip(outcomes)
            .map(|(e, o)| result(e, o))
            .collect(),
    )
}
