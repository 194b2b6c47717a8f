//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554). Credentials live in
//! the cluster metadata as salt and derived keys; the client sends a salted password (the
//! PBKDF2 runs on the client), never the password itself. Changes run on the active
//! controller ([`crate::shard::controller::alter_scram`]).
//!
//! Per user, Kafka's codes: UNSUPPORTED_SASL_MECHANISM (unknown mechanism),
//! UNACCEPTABLE_CREDENTIAL (empty name or salt, iterations outside 4096..=16384),
//! DUPLICATE_RESOURCE (a user and mechanism named twice), RESOURCE_NOT_FOUND (deleting a
//! credential that does not exist; describing a user without credentials).

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::controller::ScramChange;
use crate::kafka::dispatch::Ctx;
use crate::security::acl::{OP_ALTER, OP_DESCRIBE};
use crate::security::scram::{Mechanism, ScramCredential, ITERATIONS_MAX, ITERATIONS_MIN};
use crate::shard::controller::{on_controller, ControllerOp, ControllerReply};
use crate::shard::Shard;
use crate::util::sb;

/// Users one request may name (bounds the response).
const USERS_PER_REQUEST_MAX: usize = 10_000;

pub async fn describe(
    shard: Rc<Shard>,
    req: DescribeUserScramCredentialsRequest,
    ctx: Ctx,
) -> ResponseKind {
    // ACLs: DESCRIBE on the cluster.
    if !ctx.may_cluster(&shard, OP_DESCRIBE) {
        return ResponseKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let image = shard.metadata();
    let result = |user: &str| {
        let r = DescribeUserScramCredentialsResult::default().with_user(sb(user));
        match image.scram.get(user) {
            Some(creds) => r.with_credential_infos(
                creds
                    .iter()
                    .map(|(m, c)| {
                        CredentialInfo::default()
                            .with_mechanism(m.kafka_type())
                            .with_iterations(c.iterations)
                    })
                    .collect(),
            ),
            None => r
                .with_error_code(ResponseError::ResourceNotFound.code())
                .with_error_message(Some(sb(format!(
                    "attempt to describe a user credential that does not exist: {user}"
                )))),
        }
    };
    let results = match &req.users {
        // Null or empty: every user with a credential.
        None => image.scram.keys().map(|u| result(u)).collect(),
        Some(users) if users.is_empty() => image.scram.keys().map(|u| result(u)).collect(),
        Some(users) => {
            let mut seen = BTreeMap::new();
            for u in users.iter().take(USERS_PER_REQUEST_MAX) {
                *seen.entry(u.name.as_str().to_owned()).or_insert(0) += 1;
            }
            seen.into_iter()
                .map(|(u, n)| {
                    if n > 1 {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(sb(u.as_str()))
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(sb(format!(
                                "cannot describe the same user twice: {u}"
                            ))))
                    } else {
                        result(&u)
                    }
                })
                .collect()
        }
    };
    ResponseKind::DescribeUserScramCredentials(
        DescribeUserScramCredentialsResponse::default().with_results(results),
    )
}

pub async fn alter(
    shard: Rc<Shard>,
    req: AlterUserScramCredentialsRequest,
    ctx: Ctx,
) -> ResponseKind {
    // ACLs: ALTER on the cluster, for every user named.
    if !ctx.may_cluster(&shard, OP_ALTER) {
        let mut users: Vec<&str> = req
            .deletions
            .iter()
            .map(|d| d.name.as_str())
            .chain(req.upsertions.iter().map(|u| u.name.as_str()))
            .collect();
        users.sort_unstable();
        users.dedup();
        return ResponseKind::AlterUserScramCredentials(
            AlterUserScramCredentialsResponse::default().with_results(
                users
                    .into_iter()
                    .take(USERS_PER_REQUEST_MAX)
                    .map(|u| outcome(u, ResponseError::ClusterAuthorizationFailed.code(), None))
                    .collect(),
            ),
        );
    }
    // Per user: its changes, or the first reason to refuse them all.
    let mut users: BTreeMap<String, Result<Vec<ScramChange>, (ResponseError, String)>> =
        BTreeMap::new();
    let mut named: BTreeMap<(String, i8), usize> = BTreeMap::new();
    let deletions = req
        .deletions
        .iter()
        .map(|d| (d.name.as_str(), d.mechanism, None));
    let upsertions = req
        .upsertions
        .iter()
        .map(|u| (u.name.as_str(), u.mechanism, Some(u)));
    for (name, mechanism, upsert) in deletions.chain(upsertions).take(USERS_PER_REQUEST_MAX) {
        *named.entry((name.to_owned(), mechanism)).or_insert(0) += 1;
        let change = check(name, mechanism, upsert);
        let entry = users.entry(name.to_owned()).or_insert(Ok(Vec::new()));
        match (entry.as_mut(), change) {
            (Ok(list), Ok(c)) => list.push(c),
            (Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    }
    for ((name, _), n) in named {
        if n > 1 {
            users.insert(
                name.clone(),
                Err((
                    ResponseError::DuplicateResource,
                    format!("a user credential cannot be altered twice in one request: {name}"),
                )),
            );
        }
    }
    let mut results: Vec<AlterUserScramCredentialsResult> = Vec::new();
    let mut valid: Vec<(String, Vec<ScramChange>)> = Vec::new();
    for (user, r) in users {
        match r {
            Ok(changes) => valid.push((user, changes)),
            Err((e, msg)) => results.push(outcome(&user, e.code(), Some(msg))),
        }
    }
    if !valid.is_empty() {
        let names: Vec<String> = valid.iter().map(|(u, _)| u.clone()).collect();
        match on_controller(&shard, ControllerOp::AlterScram(valid))
            .await
            .and_then(ControllerReply::scram)
        {
            Ok(outcomes) => {
                for (user, code, msg) in outcomes {
                    results.push(outcome(&user, code, msg));
                }
            }
            Err(e) => {
                for user in names {
                    results.push(outcome(&user, e.error.code(), Some(e.message.clone())));
                }
            }
        }
    }
    ResponseKind::AlterUserScramCredentials(
        AlterUserScramCredentialsResponse::default().with_results(results),
    )
}

fn outcome(user: &str, code: i16, message: Option<String>) -> AlterUserScramCredentialsResult {
    AlterUserScramCredentialsResult::default()
        .with_user(sb(user))
        .with_error_code(code)
        .with_error_message(message.map(sb))
}

/// One deletion (`upsert: None`) or upsertion, checked as Kafka checks it.
fn check(
    name: &str,
    mechanism: i8,
    upsert: Option<
        &kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion,
    >,
) -> Result<ScramChange, (ResponseError, String)> {
    let unacceptable = |why: String| (ResponseError::UnacceptableCredential, why);
    if name.is_empty() {
        return Err(unacceptable("username must not be empty".into()));
    }
    let mechanism = Mechanism::from_kafka_type(mechanism).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        format!("unknown SCRAM mechanism {mechanism}"),
    ))?;
    let Some(u) = upsert else {
        return Ok(ScramChange::Delete { mechanism });
    };
    if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&u.iterations) {
        return Err(unacceptable(format!(
            "iterations must be between {ITERATIONS_MIN} and {ITERATIONS_MAX}, got {}",
            u.iterations
        )));
    }
    if u.salt.is_empty() || u.salted_password.is_empty() {
        return Err(unacceptable(
            "salt and salted password must not be empty".into(),
        ));
    }
    Ok(ScramChange::Upsert {
        mechanism,
        credential: ScramCredential::from_salted_password(
            mechanism,
            &u.salted_password,
            u.salt.to_vec(),
            u.iterations,
        ),
    })
}
