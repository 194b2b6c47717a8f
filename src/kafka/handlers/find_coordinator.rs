//! FindCoordinator: every group's coordinator is this broker (single node); the group key is
//! accepted once `__consumer_offsets` exists. Batched keys (v4+) answer per key.
//! Transaction coordinators (key type 1) are not served: COORDINATOR_NOT_AVAILABLE.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::shard::groups;
use crate::shard::Shard;
use crate::util::sb;

const KEY_TYPE_GROUP: i8 = 0;

fn lookup(shard: &Shard, key: &str, key_type: i8) -> Result<(), (ResponseError, &'static str)> {
    if key_type != KEY_TYPE_GROUP {
        return Err((
            ResponseError::CoordinatorNotAvailable,
            "only group coordinators are served",
        ));
    }
    groups::route(shard, key)
        .map(|_| ())
        .map_err(|e| (e, "the __consumer_offsets topic is not available yet"))
}

pub async fn handle(shard: Rc<Shard>, req: FindCoordinatorRequest, ctx: Ctx) -> ResponseKind {
    let version = ctx.version;
    let node_id = BrokerId(shard.config.args.node_id);
    let host = sb(shard.config.advertised_host.clone());
    let port = shard.config.advertised_port;
    let keys: Vec<StrBytes> = if version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let c = Coordinator::default().with_key(key.clone());
        coordinators.push(match lookup(&shard, key.as_str(), req.key_type) {
            Ok(()) => c
                .with_node_id(node_id)
                .with_host(host.clone())
                .with_port(port),
            Err((e, why)) => c
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(e.code())
                .with_error_message(Some(sb(why))),
        });
    }
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = coordinators;
    } else if let Some(c) = coordinators.pop() {
        resp.error_code = c.error_code;
        if version >= 1 {
            resp.error_message = c.error_message;
        }
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    ResponseKind::FindCoordinator(resp)
}
