//! The admin CLI: `sluice topic|group|cluster|txn|user|acl|quota|produce|consume ...`, subcommands of the broker
//! binary that speak the Kafka protocol to `--bootstrap HOST:PORT`, so they work against any
//! Kafka-compatible broker, not only Sluice.
//!
//! Owns: argument parsing of the subcommands, a small blocking Kafka client ([`client`]) and the
//! rendering of results as tables or JSON ([`output`]).
//!
//! Must not touch: broker internals (shards, storage, coordinator state). Everything goes over
//! the wire, exactly as a third-party tool would.
//!
//! Invariants: every network wait is bounded by `--timeout-ms`; bytes from the broker are decoded
//! with fallible decoders (never `unwrap`); exit code 0 on success, 1 for Kafka, broker and
//! network errors, 2 for usage errors.

pub mod acl;
pub mod client;
pub mod cluster;
pub mod consume;
pub mod features;
pub mod group;
pub mod output;
pub mod produce;
pub mod quota;
pub mod topic;
pub mod txn;
pub mod user;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use sluice_net::scram::Mechanism;

use self::client::Session;

/// Default bootstrap address of every subcommand.
pub const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9092";

/// Output format of a subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// JSON (one document; `consume` prints one object per line).
    Json,
}

/// Connection and output flags shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Broker to bootstrap from (HOST:PORT).
    #[arg(long, env = "SLUICE_BOOTSTRAP", default_value = BOOTSTRAP_DEFAULT, global = true)]
    pub bootstrap: String,
    /// Upper bound of every network wait (connect, request, response), in milliseconds.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub timeout_ms: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub format: Format,
    /// Authenticate with SASL as this user (for a SASL_PLAINTEXT listener).
    #[arg(long, env = "SLUICE_SASL_USERNAME", global = true)]
    pub sasl_username: Option<String>,
    /// The SASL password.
    #[arg(
        long,
        env = "SLUICE_SASL_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,
    /// The SASL mechanism (Kafka's `sasl.mechanism`): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(
        long,
        env = "SLUICE_SASL_MECHANISM",
        default_value = "PLAIN",
        global = true
    )]
    pub sasl_mechanism: String,
}

impl ClientArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// Connects to the bootstrap broker.
    pub fn session(&self) -> Result<Session, AdminError> {
        let scram = match self.sasl_mechanism.as_str() {
            "PLAIN" => None,
            name => Some(Mechanism::from_name(name).ok_or_else(|| {
                AdminError::Usage(format!(
                    "unknown --sasl-mechanism {name:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                ))
            })?),
        };
        let auth = match (&self.sasl_username, &self.sasl_password) {
            (Some(u), Some(p)) => Some(client::SaslAuth {
                scram,
                username: u.clone(),
                password: p.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(AdminError::Usage(
                    "--sasl-username and --sasl-password go together".into(),
                ))
            }
        };
        Session::connect(&self.bootstrap, self.timeout(), auth)
    }
}

/// The admin subcommands of `sluice`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe, delete and reconfigure topics.
    Topic(topic::TopicCmd),
    /// List, describe, delete consumer groups and reset their offsets.
    Group(group::GroupCmd),
    /// Cluster-wide information.
    Cluster(cluster::ClusterCmd),
    /// List and describe transactions; abort a hanging one in a partition.
    Txn(txn::TxnCmd),
    /// Create, delete and list users' SCRAM credentials.
    User(user::UserCmd),
    /// Add, list and remove ACL bindings.
    Acl(acl::AclCmd),
    /// Set, remove and describe client quotas (producer/consumer byte rates, request time).
    Quota(quota::QuotaCmd),
    /// Describe and change the cluster's finalized feature levels (transaction.version).
    Features(features::FeaturesCmd),
    /// Produce records from arguments or stdin lines (for quick tests).
    Produce(produce::ProduceCmd),
    /// Print records of a topic (for quick tests).
    Consume(consume::ConsumeCmd),
}

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad arguments or input: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The broker answered with a Kafka error code.
    #[error("{context}: {name} ({code}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        context: String,
        code: i16,
        name: String,
        message: Option<String>,
    },
    /// A topic or group the command needs does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{addr}: {reason}")]
    Io { addr: String, reason: String },
    #[error("{addr}: no response within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u128 },
    #[error("{addr}: malformed response: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("{addr} does not support {api} v{version} (serves {served})")]
    Unsupported {
        addr: String,
        api: String,
        version: i16,
        served: String,
    },
    /// A precondition the broker cannot check for us (e.g. a group must be empty).
    #[error("{0}")]
    Refused(String),
    #[error("cannot write output: {0}")]
    Output(String),
}

impl AdminError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// An error for a non-zero Kafka `code`, or `Ok` for 0.
    pub fn check(code: i16, message: Option<&str>, context: impl Into<String>) -> Result<(), Self> {
        if code == 0 {
            return Ok(());
        }
        Err(AdminError::Kafka {
            context: context.into(),
            code,
            name: error_name(code),
            message: message.filter(|m| !m.is_empty()).map(str::to_owned),
        })
    }
}

/// Kafka's name of an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: i16) -> String {
    let Some(e) = kafka_protocol::ResponseError::try_from_code(code) else {
        return "NONE".to_owned();
    };
    if let kafka_protocol::ResponseError::Unknown(c) = e {
        return format!("UNKNOWN_ERROR_CODE_{c}");
    }
    let camel = format!("{e:?}");
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// Runs one admin subcommand and maps its result to the process exit code.
pub fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Topic(c) => topic::run(c),
        Command::Group(c) => group::run(c),
        Command::Cluster(c) => cluster::run(c),
        Command::Txn(c) => txn::run(c),
        Command::User(c) => user::run(c),
        Command::Acl(c) => acl::run(c),
        Command::Quota(c) => quota::run(c),
        Command::Features(c) => features::run(c),
        Command::Produce(c) => produce::run(c),
        Command::Consume(c) => consume::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), AdminError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(AdminError::Usage(format!("expected KEY=VALUE, got {s:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
    }

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("a=b=c").ok(),
            Some(("a".to_owned(), "b=c".to_owned()))
        );
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("nokey").is_err());
    }
}
