//! Several `sluice` nodes on loopback ports forming one cluster (combined mode: every node a
//! broker and a controller voter, one shard each), optionally with a TCP proxy on every
//! directed link between controller endpoints so tests can cut links. Every wait is bounded.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use super::proxy::Proxy;
use super::raw::Raw;
use super::{Broker, WAIT};

/// Heartbeats and sessions short enough for tests to see fencing quickly.
pub const HEARTBEAT_MS: u64 = 200;
pub const SESSION_MS: u64 = 2000;

pub struct Cluster {
    pub nodes: Vec<Broker>,
    /// `--controller-quorum-voters` as node 0 has it (direct addresses).
    pub voters: String,
    /// `links[(from, to)]`: the proxy node `from` reaches node `to`'s controller through.
    pub links: BTreeMap<(usize, usize), Proxy>,
}

/// A free port below the ephemeral range: a node restarted on it finds it free (a client's
/// source port could otherwise take it meanwhile).
fn free_port() -> SocketAddr {
    super::address_outside_ephemeral_range()
        .parse()
        .expect("addr")
}

impl Cluster {
    /// Starts `n` nodes; with `proxied`, controller traffic goes through cuttable proxies.
    /// A node refuses to start if another process took one of its ports between our probe
    /// and its bind (tests run in parallel): then the whole cluster starts again on new
    /// ports, at most three times.
    pub fn start(n: usize, proxied: bool, extra: &[&str]) -> Cluster {
        for attempt in 1..=3 {
            let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Cluster::start_once(n, proxied, extra)
            }));
            match started {
                Ok(cluster) => return cluster,
                Err(e) if attempt < 3 => {
                    let why = e
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .unwrap_or("a node did not start");
                    eprintln!("cluster start attempt {attempt} failed, retrying: {why}");
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn start_once(n: usize, proxied: bool, extra: &[&str]) -> Cluster {
        let kafka: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
        let controller: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
        let mut links = BTreeMap::new();
        if proxied {
            for from in 0..n {
                for to in (0..n).filter(|t| *t != from) {
                    links.insert((from, to), Proxy::start(controller[to]));
                }
            }
        }
        let mut nodes = Vec::new();
        let mut first_voters = String::new();
        for i in 0..n {
            let voters: Vec<String> = (0..n)
                .map(|j| {
                    let addr = links.get(&(i, j)).map_or(controller[j], |p: &Proxy| p.addr);
                    format!("{j}@{addr}")
                })
                .collect();
            if i == 0 {
                first_voters = voters.join(",");
            }
            let mut args: Vec<String> = [
                "--node-id",
                &i.to_string(),
                "--controller-listen",
                &controller[i].to_string(),
                "--controller-quorum-voters",
                &voters.join(","),
                "--cores",
                "1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            // SLUICE_CLUSTER_DEFAULT_TIMEOUTS=1 keeps the broker's own heartbeat and session
            // defaults (to measure failover as users get it).
            if std::env::var_os("SLUICE_CLUSTER_DEFAULT_TIMEOUTS").is_none() {
                args.extend([
                    "--broker-heartbeat-interval-ms".to_owned(),
                    HEARTBEAT_MS.to_string(),
                    "--broker-session-timeout-ms".to_owned(),
                    SESSION_MS.to_string(),
                ]);
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            nodes.push(Broker::start_at(&kafka[i].to_string(), &args));
        }
        Cluster {
            nodes,
            voters: first_voters,
            links,
        }
    }

    /// Starts a broker-only node (no controller endpoint) as the next node id; its index.
    pub fn add_broker(&mut self) -> usize {
        assert!(self.links.is_empty(), "broker-only nodes are not proxied");
        let id = self.nodes.len();
        let kafka = free_port();
        let args = [
            "--node-id".to_owned(),
            id.to_string(),
            "--controller-quorum-voters".to_owned(),
            self.voters.clone(),
            "--cores".to_owned(),
            "1".to_owned(),
            "--broker-heartbeat-interval-ms".to_owned(),
            HEARTBEAT_MS.to_string(),
            "--broker-session-timeout-ms".to_owned(),
            SESSION_MS.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nodes.push(Broker::start_at(&kafka.to_string(), &args));
        id
    }

    /// Every node's Kafka address, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cuts (or heals) every link to and from node `i`.
    pub fn isolate(&self, i: usize, cut: bool) {
        for ((from, to), p) in &self.links {
            if *from == i || *to == i {
                if cut {
                    p.cut()
                } else {
                    p.heal()
                }
            }
        }
    }

    /// Waits until `check` holds, polling; panics with `what` after twice [`WAIT`], with the
    /// tail of every node's log (a flake must say what the nodes were doing).
    pub fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !check() {
            if start.elapsed() >= WAIT * 2 {
                let mut logs = String::new();
                for (i, node) in self.nodes.iter().enumerate() {
                    let log = node.log();
                    // Without the periodic noise (stall probe), which would fill the tail.
                    let lines: Vec<&str> = log
                        .lines()
                        .filter(|l| !l.contains("reactor stall"))
                        .collect();
                    let tail = &lines[lines.len().saturating_sub(60)..];
                    logs.push_str(&format!(
                        "--- node {i} ({}):\n{}\n",
                        node.addr,
                        tail.join("\n")
                    ));
                }
                panic!("timed out waiting for {what}; last log lines:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// Waits until the nodes in `alive` all report the same active controller (one of
    /// `alive`) and exactly the brokers `alive`; returns the controller.
    pub fn wait_settled(&self, alive: &[usize]) -> i32 {
        let mut controller = -1;
        self.wait_for(
            &format!("nodes {alive:?} to agree on brokers and controller"),
            || {
                let views: Vec<Option<MetadataResponse>> = alive
                    .iter()
                    .map(|i| metadata(&self.nodes[*i].addr))
                    .collect();
                let Some(Some(first)) = views.first() else {
                    return false;
                };
                controller = first.controller_id.0;
                let mut brokers: Vec<i32> = first.brokers.iter().map(|b| b.node_id.0).collect();
                brokers.sort();
                let want: Vec<i32> = alive.iter().map(|i| *i as i32).collect();
                alive.contains(&(controller.max(0) as usize))
                    && controller >= 0
                    && brokers == want
                    && views.iter().all(|v| {
                        v.as_ref().is_some_and(|v| {
                            let mut b: Vec<i32> = v.brokers.iter().map(|b| b.node_id.0).collect();
                            b.sort();
                            v.controller_id.0 == controller && b == want
                        })
                    })
            },
        );
        controller
    }
}

/// Node `addr`'s Metadata for all topics; `None` if it does not answer.
pub fn metadata(addr: &str) -> Option<MetadataResponse> {
    let r = std::panic::catch_unwind(|| {
        let mut raw = Raw::connect(addr);
        raw.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .ok();
        let req = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        raw.call::<_, MetadataResponse>(ApiKey::Metadata, 12, &req)
    });
    r.ok()
}

/// (leader, isr) of `partition` of `topic` as the node at `addr` reports it (the leader is -1
/// while there is none).
pub fn leader_and_isr(addr: &str, topic: &str, partition: i32) -> Option<(i32, Vec<i32>)> {
    let md = metadata(addr)?;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
    let p = t
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)?;
    Some((p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect()))
}

/// (topic name, topic id, partition count) of every topic `addr` knows, sorted.
pub fn topics(addr: &str) -> Option<Vec<(String, [u8; 16], usize)>> {
    let md = metadata(addr)?;
    let mut out: Vec<(String, [u8; 16], usize)> = md
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                *t.topic_id.as_bytes(),
                t.partitions.len(),
            )
        })
        .collect();
    out.sort();
    Some(out)
}
