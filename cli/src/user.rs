//! `sluice user create|delete|list`, as Kafka's `kafka-configs.sh --entity-type users
//! --alter --add-config 'SCRAM-SHA-256=[password=…]'`: SCRAM credentials through
//! AlterUserScramCredentials and DescribeUserScramCredentials (KIP-554). The password is
//! salted and stretched (PBKDF2) here; the broker receives only the salted password.

use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use serde::Serialize;
use sluice_net::scram::{random_bytes, Mechanism, SALT_BYTES};

use crate::client::{sb, versions};
use crate::output::{emit, Table};
use crate::{AdminError, ClientArgs};

#[derive(Debug, Args)]
pub struct UserCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: UserAction,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a user's SCRAM credential, or replace its password.
    Create {
        name: String,
        /// The password; read from the SLUICE_USER_PASSWORD environment variable if absent.
        #[arg(long, env = "SLUICE_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512 (repeatable; default both).
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations, 4096 to 16384.
        #[arg(long, default_value_t = 4096)]
        iterations: i32,
    },
    /// Delete a user's SCRAM credentials (default: every mechanism it has).
    Delete {
        name: String,
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
    },
    /// Users with SCRAM credentials, and their mechanisms and iterations.
    List,
}

pub fn run(cmd: UserCmd) -> Result<(), AdminError> {
    match cmd.action {
        UserAction::Create {
            name,
            password,
            mechanisms,
            iterations,
        } => create(&cmd.client, &name, &password, &mechanisms, iterations),
        UserAction::Delete { name, mechanisms } => delete(&cmd.client, &name, &mechanisms),
        UserAction::List => list(&cmd.client),
    }
}

fn mechanism(name: &str) -> Result<Mechanism, AdminError> {
    Mechanism::from_name(name).ok_or_else(|| {
        AdminError::Usage(format!(
            "unknown mechanism {name:?} (SCRAM-SHA-256, SCRAM-SHA-512)"
        ))
    })
}

/// The name of Kafka's mechanism number `m`.
fn mechanism_name(m: i8) -> String {
    Mechanism::from_kafka_type(m).map_or_else(|| format!("UNKNOWN({m})"), |m| m.name().into())
}

fn mechanisms_or_both(given: &[String]) -> Result<Vec<Mechanism>, AdminError> {
    if given.is_empty() {
        return Ok(Mechanism::ALL.to_vec());
    }
    given.iter().map(|m| mechanism(m)).collect()
}

fn create(
    c: &ClientArgs,
    name: &str,
    password: &str,
    mechanisms: &[String],
    iterations: i32,
) -> Result<(), AdminError> {
    if password.is_empty() {
        return Err(AdminError::Usage("the password must not be empty".into()));
    }
    let mut upsertions = Vec::new();
    for m in mechanisms_or_both(mechanisms)? {
        let salt = random_bytes(SALT_BYTES)
            .map_err(|e| AdminError::Refused(format!("no randomness for a salt: {e}")))?;
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        upsertions.push(
            ScramCredentialUpsertion::default()
                .with_name(sb(name))
                .with_mechanism(m.kafka_type())
                .with_iterations(iterations)
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::from(salted)),
        );
    }
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(upsertions);
    alter(c, &req, name)?;
    println!("user {name}: credentials set");
    Ok(())
}

fn delete(c: &ClientArgs, name: &str, mechanisms: &[String]) -> Result<(), AdminError> {
    let ms = if mechanisms.is_empty() {
        // Every mechanism the user has.
        let described = describe(c, Some(name))?;
        described
            .into_iter()
            .flat_map(|u| u.mechanisms)
            .map(|(m, _)| mechanism(&m))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        mechanisms_or_both(mechanisms)?
    };
    let req = AlterUserScramCredentialsRequest::default().with_deletions(
        ms.into_iter()
            .map(|m| {
                ScramCredentialDeletion::default()
                    .with_name(sb(name))
                    .with_mechanism(m.kafka_type())
            })
            .collect(),
    );
    alter(c, &req, name)?;
    println!("user {name}: credentials deleted");
    Ok(())
}

fn alter(
    c: &ClientArgs,
    req: &AlterUserScramCredentialsRequest,
    name: &str,
) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let resp: AlterUserScramCredentialsResponse = s.controller()?.call(
        ApiKey::AlterUserScramCredentials,
        versions::ALTER_USER_SCRAM_CREDENTIALS,
        req,
    )?;
    for r in &resp.results {
        AdminError::check(
            r.error_code,
            r.error_message.as_deref(),
            format!("user {name}"),
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Described {
    user: String,
    /// (mechanism, iterations)
    mechanisms: Vec<(String, i32)>,
}

fn describe(c: &ClientArgs, name: Option<&str>) -> Result<Vec<Described>, AdminError> {
    let mut s = c.session()?;
    let req = DescribeUserScramCredentialsRequest::default()
        .with_users(name.map(|n| vec![UserName::default().with_name(sb(n))]));
    let resp: DescribeUserScramCredentialsResponse = s.bootstrap().call(
        ApiKey::DescribeUserScramCredentials,
        versions::DESCRIBE_USER_SCRAM_CREDENTIALS,
        &req,
    )?;
    AdminError::check(
        resp.error_code,
        resp.error_message.as_deref(),
        "DescribeUserScramCredentials",
    )?;
    let mut out = Vec::new();
    for r in resp.results {
        AdminError::check(
            r.error_code,
            r.error_message.as_deref(),
            format!("user {}", r.user.as_str()),
        )?;
        out.push(Described {
            user: r.user.to_string(),
            mechanisms: r
                .credential_infos
                .iter()
                .map(|i| (mechanism_name(i.mechanism), i.iterations))
                .collect(),
        });
    }
    out.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(out)
}

fn list(c: &ClientArgs) -> Result<(), AdminError> {
    let out = describe(c, None)?;
    emit(c.format, &out, || {
        let mut t = Table::new(&["USER", "MECHANISM", "ITERATIONS"]);
        for u in &out {
            for (m, i) in &u.mechanisms {
                t.row(vec![u.user.clone(), m.clone(), i.to_string()]);
            }
        }
        t.render()
    })
}
