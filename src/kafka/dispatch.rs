//! Request dispatch: decode a frame, route it by API key to its handler, encode the answer.
//!
//! Two stages, as in Redpanda: `dispatch` runs in the connection's read order and may start
//! work that must keep that order (Produce appends); the future it returns finishes the request
//! and yields the response frame (or none, for acks=0 Produce).

use std::future::Future;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use kafka_protocol::messages::ApiKey;
use sluice_net::{
    decode_request, encode_response, DecodeError, Request, RequestKind, ResponseFrame, ResponseKind,
};
use tracing::{debug, error};

use crate::kafka::handlers;
use crate::shard::Shard;

/// What the connection does with a request.
pub enum Dispatched {
    /// Await this (in order) and write its frame, if any.
    Respond(LocalBoxFuture<'static, Option<ResponseFrame>>),
    /// Close the connection; the reason is logged.
    Close(String),
}

/// Routing facts of a request, kept for encoding its response.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
}

/// Encodes a response. An encoding failure is a bug: it is logged and yields an empty frame,
/// which the connection's writer takes as "close" (a client must not wait forever for it).
pub fn encode(ctx: Ctx, body: ResponseKind) -> Option<ResponseFrame> {
    match encode_response(ctx.api_key, ctx.version, ctx.correlation_id, &body) {
        Ok(frame) => Some(frame),
        Err(e) => {
            error!(error = %e, "response encoding failed; closing connection");
            Some(Vec::new())
        }
    }
}

fn respond<F>(ctx: Ctx, fut: F) -> Dispatched
where
    F: Future<Output = ResponseKind> + 'static,
{
    Dispatched::Respond(Box::pin(async move { encode(ctx, fut.await) }))
}

/// Dispatches one request; `received` is when its last byte arrived (for queue-time metrics).
pub async fn dispatch(shard: &Rc<Shard>, frame: Bytes, received: Instant) -> Dispatched {
    let req = match decode_request(frame) {
        Ok(req) => req,
        Err(e) => return undecodable(e),
    };
    let api = req.api_key;
    shard
        .metrics
        .request(api, req.api_version, received.elapsed());
    match route(shard, req).await {
        Dispatched::Respond(fut) => {
            let s = shard.clone();
            let started = Instant::now();
            Dispatched::Respond(Box::pin(async move {
                let r = fut.await;
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

/// Routes a decoded request to its handler.
async fn route(shard: &Rc<Shard>, req: Request) -> Dispatched {
    let ctx = Ctx {
        api_key: req.api_key,
        version: req.api_version,
        correlation_id: req.correlation_id,
    };
    let s = shard.clone();
    match req.body {
        RequestKind::ApiVersions(_) => {
            respond(ctx, async move { handlers::api_versions::handle() })
        }
        RequestKind::Metadata(r) => respond(ctx, handlers::metadata::handle(s, r, ctx.version)),
        RequestKind::Produce(r) => handlers::produce::dispatch(shard, r, ctx).await,
        RequestKind::Fetch(r) => Dispatched::Respond(Box::pin(handlers::fetch::handle(s, r, ctx))),
        RequestKind::ListOffsets(r) => {
            respond(ctx, handlers::list_offsets::handle(s, r, ctx.version))
        }
        RequestKind::CreateTopics(r) => {
            respond(ctx, handlers::create_topics::handle(s, r, ctx.version))
        }
        RequestKind::DeleteTopics(r) => {
            respond(ctx, handlers::delete_topics::handle(s, r, ctx.version))
        }
        RequestKind::CreatePartitions(r) => respond(ctx, handlers::create_partitions::handle(s, r)),
        RequestKind::DescribeConfigs(r) => {
            respond(ctx, handlers::describe_configs::handle(s, r, ctx.version))
        }
        RequestKind::AlterConfigs(r) => respond(ctx, handlers::alter_configs::handle_legacy(s, r)),
        RequestKind::IncrementalAlterConfigs(r) => {
            respond(ctx, handlers::alter_configs::handle_incremental(s, r))
        }
        RequestKind::DescribeCluster(r) => respond(ctx, handlers::describe_cluster::handle(s, r)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            respond(ctx, handlers::offset_for_leader_epoch::handle(s, r))
        }
        RequestKind::DeleteRecords(r) => respond(ctx, handlers::delete_records::handle(s, r)),
        RequestKind::InitProducerId(r) => respond(ctx, handlers::init_producer_id::handle(s, r)),
        RequestKind::DescribeLogDirs(r) => respond(ctx, handlers::describe_log_dirs::handle(s, r)),
        // --- consumer groups (group coordinator) ---
        RequestKind::FindCoordinator(r) => {
            respond(ctx, handlers::find_coordinator::handle(s, r, ctx.version))
        }
        RequestKind::JoinGroup(r) => {
            let client_id = req.client_id.clone().unwrap_or_default();
            respond(
                ctx,
                handlers::join_group::handle(s, r, ctx.version, client_id),
            )
        }
        RequestKind::SyncGroup(r) => respond(ctx, handlers::sync_group::handle(s, r, ctx.version)),
        RequestKind::Heartbeat(r) => respond(ctx, handlers::heartbeat::handle(s, r)),
        RequestKind::LeaveGroup(r) => {
            respond(ctx, handlers::leave_group::handle(s, r, ctx.version))
        }
        RequestKind::OffsetCommit(r) => {
            respond(ctx, handlers::offset_commit::handle(s, r, ctx.version))
        }
        RequestKind::OffsetFetch(r) => {
            respond(ctx, handlers::offset_fetch::handle(s, r, ctx.version))
        }
        RequestKind::DescribeGroups(r) => {
            respond(ctx, handlers::describe_groups::handle(s, r, ctx.version))
        }
        RequestKind::ListGroups(r) => {
            respond(ctx, handlers::list_groups::handle(s, r, ctx.version))
        }
        RequestKind::DeleteGroups(r) => respond(ctx, handlers::delete_groups::handle(s, r)),
        RequestKind::OffsetDelete(r) => respond(ctx, handlers::offset_delete::handle(s, r)),
        // --- end consumer groups ---
        other => Dispatched::Close(format!(
            "no handler for {:?} although the version table lists it: {}",
            ctx.api_key,
            std::any::type_name_of_val(&other)
        )),
    }
}
