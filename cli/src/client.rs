//! A small blocking Kafka client over `std::net::TcpStream`, for the admin CLI.
//!
//! One [`Conn`] is one broker connection with strictly one request in flight. [`Session`] holds
//! the bootstrap connection plus lazily opened connections to other brokers (partition leaders,
//! group coordinators), as found in Metadata and FindCoordinator answers.
//!
//! Frames on the wire (see `sluice_net::frame`):
//! ```text
//! request:  size: i32 | api_key: i16 | api_version: i16 | correlation_id: i32 | client_id | [tags] | body
//! response: size: i32 | correlation_id: i32 | [tags if header v1] | body
//! ```
//!
//! Versions are fixed known-good ones (see [`versions`]); on connect the broker's ApiVersions
//! table is read so a broker lacking one fails with a clear message instead of a closed socket.
//!
//! Invariants: every read and write finishes before a deadline of `timeout` from its start;
//! response sizes are checked against [`RESPONSE_BYTES_MAX`] before allocation; decoders run
//! behind [`guard`] so broker bytes can never panic the tool.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use sluice_net::scram::{plain_message, AuthError, Mechanism, ScramClient};

use crate::AdminError;

/// Largest response frame accepted (a Fetch answer is bounded by its `max_bytes`, far below).
pub const RESPONSE_BYTES_MAX: usize = 256 << 20;

const CLIENT_ID: &str = "sluice-cli";

/// The request versions this client speaks.
pub mod versions {
    pub const API_VERSIONS: i16 = 3;
    pub const METADATA: i16 = 12;
    pub const CREATE_TOPICS: i16 = 7;
    pub const DELETE_TOPICS: i16 = 6;
    pub const CREATE_PARTITIONS: i16 = 3;
    pub const ELECT_LEADERS: i16 = 2;
    pub const ALTER_PARTITION_REASSIGNMENTS: i16 = 0;
    pub const LIST_PARTITION_REASSIGNMENTS: i16 = 0;
    pub const DESCRIBE_CONFIGS: i16 = 4;
    pub const INCREMENTAL_ALTER_CONFIGS: i16 = 1;
    pub const LIST_OFFSETS: i16 = 7;
    pub const PRODUCE: i16 = 9;
    pub const FETCH: i16 = 12;
    pub const FIND_COORDINATOR: i16 = 4;
    pub const LIST_GROUPS: i16 = 4;
    pub const DESCRIBE_GROUPS: i16 = 5;
    pub const OFFSET_FETCH: i16 = 8;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const DELETE_GROUPS: i16 = 2;
    pub const DESCRIBE_CLUSTER: i16 = 2;
    pub const DESCRIBE_QUORUM: i16 = 1;
    pub const LIST_TRANSACTIONS: i16 = 0;
    pub const DESCRIBE_TRANSACTIONS: i16 = 0;
    pub const WRITE_TXN_MARKERS: i16 = 1;
    pub const DESCRIBE_USER_SCRAM_CREDENTIALS: i16 = 0;
    pub const ALTER_USER_SCRAM_CREDENTIALS: i16 = 0;
    pub const CREATE_ACLS: i16 = 3;
    pub const DESCRIBE_ACLS: i16 = 3;
    pub const DELETE_ACLS: i16 = 3;
    pub const DESCRIBE_CLIENT_QUOTAS: i16 = 1;
    pub const ALTER_CLIENT_QUOTAS: i16 = 1;
    pub const UPDATE_FEATURES: i16 = 1;
}

/// Shorthand for a `StrBytes` from any string.
pub fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Runs a `kafka-protocol` decoder, turning both errors and (defensively) panics into a reason.
pub fn guard<T, E: std::fmt::Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("decoder panicked".to_owned()),
    }
}

/// The SASL credentials every connection authenticates with.
#[derive(Clone)]
pub struct SaslAuth {
    /// `None`: PLAIN; else the SCRAM mechanism.
    pub scram: Option<Mechanism>,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mechanism = self.scram.map_or("PLAIN", Mechanism::name);
        write!(f, "{mechanism}({}, password hidden)", self.username)
    }
}

/// One blocking connection to one broker.
pub struct Conn {
    stream: TcpStream,
    addr: String,
    timeout: Duration,
    correlation_id: i32,
    /// `api_key -> (min, max)` as the broker answered ApiVersions.
    served: HashMap<i16, (i16, i16)>,
}

impl Conn {
    /// Connects within `timeout`, reads the broker's ApiVersions table and, with `auth`,
    /// authenticates with SASL (PLAIN or SCRAM).
    pub fn connect(
        addr: &str,
        timeout: Duration,
        auth: Option<&SaslAuth>,
    ) -> Result<Conn, AdminError> {
        let connect_err = |reason: String| AdminError::Connect {
            addr: addr.to_owned(),
            reason,
        };
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| connect_err(e.to_string()))?
            .collect();
        let mut last = String::from("no address");
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    last = format!("timed out after {} ms", timeout.as_millis())
                }
                Err(e) => last = e.to_string(),
            }
        }
        let stream = stream.ok_or_else(|| connect_err(last))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            addr: addr.to_owned(),
            timeout,
            correlation_id: 0,
            served: HashMap::new(),
        };
        conn.negotiate()?;
        if let Some(auth) = auth {
            conn.authenticate(auth)?;
        }
        Ok(conn)
    }

    /// SaslHandshake (v1) and the mechanism's SaslAuthenticate exchange: PLAIN's one
    /// message, or SCRAM's two (the server's final message checked: a broker that does not
    /// hold the credential cannot sign it).
    fn authenticate(&mut self, auth: &SaslAuth) -> Result<(), AdminError> {
        use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
        let mechanism = auth.scram.map_or("PLAIN", Mechanism::name);
        let hs: SaslHandshakeResponse = self.call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(sb(mechanism)),
        )?;
        AdminError::check(hs.error_code, None, format!("{}: SaslHandshake", self.addr))?;
        let Some(m) = auth.scram else {
            self.sasl_step(plain_message(&auth.username, &auth.password))?;
            return Ok(());
        };
        let refused = |e: AuthError| AdminError::Refused(format!("SCRAM: {e}"));
        let (client, first) = ScramClient::new(m, &auth.username).map_err(refused)?;
        let server_first = client
            .server_first(&self.sasl_step(first)?)
            .map_err(refused)?;
        let salted = m.salted_password(
            auth.password.as_bytes(),
            &server_first.salt,
            server_first.iterations,
        );
        let fin = client.client_final(&server_first, &salted);
        let server_final = self.sasl_step(fin.message.clone())?;
        fin.verify(&server_final).map_err(refused)
    }

    /// One SaslAuthenticate exchange: the server's answer, or its error.
    fn sasl_step(&mut self, message: Vec<u8>) -> Result<Bytes, AdminError> {
        use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
        let resp: SaslAuthenticateResponse = self.call(
            ApiKey::SaslAuthenticate,
            1,
            &SaslAuthenticateRequest::default().with_auth_bytes(message.into()),
        )?;
        AdminError::check(
            resp.error_code,
            resp.error_message.as_deref(),
            format!("{}: SaslAuthenticate", self.addr),
        )?;
        Ok(resp.auth_bytes)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn negotiate(&mut self) -> Result<(), AdminError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(sb(CLIENT_ID))
            .with_client_software_version(sb(env!("CARGO_PKG_VERSION")));
        let mut resp: ApiVersionsResponse =
            self.exchange(ApiKey::ApiVersions, versions::API_VERSIONS, &req, None)?;
        if resp.error_code == 35 {
            // UNSUPPORTED_VERSION: the broker answered in v0 with its table; ask again at v0.
            resp = self.exchange(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default(), None)?;
        }
        AdminError::check(resp.error_code, None, format!("{}: ApiVersions", self.addr))?;
        self.served = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// Sends `req` as `key` v`version` and decodes the answer. Checks that the broker serves it.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, AdminError> {
        self.require(key, version)?;
        self.exchange(key, version, req, None)
    }

    /// As [`Conn::call`], with a longer read deadline for requests that wait on the broker side
    /// (Fetch `max_wait_ms`).
    pub fn call_waiting<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
        extra_wait: Duration,
    ) -> Result<Resp, AdminError> {
        self.require(key, version)?;
        self.exchange(key, version, req, Some(self.timeout + extra_wait))
    }

    fn require(&self, key: ApiKey, version: i16) -> Result<(), AdminError> {
        match self.served.get(&(key as i16)) {
            Some(&(min, max)) if (min..=max).contains(&version) => Ok(()),
            served => Err(AdminError::Unsupported {
                addr: self.addr.clone(),
                api: format!("{key:?}"),
                version,
                served: served.map_or("no version".to_owned(), |(min, max)| {
                    format!("v{min}..v{max}")
                }),
            }),
        }
    }

    fn exchange<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
        wait: Option<Duration>,
    ) -> Result<Resp, AdminError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(sb(CLIENT_ID)));
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        let encoded = header
            .encode(&mut frame, key.request_header_version(version))
            .and_then(|()| req.encode(&mut frame, version));
        if let Err(e) = encoded {
            // A field outside its version: a bug in this tool, reported rather than sent.
            return Err(AdminError::Usage(format!(
                "cannot encode {key:?} v{version} request: {e}"
            )));
        }
        let size = i32::try_from(frame.len() - 4).map_err(|_| {
            AdminError::Usage(format!(
                "{key:?} request of {} bytes is too large",
                frame.len()
            ))
        })?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        let deadline = Instant::now() + wait.unwrap_or(self.timeout);
        self.write_all(&frame, deadline)?;
        let mut body = self.read_frame(deadline)?;
        let protocol = |reason: String| AdminError::Protocol {
            addr: self.addr.clone(),
            reason: format!("{key:?} v{version}: {reason}"),
        };
        let header =
            guard(|| ResponseHeader::decode(&mut body, key.response_header_version(version)))
                .map_err(protocol)?;
        if header.correlation_id != self.correlation_id {
            return Err(protocol(format!(
                "correlation id {} where {} was expected",
                header.correlation_id, self.correlation_id
            )));
        }
        guard(|| Resp::decode(&mut body, version)).map_err(protocol)
    }

    fn write_all(&mut self, mut buf: &[u8], deadline: Instant) -> Result<(), AdminError> {
        while !buf.is_empty() {
            let left = self.time_left(deadline)?;
            let _ = self.stream.set_write_timeout(Some(left));
            match self.stream.write(buf) {
                Ok(0) => return Err(self.io_err("connection closed while sending".to_owned())),
                Ok(n) => buf = &buf[n..],
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(self.io_err(e.to_string())),
            }
        }
        Ok(())
    }

    fn read_exact(&mut self, mut buf: &mut [u8], deadline: Instant) -> Result<(), AdminError> {
        while !buf.is_empty() {
            let left = self.time_left(deadline)?;
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(buf) {
                Ok(0) => {
                    return Err(self.io_err("connection closed by the broker".to_owned()));
                }
                Ok(n) => buf = &mut buf[n..],
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(self.io_err(e.to_string())),
            }
        }
        Ok(())
    }

    fn read_frame(&mut self, deadline: Instant) -> Result<Bytes, AdminError> {
        let mut size = [0u8; 4];
        self.read_exact(&mut size, deadline)?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| AdminError::Protocol {
                addr: self.addr.clone(),
                reason: format!("response frame size {size} outside 0..={RESPONSE_BYTES_MAX}"),
            })?;
        let mut body = vec![0u8; size];
        self.read_exact(&mut body, deadline)?;
        Ok(Bytes::from(body))
    }

    fn time_left(&self, deadline: Instant) -> Result<Duration, AdminError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AdminError::Timeout {
                addr: self.addr.clone(),
                timeout_ms: self.timeout.as_millis(),
            });
        }
        Ok(left)
    }

    fn io_err(&self, reason: String) -> AdminError {
        AdminError::Io {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// Interrupted, or a socket timeout (the deadline check decides whether it is final).
fn is_retry(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
    )
}

/// The bootstrap connection plus connections to other brokers by node id.
pub struct Session {
    bootstrap: Conn,
    /// SASL/PLAIN credentials for every connection, if the listener needs them.
    auth: Option<SaslAuth>,
    timeout: Duration,
    /// `node_id -> HOST:PORT`, from the latest Metadata answer.
    brokers: HashMap<i32, String>,
    conns: HashMap<i32, Conn>,
}

impl Session {
    pub fn connect(
        bootstrap: &str,
        timeout: Duration,
        auth: Option<SaslAuth>,
    ) -> Result<Session, AdminError> {
        Ok(Session {
            bootstrap: Conn::connect(bootstrap, timeout, auth.as_ref())?,
            auth,
            timeout,
            brokers: HashMap::new(),
            conns: HashMap::new(),
        })
    }

    /// The active controller's connection, where it is a known broker; else the bootstrap
    /// broker (brokers forward controller requests themselves).
    pub fn controller(&mut self) -> Result<&mut Conn, AdminError> {
        let md = self.metadata(Some(&[]))?;
        let id = md.controller_id.0;
        if md.brokers.iter().any(|b| b.node_id.0 == id) {
            self.broker(id)
        } else {
            Ok(self.bootstrap())
        }
    }

    pub fn bootstrap(&mut self) -> &mut Conn {
        &mut self.bootstrap
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Metadata for `topics` (`None`: every topic); never creates topics. Remembers brokers.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse, AdminError> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(sb(n.as_str()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let resp: MetadataResponse =
            self.bootstrap
                .call(ApiKey::Metadata, versions::METADATA, &req)?;
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        Ok(resp)
    }

    /// Node ids of every broker in the last Metadata answer (fetching one if none yet).
    pub fn broker_ids(&mut self) -> Result<Vec<i32>, AdminError> {
        if self.brokers.is_empty() {
            self.metadata(Some(&[]))?;
        }
        let mut ids: Vec<i32> = self.brokers.keys().copied().collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The connection to broker `node_id`, opened on first use.
    pub fn broker(&mut self, node_id: i32) -> Result<&mut Conn, AdminError> {
        if !self.conns.contains_key(&node_id) {
            if self.brokers.is_empty() {
                self.metadata(Some(&[]))?;
            }
            let addr = self.brokers.get(&node_id).cloned().ok_or_else(|| {
                AdminError::NotFound(format!("broker {node_id} is not in the cluster metadata"))
            })?;
            let conn = Conn::connect(&addr, self.timeout, self.auth.as_ref())?;
            self.conns.insert(node_id, conn);
        }
        self.conns
            .get_mut(&node_id)
            .ok_or_else(|| AdminError::NotFound(format!("broker {node_id}")))
    }

    /// The coordinator of each group (FindCoordinator v4, batched), in input order.
    pub fn coordinators(&mut self, groups: &[String]) -> Result<Vec<Coordinator>, AdminError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let req = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(groups.iter().map(|g| sb(g.as_str())).collect());
        let resp: FindCoordinatorResponse =
            self.bootstrap
                .call(ApiKey::FindCoordinator, versions::FIND_COORDINATOR, &req)?;
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let c = resp
                .coordinators
                .iter()
                .find(|c| c.key.as_str() == g)
                .ok_or_else(|| AdminError::Protocol {
                    addr: self.bootstrap.addr.clone(),
                    reason: format!("FindCoordinator answer lacks group {g:?}"),
                })?;
            AdminError::check(
                c.error_code,
                c.error_message.as_deref(),
                format!("group {g:?}: FindCoordinator"),
            )?;
            self.brokers
                .insert(c.node_id.0, format!("{}:{}", c.host.as_str(), c.port));
            out.push(c.clone());
        }
        Ok(out)
    }

    /// The connection to the coordinator of `group`.
    pub fn coordinator(&mut self, group: &str) -> Result<&mut Conn, AdminError> {
        let c = self.coordinators(&[group.to_owned()])?;
        let node = c.first().map(|c| c.node_id.0).unwrap_or(-1);
        self.broker(node)
    }
}

/// ListOffsets timestamp asking for the log start offset.
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp asking for the log end offset.
pub const LATEST: i64 = -1;

/// A `(topic, partition)` pair.
pub type TopicPartition = (String, i32);

impl Session {
    /// The leader of every partition of `topics`, from a fresh Metadata answer. Unknown topics
    /// are an error.
    pub fn leaders(
        &mut self,
        topics: &[String],
    ) -> Result<std::collections::BTreeMap<TopicPartition, i32>, AdminError> {
        let mut out = std::collections::BTreeMap::new();
        if topics.is_empty() {
            return Ok(out);
        }
        let md = self.metadata(Some(topics))?;
        for t in &md.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            check_topic(t.error_code, &name)?;
            for p in &t.partitions {
                out.insert((name.clone(), p.partition_index), p.leader_id.0);
            }
        }
        Ok(out)
    }

    /// Offsets of `partitions` at `timestamp` ([`EARLIEST`], [`LATEST`] or a time), each asked
    /// of its leader.
    pub fn list_offsets(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<std::collections::BTreeMap<TopicPartition, i64>, AdminError> {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse};
        let mut topics: Vec<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
        topics.sort();
        topics.dedup();
        let leaders = self.leaders(&topics)?;
        let mut by_leader: std::collections::BTreeMap<i32, Vec<&TopicPartition>> =
            Default::default();
        for tp in partitions {
            let leader = leaders.get(tp).copied().ok_or_else(|| {
                AdminError::NotFound(format!("unknown partition {}-{}", tp.0, tp.1))
            })?;
            by_leader.entry(leader).or_default().push(tp);
        }
        let mut out = std::collections::BTreeMap::new();
        for (leader, tps) in by_leader {
            let mut req_topics: Vec<ListOffsetsTopic> = Vec::new();
            for (t, p) in tps {
                let part = ListOffsetsPartition::default()
                    .with_partition_index(*p)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp);
                match req_topics.iter_mut().find(|rt| rt.name.0.as_str() == t) {
                    Some(rt) => rt.partitions.push(part),
                    None => req_topics.push(
                        ListOffsetsTopic::default()
                            .with_name(TopicName(sb(t.as_str())))
                            .with_partitions(vec![part]),
                    ),
                }
            }
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(0)
                .with_topics(req_topics);
            let resp: ListOffsetsResponse = self.broker_or_bootstrap(leader)?.call(
                ApiKey::ListOffsets,
                versions::LIST_OFFSETS,
                &req,
            )?;
            for t in resp.topics {
                for p in t.partitions {
                    let name = t.name.0.to_string();
                    AdminError::check(
                        p.error_code,
                        None,
                        format!("ListOffsets {name}-{}", p.partition_index),
                    )?;
                    out.insert((name, p.partition_index), p.offset);
                }
            }
        }
        Ok(out)
    }

    /// The connection to `node_id`, or the bootstrap connection when the node is unknown (-1,
    /// e.g. a partition without a leader), which then answers with the proper error code.
    pub fn broker_or_bootstrap(&mut self, node_id: i32) -> Result<&mut Conn, AdminError> {
        if node_id < 0 {
            return Ok(&mut self.bootstrap);
        }
        self.broker(node_id)
    }
}

/// An error for a topic-level code in a Metadata answer, naming unknown topics plainly.
pub fn check_topic(code: i16, name: &str) -> Result<(), AdminError> {
    if code == 3 {
        return Err(AdminError::NotFound(format!(
            "unknown topic {name:?} (UNKNOWN_TOPIC_OR_PARTITION)"
        )));
    }
    AdminError::check(code, None, format!("topic {name:?}"))
}

/// Reads the big-endian i16 at the start of `buf` (a versioned embedded struct), if present.
pub fn peek_i16(buf: &Bytes) -> Option<i16> {
    let mut b = buf.clone();
    (b.remaining() >= 2).then(|| b.get_i16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn connect_to_a_closed_port_fails_fast() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = Conn::connect(&addr, Duration::from_millis(500), None)
            .err()
            .unwrap();
        assert!(matches!(e, AdminError::Connect { .. }), "{e}");
    }

    #[test]
    fn a_silent_broker_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let start = Instant::now();
        let e = Conn::connect(&addr, Duration::from_millis(300), None)
            .err()
            .unwrap();
        assert!(matches!(e, AdminError::Timeout { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(20));
        drop(l);
    }

    #[test]
    fn garbage_answers_are_errors_not_panics() {
        for answer in [
            vec![0xff, 0xff, 0xff, 0xff],
            vec![0x7f, 0xff, 0xff, 0xff],
            vec![0, 0, 0, 2, 0, 1],
            vec![0, 0, 0, 4, 0, 0, 0, 1],
            vec![0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0xff, 0xff],
        ] {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap().to_string();
            let server = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(&answer);
            });
            let e = Conn::connect(&addr, Duration::from_millis(2000), None).err();
            assert!(e.is_some());
            server.join().unwrap();
        }
    }
}
