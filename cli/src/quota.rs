//! `sluice quota alter|describe`, as Kafka's `kafka-configs.sh --entity-type users|clients`:
//! AlterClientQuotas and DescribeClientQuotas on the bootstrap broker (it forwards changes to
//! the active controller).
//!
//! An entity is a user (`--user NAME` or `--user-default`), a client id (`--client-id ID` or
//! `--client-id-default`), or both; keys are `producer_byte_rate`, `consumer_byte_rate` and
//! `request_percentage`.

use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use serde::Serialize;

use crate::client::{sb, versions};
use crate::output::{emit, Table};
use crate::{parse_key_value, AdminError, ClientArgs};

#[derive(Debug, Args)]
pub struct QuotaCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: QuotaAction,
}

/// Which entity: a user, a client id, or both; each named or the default.
#[derive(Debug, Clone, Args)]
pub struct Entity {
    #[arg(long, conflicts_with = "user_default")]
    pub user: Option<String>,
    /// The default user quota (every user without their own gets one this size).
    #[arg(long)]
    pub user_default: bool,
    #[arg(long, conflicts_with = "client_id_default")]
    pub client_id: Option<String>,
    /// The default client-id quota (every client id without its own gets one this size).
    #[arg(long)]
    pub client_id_default: bool,
}

#[derive(Debug, Subcommand)]
pub enum QuotaAction {
    /// Set (`--add-config key=value,...`) or remove (`--delete-config key,...`) quotas of one
    /// entity.
    Alter {
        #[command(flatten)]
        entity: Entity,
        #[arg(long, value_delimiter = ',')]
        add_config: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        delete_config: Vec<String>,
        /// Check the change without making it.
        #[arg(long)]
        validate_only: bool,
    },
    /// The quotas set, all or those of the entity given (exactly that entity with
    /// `--strict`).
    Describe {
        #[command(flatten)]
        entity: Entity,
        #[arg(long)]
        strict: bool,
    },
}

pub fn run(cmd: QuotaCmd) -> Result<(), AdminError> {
    match cmd.action {
        QuotaAction::Alter {
            entity,
            add_config,
            delete_config,
            validate_only,
        } => alter(
            &cmd.client,
            &entity,
            &add_config,
            &delete_config,
            validate_only,
        ),
        QuotaAction::Describe { entity, strict } => describe(&cmd.client, &entity, strict),
    }
}

/// The entity's (type, name) parts; `None` names the default.
fn parts(e: &Entity) -> Vec<(&'static str, Option<String>)> {
    let mut out = Vec::new();
    if e.user.is_some() || e.user_default {
        out.push(("user", e.user.clone()));
    }
    if e.client_id.is_some() || e.client_id_default {
        out.push(("client-id", e.client_id.clone()));
    }
    out
}

fn alter(
    c: &ClientArgs,
    e: &Entity,
    add: &[String],
    delete: &[String],
    validate_only: bool,
) -> Result<(), AdminError> {
    let entity = parts(e);
    if entity.is_empty() {
        return Err(AdminError::Usage(
            "name an entity: --user/--user-default and/or --client-id/--client-id-default".into(),
        ));
    }
    if add.is_empty() && delete.is_empty() {
        return Err(AdminError::Usage(
            "give --add-config or --delete-config".into(),
        ));
    }
    let mut ops = Vec::new();
    for kv in add {
        let (k, v) = parse_key_value(kv)?;
        let value: f64 = v
            .parse()
            .map_err(|_| AdminError::Usage(format!("{k}: {v:?} is not a number")))?;
        ops.push(OpData::default().with_key(sb(k)).with_value(value));
    }
    for k in delete {
        ops.push(OpData::default().with_key(sb(k.as_str())).with_remove(true));
    }
    let entry = EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(sb(*t))
                        .with_entity_name(n.clone().map(sb))
                })
                .collect(),
        )
        .with_ops(ops);
    let mut s = c.session()?;
    let resp: AlterClientQuotasResponse = s.bootstrap().call(
        ApiKey::AlterClientQuotas,
        versions::ALTER_CLIENT_QUOTAS,
        &AlterClientQuotasRequest::default()
            .with_entries(vec![entry])
            .with_validate_only(validate_only),
    )?;
    for r in &resp.entries {
        AdminError::check(
            r.error_code,
            r.error_message.as_deref(),
            "AlterClientQuotas",
        )?;
    }
    let what = if validate_only {
        "validated"
    } else {
        "updated"
    };
    println!("quotas of {} {what}", describe_entity(&entity));
    Ok(())
}

fn describe_entity(parts: &[(&str, Option<String>)]) -> String {
    parts
        .iter()
        .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Serialize)]
struct Listed {
    entity: String,
    key: String,
    value: f64,
}

fn describe(c: &ClientArgs, e: &Entity, strict: bool) -> Result<(), AdminError> {
    let components = parts(e)
        .into_iter()
        .map(|(t, n)| {
            ComponentData::default()
                .with_entity_type(sb(t))
                .with_match_type(if n.is_some() { 0 } else { 1 })
                .with_match(n.map(sb))
        })
        .collect();
    let mut s = c.session()?;
    let resp: DescribeClientQuotasResponse = s.bootstrap().call(
        ApiKey::DescribeClientQuotas,
        versions::DESCRIBE_CLIENT_QUOTAS,
        &DescribeClientQuotasRequest::default()
            .with_components(components)
            .with_strict(strict),
    )?;
    AdminError::check(
        resp.error_code,
        resp.error_message.as_deref(),
        "DescribeClientQuotas",
    )?;
    let mut out = Vec::new();
    for entry in resp.entries.iter().flatten() {
        let parts: Vec<(&str, Option<String>)> = entry
            .entity
            .iter()
            .map(|d| {
                (
                    d.entity_type.as_str(),
                    d.entity_name.as_ref().map(|n| n.to_string()),
                )
            })
            .collect();
        let entity = describe_entity(&parts);
        for v in &entry.values {
            out.push(Listed {
                entity: entity.clone(),
                key: v.key.to_string(),
                value: v.value,
            });
        }
    }
    emit(c.format, &out, || {
        let mut t = Table::new(&["ENTITY", "KEY", "VALUE"]);
        for x in &out {
            t.row(vec![x.entity.clone(), x.key.clone(), x.value.to_string()]);
        }
        t.render()
    })
}
