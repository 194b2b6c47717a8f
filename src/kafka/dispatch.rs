//! Request dispatch: decode a frame, route it by API key to its handler, encode the answer.
//!
//! Two stages, as in Redpanda: `dispatch` runs in the connection's read order and may start
//! work that must keep that order (Produce appends); the future it returns finishes the request
//! and yields the response frame (or none, for acks=0 Produce).

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use kafka_protocol::messages::ApiKey;
use sluice_net::{
    decode_request, encode_response, DecodeError, Request, RequestKind, ResponseFrame, ResponseKind,
};
use tracing::{debug, error};

use crate::kafka::handlers;
use crate::security::quota::{self, Applied, QuotaKind};
use crate::security::sasl::Session;
use crate::shard::Shard;

/// What the connection does with a request.
pub enum Dispatched {
    /// Await this (in order) and write its frame, if any.
    Respond(LocalBoxFuture<'static, Option<ResponseFrame>>),
    /// Close the connection; the reason is logged.
    Close(String),
}

/// A request's header facts: what its response is encoded with, its client id, and the
/// listener it came in on.
#[derive(Debug)]
pub struct Ctx {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The listener's name (Metadata answers with that listener's addresses).
    pub listener: &'static str,
    /// Who sent it (`User:NAME`, `User:ANONYMOUS`) and from which address, for the ACLs.
    pub principal: Rc<str>,
    pub host: Rc<str>,
    /// The request's size on the wire (a produce quota counts it).
    pub request_bytes: usize,
    /// Until when the connection reads nothing more: a client over its quota waits.
    pub mute: Mute,
    /// The request_percentage quota this request counts against, if any.
    pub request_clock: Option<RequestClock>,
}

/// A request_percentage quota's clock for one request: Kafka counts the time spent handling
/// a request against the quota and answers the resulting throttle in its response.
#[derive(Debug, Clone)]
pub struct RequestClock {
    applied: Rc<Applied>,
    /// Handling time not counted yet (the time spent polling the request's futures).
    busy: Rc<Cell<Duration>>,
    mute: Mute,
}

impl RequestClock {
    /// Counts the handling time not counted yet and answers the throttle in milliseconds for
    /// the response's `throttle_time_ms` (0: none); over the quota the connection is muted.
    pub fn throttle(&self, shard: &Shard) -> i32 {
        let spent = self.busy.replace(Duration::ZERO);
        let wait = shard.shared.quotas.record(
            QuotaKind::Request,
            &self.applied,
            quota::percent_of_thread(spent),
            crate::runtime::now(),
        );
        mute_for(&self.mute, shard, wait)
    }
}

/// When a throttled connection reads its next request (`None`: not throttled).
pub type Mute = Rc<Cell<Option<Instant>>>;

/// What a connection keeps between its requests.
pub struct Conn {
    /// The listener's name.
    pub listener: &'static str,
    pub session: Session,
    /// The peer's IP address.
    pub host: Rc<str>,
    /// Set when a response throttles the client (see [`Ctx::throttle`]).
    pub mute: Mute,
}

impl Ctx {
    /// Whether the ACLs let this request's principal do `operation` on the resource
    /// (`resource_type`, `name`); a denial is counted. Always true without `--authorizer`.
    pub fn may(&self, shard: &Shard, operation: i8, resource_type: i8, name: &str) -> bool {
        let ok = self.allowed(shard, operation, resource_type, name);
        if !ok {
            crate::metrics::ShardMetrics::add(&shard.metrics.authorization_denials, 1);
            tracing::debug!(principal = %self.principal, operation, resource_type, name, "denied by ACLs");
        }
        ok
    }

    /// The same decision as [`Ctx::may`], not counted as a denial: for a question with
    /// alternatives (CREATE on the cluster, else on the topic), where only the last answer is
    /// the request's.
    pub fn allowed(&self, shard: &Shard, operation: i8, resource_type: i8, name: &str) -> bool {
        let config = &shard.config.authorizer;
        !config.enabled
            || crate::security::acl::authorize(
                config,
                &shard.metadata().acls,
                &self.principal,
                &self.host,
                operation,
                resource_type,
                name,
            )
    }

    /// The client quota of `kind` this request counts against, if any is set
    /// (`crate::security::quota::resolve`; the user is the principal's name).
    pub fn quota(&self, shard: &Shard, kind: QuotaKind) -> Option<Applied> {
        let image = shard.metadata();
        if image.quotas.is_empty() {
            return None;
        }
        quota_for(
            &image.quotas,
            &self.principal,
            self.client_id.as_deref(),
            kind,
        )
    }

    /// Counts `value` against `applied` and throttles the client if that takes it over its
    /// quota; answers the throttle in milliseconds for the response (0: none).
    pub fn record_quota(
        &self,
        shard: &Shard,
        kind: QuotaKind,
        applied: &Applied,
        value: f64,
    ) -> i32 {
        let wait = shard
            .shared
            .quotas
            .record(kind, applied, value, crate::runtime::now());
        self.throttle(shard, wait)
    }

    /// Mutes the connection for `wait` (from now; a longer mute already set stays) and
    /// answers it in milliseconds for the response's `throttle_time_ms`.
    pub fn throttle(&self, shard: &Shard, wait: Duration) -> i32 {
        mute_for(&self.mute, shard, wait)
    }

    /// [`Ctx::may`] on the cluster resource.
    pub fn may_cluster(&self, shard: &Shard, operation: i8) -> bool {
        use crate::security::acl::{CLUSTER_NAME, RESOURCE_CLUSTER};
        self.may(shard, operation, RESOURCE_CLUSTER, CLUSTER_NAME)
    }
}

fn quota_for(
    quotas: &quota::Quotas,
    principal: &str,
    client_id: Option<&str>,
    kind: QuotaKind,
) -> Option<Applied> {
    let user = principal.strip_prefix("User:").unwrap_or(principal);
    quota::resolve(quotas, user, client_id.unwrap_or(""), kind)
}

fn mute_for(mute: &Mute, shard: &Shard, wait: Duration) -> i32 {
    if wait.is_zero() {
        return 0;
    }
    let until = crate::runtime::now() + wait;
    if mute.get().is_none_or(|t| t < until) {
        mute.set(Some(until));
    }
    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
    crate::metrics::ShardMetrics::add(&shard.metrics.quota_throttles, 1);
    crate::metrics::ShardMetrics::add(&shard.metrics.quota_throttle_ms, ms as u64);
    ms
}

/// `fut`, adding the time spent polling it to `busy` (what a request_percentage quota counts).
fn timed<F: Future>(fut: F, busy: Rc<Cell<Duration>>) -> impl Future<Output = F::Output> {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(move |cx| {
        let t = Instant::now();
        let r = fut.as_mut().poll(cx);
        busy.set(busy.get() + t.elapsed());
        r
    })
}

/// What a response is encoded with (the request's API, version and correlation id).
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
}

impl Ctx {
    pub fn reply_to(&self) -> ReplyTo {
        ReplyTo {
            api_key: self.api_key,
            version: self.version,
            correlation_id: self.correlation_id,
        }
    }
}

/// Encodes a response. An encoding failure is a bug: it is logged and yields an empty frame,
/// which the connection's writer takes as "close" (a client must not wait forever for it).
pub fn encode(to: ReplyTo, body: ResponseKind) -> Option<ResponseFrame> {
    match encode_response(to.api_key, to.version, to.correlation_id, &body) {
        Ok(frame) => Some(frame),
        Err(e) => {
            error!(error = %e, "response encoding failed; closing connection");
            Some(Vec::new())
        }
    }
}

/// The second stage of an answering handler: its body, with the request_percentage
/// throttle (if the request counts against one) in `throttle_time_ms`, encoded.
fn respond<F>(shard: &Rc<Shard>, to: ReplyTo, clock: Option<RequestClock>, fut: F) -> Dispatched
where
    F: Future<Output = ResponseKind> + 'static,
{
    let clock = clock.map(|c| (shard.clone(), c));
    Dispatched::Respond(Box::pin(async move {
        let mut body = fut.await;
        if let Some((shard, clock)) = clock {
            set_throttle_time(&mut body, clock.throttle(&shard));
        }
        encode(to, body)
    }))
}

/// Raises a response's `throttle_time_ms` to `ms` (responses without one stay as they are).
fn set_throttle_time(body: &mut ResponseKind, ms: i32) {
    macro_rules! throttled {
        ($($kind:ident),* $(,)?) => {
            match body {
                $(ResponseKind::$kind(r) => r.throttle_time_ms = r.throttle_time_ms.max(ms),)*
                _ => {}
            }
        };
    }
    if ms > 0 {
        throttled!(
            Produce,
            Fetch,
            ListOffsets,
            Metadata,
            OffsetCommit,
            OffsetFetch,
            FindCoordinator,
            JoinGroup,
            Heartbeat,
            LeaveGroup,
            SyncGroup,
            DescribeGroups,
            ListGroups,
            ApiVersions,
            CreateTopics,
            DeleteTopics,
            DeleteRecords,
            InitProducerId,
            OffsetForLeaderEpoch,
            AddPartitionsToTxn,
            AddOffsetsToTxn,
            EndTxn,
            TxnOffsetCommit,
            DescribeAcls,
            CreateAcls,
            DeleteAcls,
            DescribeConfigs,
            AlterConfigs,
            DescribeLogDirs,
            CreatePartitions,
            DeleteGroups,
            ElectLeaders,
            IncrementalAlterConfigs,
            AlterPartitionReassignments,
            ListPartitionReassignments,
            OffsetDelete,
            DescribeClientQuotas,
            AlterClientQuotas,
            DescribeUserScramCredentials,
            AlterUserScramCredentials,
            DescribeCluster,
            DescribeProducers,
            DescribeTransactions,
            ListTransactions,
            DescribeTopicPartitions,
            ConsumerGroupHeartbeat,
            ConsumerGroupDescribe,
            UpdateFeatures,
            GetTelemetrySubscriptions,
            PushTelemetry,
        );
    }
}

/// Requests a request_percentage quota does not count, as in Kafka: a follower's fetch and
/// the other brokers' cluster actions.
fn exempt_from_request_quota(body: &RequestKind) -> bool {
    match body {
        RequestKind::Fetch(r) => r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0,
        RequestKind::WriteTxnMarkers(_) => true,
        _ => false,
    }
}

/// Dispatches one request; `received` is when its last byte arrived (for queue-time metrics).
/// SASL requests change `conn`'s session before the next request is read.
pub async fn dispatch(
    shard: &Rc<Shard>,
    frame: Bytes,
    received: Instant,
    conn: &mut Conn,
) -> Dispatched {
    if conn.session.expects_raw_token() {
        return handlers::sasl::raw_token(shard, &mut conn.session, &frame).await;
    }
    let request_bytes = frame.len();
    let req = match decode_request(frame) {
        Ok(req) => req,
        Err(e) => return undecodable(e),
    };
    let api = req.api_key;
    shard
        .metrics
        .request(api, req.api_version, received.elapsed());
    if !conn.session.allows(api) {
        return Dispatched::Close(format!("{api:?} before SASL authentication"));
    }
    // KIP-368: once the session is over only a re-authentication is served.
    if conn.session.expired(crate::runtime::now())
        && !(api == ApiKey::SaslHandshake && conn.session.may_reauthenticate(req.api_version))
    {
        crate::metrics::ShardMetrics::add(&shard.metrics.sasl_sessions_expired, 1);
        return Dispatched::Close(format!(
            "{api:?} after the SASL session expired (--connections-max-reauth-ms)"
        ));
    }
    let to = ReplyTo {
        api_key: api,
        version: req.api_version,
        correlation_id: req.correlation_id,
    };
    match req.body {
        RequestKind::SaslHandshake(r) => {
            let body = handlers::sasl::handshake(shard, &mut conn.session, r, to.version);
            return Dispatched::Respond(Box::pin(async move { encode(to, body) }));
        }
        RequestKind::SaslAuthenticate(r) => {
            let body = handlers::sasl::authenticate(shard, &mut conn.session, r, to.version).await;
            // A failure is answered late (Kafka's connection.failed.authentication.delay.ms);
            // the connection reads nothing more meanwhile.
            let delay = conn.session.failed().then(|| {
                std::time::Duration::from_millis(
                    shard.config.args.connection_failed_authentication_delay_ms,
                )
            });
            return Dispatched::Respond(Box::pin(async move {
                if let Some(d) = delay {
                    crate::runtime::sleep(d).await;
                }
                encode(to, body)
            }));
        }
        _ => {}
    }
    // A request_percentage quota counts the time spent handling the request (both stages):
    // the response tells the throttle of the time counted when it is built
    // (`RequestClock::throttle`), and what is spent after that counts towards the next one.
    let request_clock = {
        let image = shard.metadata();
        if image.quotas.is_empty() || exempt_from_request_quota(&req.body) {
            None
        } else {
            quota_for(
                &image.quotas,
                conn.session.principal(),
                req.client_id.as_deref(),
                QuotaKind::Request,
            )
            .map(|applied| RequestClock {
                applied: Rc::new(applied),
                busy: Rc::new(Cell::new(Duration::ZERO)),
                mute: conn.mute.clone(),
            })
        }
    };
    let routed = match &request_clock {
        None => route(shard, req, conn, request_bytes, None).await,
        Some(c) => {
            let busy = c.busy.clone();
            timed(
                route(shard, req, conn, request_bytes, request_clock.clone()),
                busy,
            )
            .await
        }
    };
    match routed {
        Dispatched::Respond(fut) => {
            let s = shard.clone();
            let started = crate::runtime::now();
            Dispatched::Respond(Box::pin(async move {
                let r = match &request_clock {
                    None => fut.await,
                    Some(c) => timed(fut, c.busy.clone()).await,
                };
                if let Some(c) = &request_clock {
                    c.throttle(&s);
                }
                s.metrics.handled(api, started.elapsed());
                r
            }))
        }
        close => close,
    }
}

/// A frame that did not decode: ApiVersions too new gets the v0 fallback; the rest close.
fn undecodable(e: DecodeError) -> Dispatched {
    match e {
        DecodeError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            api_version,
            correlation_id,
        } => {
            debug!(
                api_version,
                "ApiVersions at an unsupported version: answering v0 with UNSUPPORTED_VERSION"
            );
            Dispatched::Respond(Box::pin(async move {
                handlers::api_versions::unsupported_version(correlation_id)
            }))
        }
        e => Dispatched::Close(e.to_string()),
    }
}

/// The handler table: every API with its handler. Each handler is
/// `async fn handle(shard: Rc<Shard>, request, ctx: Ctx) -> ResponseKind`, the response body;
/// the table's macro turns it into the second stage. The two streaming APIs have the same
/// arguments and answer [`Dispatched`] themselves: Produce appends in its first stage (in
/// connection order) and answers nothing for acks=0; Fetch encodes its own frame so record
/// bytes are never copied.
macro_rules! handlers {
    (staged { $($skind:ident => $sfn:path),* $(,)? } answering { $($kind:ident => $fn:path),* $(,)? }) => {
        /// Every API the table routes, and the SASL ones `dispatch` answers itself
        /// (ApiVersions must advertise no other).
        pub const HANDLED_APIS: &[ApiKey] = &[
            ApiKey::SaslHandshake,
            ApiKey::SaslAuthenticate,
            $(ApiKey::$skind,)* $(ApiKey::$kind,)*
        ];

        /// Routes a decoded request to its handler.
        async fn route(
            shard: &Rc<Shard>,
            req: Request,
            conn: &Conn,
            request_bytes: usize,
            request_clock: Option<RequestClock>,
        ) -> Dispatched {
            let ctx = Ctx {
                api_key: req.api_key,
                version: req.api_version,
                correlation_id: req.correlation_id,
                client_id: req.client_id,
                listener: conn.listener,
                principal: conn.session.principal().clone(),
                host: conn.host.clone(),
                request_bytes,
                mute: conn.mute.clone(),
                request_clock,
            };
            match req.body {
                $(RequestKind::$skind(r) => $sfn(shard.clone(), r, ctx).await,)*
                $(RequestKind::$kind(r) => {
                    let (to, clock) = (ctx.reply_to(), ctx.request_clock.clone());
                    respond(shard, to, clock, $fn(shard.clone(), r, ctx))
                })*
                other => Dispatched::Close(format!(
                    "no handler for {:?} although the version table lists it: {}",
                    ctx.api_key,
                    std::any::type_name_of_val(&other)
                )),
            }
        }
    };
}

handlers! {
    staged {
        Produce => handlers::produce::handle,
        Fetch => handlers::fetch::handle,
    }
    answering {
        ApiVersions => handlers::api_versions::handle,
        Metadata => handlers::metadata::handle,
        ListOffsets => handlers::list_offsets::handle,
        CreateTopics => handlers::create_topics::handle,
        DeleteTopics => handlers::delete_topics::handle,
        CreatePartitions => handlers::create_partitions::handle,
        DescribeConfigs => handlers::describe_configs::handle,
        AlterConfigs => handlers::alter_configs::handle_legacy,
        IncrementalAlterConfigs => handlers::alter_configs::handle_incremental,
        DescribeCluster => handlers::describe_cluster::handle,
        DescribeQuorum => handlers::describe_quorum::handle,
        OffsetForLeaderEpoch => handlers::offset_for_leader_epoch::handle,
        DeleteRecords => handlers::delete_records::handle,
        InitProducerId => handlers::init_producer_id::handle,
        DescribeLogDirs => handlers::describe_log_dirs::handle,
        ElectLeaders => handlers::elect_leaders::handle,
        AlterPartitionReassignments => handlers::reassignments::handle_alter,
        ListPartitionReassignments => handlers::reassignments::handle_list,
        // Consumer groups (group coordinator).
        FindCoordinator => handlers::find_coordinator::handle,
        JoinGroup => handlers::join_group::handle,
        SyncGroup => handlers::sync_group::handle,
        Heartbeat => handlers::heartbeat::handle,
        LeaveGroup => handlers::leave_group::handle,
        OffsetCommit => handlers::offset_commit::handle,
        OffsetFetch => handlers::offset_fetch::handle,
        DescribeGroups => handlers::describe_groups::handle,
        ListGroups => handlers::list_groups::handle,
        DeleteGroups => handlers::delete_groups::handle,
        OffsetDelete => handlers::offset_delete::handle,
        // Transactions (transaction coordinator; TxnOffsetCommit goes to the group's).
        AddPartitionsToTxn => handlers::transactions::add_partitions_to_txn,
        AddOffsetsToTxn => handlers::transactions::add_offsets_to_txn,
        EndTxn => handlers::transactions::end_txn,
        TxnOffsetCommit => handlers::transactions::txn_offset_commit,
        DescribeTransactions => handlers::transactions::describe_transactions,
        ListTransactions => handlers::transactions::list_transactions,
        WriteTxnMarkers => handlers::transactions::write_txn_markers,
        // Security.
        DescribeUserScramCredentials => handlers::scram_credentials::describe,
        AlterUserScramCredentials => handlers::scram_credentials::alter,
        CreateAcls => handlers::acls::create,
        DescribeAcls => handlers::acls::describe,
        DeleteAcls => handlers::acls::delete,
        DescribeClientQuotas => handlers::client_quotas::describe,
        AlterClientQuotas => handlers::client_quotas::alter,
        UpdateFeatures => handlers::features::handle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every API advertised in ApiVersions has a handler, and every handler is advertised.
    #[test]
    fn every_advertised_api_has_a_handler() {
        let advertised: std::collections::BTreeSet<i16> = sluice_net::SUPPORTED_APIS
            .iter()
            .map(|&(k, _, _)| k as i16)
            .collect();
        let handled: std::collections::BTreeSet<i16> =
            HANDLED_APIS.iter().map(|&k| k as i16).collect();
        assert_eq!(advertised, handled);
        assert_eq!(handled.len(), HANDLED_APIS.len(), "an API routed twice");
    }
}
