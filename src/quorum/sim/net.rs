//! The simulated network between voters: a [`Transport`] for the production Raft client
//! (`network::RaftClient`), handing the production `Request`s to the target node's [`Raft`]
//! through the production dispatch (`network::answer`) after seeded delays. Only the wire is
//! simulated: requests are not serialised.
//!
//! It owns the live nodes' Raft handles, the cuts (directed pairs that cannot talk: a partition
//! is cuts both ways, a one-way cut one direction; cuts are counted, so overlapping faults heal
//! independently), the loss rate and the latency range, and its own RNG stream.
//!
//! A request takes a drawn latency; then, if it was lost, the link from→to is cut, or the
//! target is down, the caller waits out the RPC's deadline and gets `Unreachable` (as TCP
//! would time out). A crashed target answers `Unreachable` after the latency (refused). The
//! response takes its own latency and can be lost or cut the other way too — the target
//! then has acted on a request whose caller never learns of it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use openraft::error::{RPCError, Unreachable};
use openraft::network::RPCOption;
use openraft::{BasicNode, RaftNetworkFactory};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::quorum::network::{answer, RaftClient, Request, Response, Transport};
use crate::quorum::{Raft, TypeConfig};
use crate::runtime::sim;

/// The network's state (shared by every node's factory and the fault schedule).
pub struct Net {
    rafts: BTreeMap<u64, Raft>,
    cuts: BTreeMap<(u64, u64), u32>,
    /// Loss per message, in parts per thousand.
    pub loss_permille: u32,
    /// One-way latency range, in microseconds.
    pub latency_us: (u64, u64),
    rng: SmallRng,
    pub delivered: u64,
    pub dropped: u64,
    /// Snapshots a node installed from another.
    pub snapshots_installed: u64,
}

pub type SharedNet = Rc<RefCell<Net>>;

impl Net {
    pub fn new(seed: u64) -> SharedNet {
        Rc::new(RefCell::new(Net {
            rafts: BTreeMap::new(),
            cuts: BTreeMap::new(),
            loss_permille: 0,
            latency_us: (100, 2_000),
            rng: SmallRng::seed_from_u64(seed),
            delivered: 0,
            dropped: 0,
            snapshots_installed: 0,
        }))
    }

    /// `node` is up and serves RPCs with `raft`.
    pub fn up(&mut self, node: u64, raft: Raft) {
        self.rafts.insert(node, raft);
    }

    /// `node` is down: RPCs to it fail.
    pub fn down(&mut self, node: u64) -> Option<Raft> {
        self.rafts.remove(&node)
    }

    pub fn raft(&self, node: u64) -> Option<Raft> {
        self.rafts.get(&node).cloned()
    }

    /// Cuts `from → to` (once more).
    pub fn cut(&mut self, from: u64, to: u64) {
        *self.cuts.entry((from, to)).or_default() += 1;
    }

    /// Undoes one [`Net::cut`] of `from → to`.
    pub fn heal(&mut self, from: u64, to: u64) {
        if let Some(n) = self.cuts.get_mut(&(from, to)) {
            *n -= 1;
            if *n == 0 {
                self.cuts.remove(&(from, to));
            }
        }
    }

    pub fn heal_all(&mut self) {
        self.cuts.clear();
    }

    fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cuts.contains_key(&(from, to))
    }

    /// One message's latency, and whether it is lost.
    fn draw(&mut self) -> (Duration, bool) {
        let (lo, hi) = self.latency_us;
        let latency = Duration::from_micros(self.rng.random_range(lo..=hi.max(lo)));
        let lost = self.rng.random_range(0..1000) < self.loss_permille;
        if lost {
            self.dropped += 1;
        } else {
            self.delivered += 1;
        }
        (latency, lost)
    }
}

/// Makes the Raft clients of one node.
pub(crate) struct Factory {
    pub from: u64,
    pub net: SharedNet,
}

impl RaftNetworkFactory<TypeConfig> for Factory {
    type Network = RaftClient<Peer>;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> RaftClient<Peer> {
        RaftClient(Peer {
            from: self.from,
            to: target,
            net: self.net.clone(),
        })
    }
}

/// One node's client of another.
pub struct Peer {
    from: u64,
    to: u64,
    net: SharedNet,
}

/// Why an RPC failed.
enum Failure {
    /// No answer (lost, cut, target down, or too slow).
    Unreachable(&'static str),
}

impl Peer {
    async fn call(&self, req: Request, ttl: Duration) -> Result<Response, Failure> {
        let deadline = sim::now() + ttl;
        let (latency, lost) = self.net.borrow_mut().draw();
        sim::sleep(latency).await;
        let target = {
            let net = self.net.borrow();
            if lost || net.is_cut(self.from, self.to) {
                None
            } else {
                Some(net.raft(self.to))
            }
        };
        let raft = match target {
            None => {
                sim::sleep_until(deadline).await;
                return Err(Failure::Unreachable("no answer in time"));
            }
            Some(None) => return Err(Failure::Unreachable("connection refused")),
            Some(Some(raft)) => raft,
        };
        let resp = match sim::timeout_at(deadline, answer(&raft, req)).await {
            Err(_) => return Err(Failure::Unreachable("no answer in time")),
            Ok(resp) => resp,
        };
        let (latency, lost) = self.net.borrow_mut().draw();
        sim::sleep(latency).await;
        if lost || self.net.borrow().is_cut(self.to, self.from) || sim::now() > deadline {
            sim::sleep_until(deadline).await;
            return Err(Failure::Unreachable("the answer was lost"));
        }
        Ok(resp)
    }
}

impl Transport for Peer {
    async fn send(
        &mut self,
        req: Request,
        option: RPCOption,
    ) -> Result<Response, RPCError<TypeConfig>> {
        let resp =
            self.call(req, option.hard_ttl())
                .await
                .map_err(|Failure::Unreachable(why)| {
                    RPCError::Unreachable(Unreachable::new(&io::Error::other(why)))
                })?;
        if matches!(resp, Response::Snapshot(_)) {
            self.net.borrow_mut().snapshots_installed += 1;
        }
        Ok(resp)
    }
}
