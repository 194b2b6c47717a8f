//! The controller endpoint's wire: Raft RPCs between voters, and opaque application calls
//! (broker registration, heartbeats, forwarded admin operations) on the same listener.
//!
//! openraft's client of a voter is [`RaftClient`] over a [`Transport`] (TCP here, a seeded
//! network in the simulation); a voter answers Raft requests with [`answer`].
//!
//! One request at a time per TCP connection; each message is a frame `len u32 (BE) | JSON`,
//! at most [`MESSAGE_MAX`]. A connection whose peer sends something unreadable is closed.
//! Clients keep their connection and reconnect after any failure.
//!
//! With `--controller-security-protocol SSL` ([`ControllerTls`]) every connection is TLS with
//! a certificate on both sides that the trust store verifies, and each side serves or talks to
//! the other only if that certificate's principal is one of the `--super-users`: a client
//! certificate the same CA gave a user does not reach Raft.
//!
//! A Raft client opens each connection with [`Request::Hello`] naming the voter it means to
//! reach; the endpoint serves Raft requests only on a connection addressed to its own node id.
//! A voter reached at a wrong address (a misconfigured `--controller-quorum-voters`, or a port
//! another process took) would otherwise vote and take entries as the node it is not, and one
//! node could count twice in a quorum.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetworkFactory, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::{Raft, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::runtime::net::{TcpListener, TcpStream};
use crate::runtime::secure::Stream;
use crate::security::tls::TlsContext;

/// Largest message accepted (a snapshot of the whole image is the largest).
pub const MESSAGE_MAX: usize = 64 << 20;
/// Connecting to a peer gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The least time a Raft RPC is given, whatever openraft asks.
const RPC_TIME_MIN: Duration = Duration::from_secs(2);
/// Idle connections kept per peer for application calls.
const POOL_PER_PEER: usize = 4;
/// A TLS handshake on the controller endpoint must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS on the controller endpoint (`--controller-security-protocol SSL`).
#[derive(Debug, Clone)]
pub struct ControllerTls {
    pub context: Arc<TlsContext>,
    /// The principals served and talked to (`--super-users`).
    pub allowed: Arc<[String]>,
}

impl ControllerTls {
    /// From the configuration: `Some` with `--controller-security-protocol SSL` (whose checks
    /// at start make sure the TLS context exists).
    pub fn of(config: &crate::config::Config) -> Option<ControllerTls> {
        if config.args.controller_security_protocol != crate::config::ControllerProtocol::Ssl {
            return None;
        }
        Some(ControllerTls {
            context: config.tls.clone()?,
            allowed: config.authorizer.super_users.clone().into(),
        })
    }

    /// Whether the peer's verified certificate names an allowed principal.
    fn admits(&self, stream: &Stream) -> Result<(), String> {
        let principal = stream
            .peer_certificate()
            .and_then(|c| crate::security::tls::principal_of(&c));
        match principal {
            Some(p) if self.allowed.contains(&p) => Ok(()),
            Some(p) => Err(format!("{p} is not one of the --super-users")),
            None => Err("no certificate with a subject".to_owned()),
        }
    }
}

/// A message to a voter's endpoint (over TCP, or the simulation's network).
#[derive(Serialize, Deserialize)]
pub(crate) enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    /// `data` is the snapshot's JSON text, sent as a string (a byte vector would travel as a
    /// JSON array of numbers, three to four times larger).
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: String,
    },
    App(Vec<u8>),
    /// Opens a Raft client's connection: the node id the client means to reach.
    Hello {
        to: u64,
    },
}

/// A voter's answer.
#[derive(Serialize, Deserialize)]
pub(crate) enum Response {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    Snapshot(SnapshotResponse<TypeConfig>),
    App(Vec<u8>),
    /// The connection is addressed to this node.
    Hello,
    /// The receiving node's Raft has stopped (or the request does not fit it).
    Failed(String),
}

async fn write_message<T: Serialize>(stream: &mut Stream, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.send(frame).await
}

async fn read_message<T: DeserializeOwned>(stream: &mut Stream) -> io::Result<T> {
    let body = stream.read_frame(MESSAGE_MAX).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A connection to the controller endpoint at `addr`, under TLS if `tls` says so (the
/// endpoint's certificate verified for its IP address and its principal allowed).
async fn connect(addr: SocketAddr, tls: Option<&ControllerTls>) -> io::Result<Stream> {
    let sock = crate::runtime::net::connect(addr, CONNECT_TIMEOUT).await?;
    let Some(tls) = tls else {
        return Ok(Stream::Plain(sock));
    };
    let config = tls
        .context
        .client_config()
        .ok_or_else(|| io::Error::other("TLS to the controller needs a trust store"))?;
    let host = addr.ip().to_string();
    let stream =
        crate::runtime::timeout(HANDSHAKE_TIMEOUT, Stream::tls_client(sock, &host, config))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    tls.admits(&stream).map_err(|why| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the controller endpoint at {addr}: {why}"),
        )
    })?;
    Ok(stream)
}

/// One request and its response on `stream`, within `ttl`.
async fn call(stream: &mut Stream, req: &Request, ttl: Duration) -> io::Result<Response> {
    crate::runtime::timeout(ttl, async {
        write_message(stream, req).await?;
        read_message(stream).await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in time"))?
}

/// Decodes one request body as the endpoint does (fuzzing and malformed-input tests): an
/// error for anything that is not a request, never a panic.
pub fn decode_request(body: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<Request>(body)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// One application call's future: the reply, and the session the call belongs to (a broker's
/// registration epoch), if any.
pub type AppCall = futures_util::future::LocalBoxFuture<'static, (Vec<u8>, Option<u64>)>;

/// The application side of the controller endpoint.
#[derive(Clone)]
pub struct AppHandler {
    /// Answers one call.
    pub call: Rc<dyn Fn(Vec<u8>) -> AppCall>,
    /// A connection that carried calls of these sessions closed (its peer may have died).
    pub closed: Rc<dyn Fn(Vec<u64>)>,
}

/// Serves node `me`'s controller endpoint: Raft RPCs go to `raft`, application calls to
/// `app`; under TLS if `tls` is given.
pub async fn serve(
    listener: TcpListener,
    me: u64,
    raft: Raft,
    app: AppHandler,
    tls: Option<ControllerTls>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (raft, app, tls) = (raft.clone(), app.clone(), tls.clone());
                crate::runtime::spawn(async move {
                    if let Some(stream) = secure(stream, peer, tls).await {
                        serve_connection(stream, peer, me, raft, app).await;
                    }
                })
                .detach();
            }
            Err(e) => {
                warn!(error = %e, "controller endpoint: accept failed");
                crate::runtime::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// An accepted connection as the endpoint serves it: plain, or after a TLS handshake that
/// verified an allowed peer's certificate (`None`, logged, otherwise).
async fn secure(sock: TcpStream, peer: SocketAddr, tls: Option<ControllerTls>) -> Option<Stream> {
    let _ = sock.set_nodelay(true);
    let Some(tls) = tls else {
        return Some(Stream::Plain(sock));
    };
    let config = tls.context.node_server_config()?;
    let stream =
        match crate::runtime::timeout(HANDSHAKE_TIMEOUT, Stream::tls_server(sock, config)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(%peer, error = %e, "controller endpoint: TLS handshake failed");
                return None;
            }
            Err(_) => {
                warn!(%peer, "controller endpoint: TLS handshake timed out");
                return None;
            }
        };
    match tls.admits(&stream) {
        Ok(()) => Some(stream),
        Err(why) => {
            warn!(%peer, "controller endpoint: refusing a peer: {why}");
            None
        }
    }
}

async fn serve_connection(
    mut stream: Stream,
    peer: SocketAddr,
    me: u64,
    raft: Raft,
    app: AppHandler,
) {
    // Whether the client said it means this node (`Request::Hello`).
    let mut addressed = false;
    // The sessions whose calls this connection carried: when it closes, the application
    // hears of it (a crashed broker's connections close at once; its heartbeats just stop).
    let mut sessions: Vec<u64> = Vec::new();
    loop {
        let req: Request = match read_message(&mut stream).await {
            Ok(r) => r,
            Err(e) => {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    debug!(%peer, error = %e, "controller endpoint: closing connection");
                }
                break;
            }
        };
        let resp = match req {
            Request::App(body) => {
                let (reply, session) = (app.call)(body).await;
                if let Some(s) = session.filter(|s| !sessions.contains(s)) {
                    // Bounded: a broker's registrations on one connection, a handful.
                    if sessions.len() < 16 {
                        sessions.push(s);
                    }
                }
                Response::App(reply)
            }
            Request::Hello { to } if to == me => {
                addressed = true;
                Response::Hello
            }
            Request::Hello { to } => {
                warn!(%peer, to, me, "a Raft peer means node {to} but reached this node {me}: check every node's --controller-quorum-voters");
                let why = format!("this is node {me}, not node {to}");
                let _ = write_message(&mut stream, &Response::Failed(why)).await;
                break;
            }
            _ if !addressed => {
                Response::Failed("a Raft request before Hello named this node".to_owned())
            }
            raft_request => answer(&raft, raft_request).await,
        };
        if let Err(e) = write_message(&mut stream, &resp).await {
            debug!(%peer, error = %e, "controller endpoint: reply failed");
            break;
        }
    }
    if !sessions.is_empty() {
        (app.closed)(sessions);
    }
}

/// Hands a Raft request to this voter's `raft`: its answer, or why it failed. An application
/// call has no handler here (the endpoint's caller handles those).
pub(crate) async fn answer(raft: &Raft, req: Request) -> Response {
    let failed = |e: &dyn std::fmt::Display| Response::Failed(e.to_string());
    match req {
        Request::Append(r) => raft
            .append_entries(r)
            .await
            .map_or_else(|e| failed(&e), Response::Append),
        Request::Vote(r) => raft
            .vote(r)
            .await
            .map_or_else(|e| failed(&e), Response::Vote),
        Request::PreVote(r) => raft
            .pre_vote(r)
            .await
            .map_or_else(|e| failed(&e), Response::Vote),
        Request::Snapshot { vote, meta, data } => {
            let snapshot = Snapshot {
                meta,
                snapshot: data.into_bytes(),
            };
            raft.install_full_snapshot(vote, snapshot)
                .await
                .map_or_else(|e| failed(&e), Response::Snapshot)
        }
        Request::App(_) | Request::Hello { .. } => failed(&"not a Raft request where one was due"),
    }
}

/// How a Raft client reaches one voter: a request in, its answer out within `option`'s time,
/// or `Unreachable`. TCP here ([`Peer`]); the simulation has its own.
pub(crate) trait Transport {
    async fn send(
        &mut self,
        req: Request,
        option: RPCOption,
    ) -> Result<Response, RPCError<TypeConfig>>;
}

/// openraft's client of one voter, over any [`Transport`].
pub(crate) struct RaftClient<T>(pub(crate) T);

/// Makes Raft clients for openraft. A voter is reached at the address this node's
/// `--controller-quorum-voters` gives for it (the addresses in the replicated membership are
/// the initialising node's, and each node may reach a voter its own way, e.g. through a
/// proxy); the membership's address only serves a voter missing from the flag.
pub(crate) struct Network {
    pub(crate) voters: std::collections::BTreeMap<i32, SocketAddr>,
    pub(crate) tls: Option<ControllerTls>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = RaftClient<Peer>;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> RaftClient<Peer> {
        let known = i32::try_from(target)
            .ok()
            .and_then(|t| self.voters.get(&t).copied());
        RaftClient(Peer {
            target,
            addr: known.or_else(|| node.addr.parse().ok()),
            stream: None,
            tls: self.tls.clone(),
        })
    }
}

/// One voter reached over TCP.
pub(crate) struct Peer {
    /// Its node id, named in each new connection's `Hello`.
    target: u64,
    addr: Option<SocketAddr>,
    stream: Option<Stream>,
    tls: Option<ControllerTls>,
}

impl Peer {
    async fn call(&mut self, req: Request, ttl: Duration) -> io::Result<Response> {
        let addr = self
            .addr
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad voter address"))?;
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => {
                let mut s = connect(addr, self.tls.as_ref()).await?;
                match call(&mut s, &Request::Hello { to: self.target }, ttl).await? {
                    Response::Hello => s,
                    Response::Failed(why) => return Err(io::Error::other(why)),
                    _ => return Err(io::Error::other("unexpected answer to Hello")),
                }
            }
        };
        let resp = call(&mut stream, &req, ttl).await?;
        self.stream = Some(stream);
        Ok(resp)
    }
}

impl Transport for Peer {
    async fn send(
        &mut self,
        req: Request,
        option: RPCOption,
    ) -> Result<Response, RPCError<TypeConfig>> {
        // openraft gives appends one Raft heartbeat (at most 100 ms), which includes the
        // follower's fdatasync: on a slow disk every append would time out and be resent.
        let ttl = option.hard_ttl().max(RPC_TIME_MIN);
        self.call(req, ttl)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

impl<T: Transport> RaftClient<T> {
    /// Sends `req`; a voter's refusal (`Response::Failed`) is a network error to openraft.
    async fn rpc(
        &mut self,
        req: Request,
        option: RPCOption,
    ) -> Result<Response, RPCError<TypeConfig>> {
        match self.0.send(req, option).await? {
            Response::Failed(why) => {
                Err(RPCError::Network(NetworkError::new(&io::Error::other(why))))
            }
            r => Ok(r),
        }
    }
}

fn unexpected() -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&io::Error::other("unexpected response")))
}

impl<T: Transport + 'static> RaftNetworkV2<TypeConfig> for RaftClient<T> {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.rpc(Request::Append(rpc), option).await? {
            Response::Append(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.rpc(Request::Vote(rpc), option).await? {
            Response::Vote(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.rpc(Request::PreVote(rpc), option).await? {
            Response::Vote(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let data = String::from_utf8(snapshot.snapshot).map_err(|e| {
            StreamingError::Network(NetworkError::new(&io::Error::other(format!(
                "snapshot data is not JSON text: {e}"
            ))))
        })?;
        let req = Request::Snapshot {
            vote,
            meta: snapshot.meta,
            data,
        };
        match self.rpc(req, option).await {
            Ok(Response::Snapshot(r)) => Ok(r),
            Ok(_) => Err(StreamingError::Network(NetworkError::new(
                &io::Error::other("unexpected response"),
            ))),
            Err(RPCError::Unreachable(u)) => Err(StreamingError::Unreachable(u)),
            Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }
}

/// Connections for application calls, per address.
#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<SocketAddr, Vec<Stream>>>,
    tls: Option<ControllerTls>,
}

impl Pool {
    /// A pool whose connections are TLS if `tls` is given.
    pub fn new(tls: Option<ControllerTls>) -> Pool {
        Pool {
            idle: RefCell::default(),
            tls,
        }
    }

    /// Sends `body` to the controller endpoint at `addr`; its reply, within `ttl`.
    pub async fn call(
        &self,
        addr: SocketAddr,
        body: Vec<u8>,
        ttl: Duration,
    ) -> io::Result<Vec<u8>> {
        let pooled = self.idle.borrow_mut().get_mut(&addr).and_then(Vec::pop);
        let mut stream = match pooled {
            Some(s) => s,
            None => connect(addr, self.tls.as_ref()).await?,
        };
        match call(&mut stream, &Request::App(body), ttl).await? {
            Response::App(reply) => {
                let mut idle = self.idle.borrow_mut();
                let list = idle.entry(addr).or_default();
                if list.len() < POOL_PER_PEER {
                    list.push(stream);
                }
                Ok(reply)
            }
            Response::Failed(why) => Err(io::Error::other(why)),
            _ => Err(io::Error::other("unexpected response")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed-seed mutations of real requests: each decodes or is refused, none panics.
    #[test]
    fn mutated_requests_never_panic() {
        let vote: VoteRequest<TypeConfig> = serde_json::from_str(
            r#"{"vote":{"leader_id":{"term":3,"node_id":1},"committed":false},"last_log_id":{"leader_id":{"term":2,"node_id":0},"index":7}}"#,
        )
        .unwrap_or_else(|e| panic!("a vote request: {e}"));
        let seeds = [
            serde_json::to_vec(&Request::Vote(vote)).unwrap(),
            serde_json::to_vec(&Request::App(b"{}".to_vec())).unwrap(),
        ];
        for s in &seeds {
            assert!(decode_request(s).is_ok());
        }
        assert!(decode_request(b"").is_err());
        assert!(decode_request(&[0xff; 64]).is_err());
        let mut rng = sluice_base::Rng::new(55);
        for _ in 0..3000 {
            let seed = &seeds[rng.below(2) as usize];
            let m = rng.mutate(seed, 6);
            let _ = decode_request(&m);
        }
    }
}
