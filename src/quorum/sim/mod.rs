//! A deterministic simulation of the controller quorum: 3 or 5 voters built with
//! [`build_raft`] (the production Raft: log store, state machine, journal), on the simulator
//! runtime (`crate::runtime::sim`), a simulated network (`net.rs`) and disks (`disk.rs`),
//! under a fault schedule drawn from one seed (`faults.rs`) — crashes (graceful, of the
//! process, or of the machine) and restarts from what the disk made durable, partitions and
//! one-way cuts that heal, message loss and slow links — while clients write admin commands
//! (`workload.rs`). The
//! invariants (`check.rs`) are checked as the run goes; at the end everything heals and the
//! cluster must settle on one image holding every acknowledged write.
//!
//! Owns: the nodes (disk, controller, Raft, task group, incarnation), the fault schedule and
//! the run's parameters. Everything random comes from the seed, so a seed replays exactly
//! (`SLUICE_SIM_SEED=<n> cargo test --lib quorum::sim`); every run is bounded in virtual
//! time, polls and tasks.
//!
//! Determinism: a run's trace (every image applied, with its virtual time, every ack, fault
//! and leader, and the poll count) is the same for the same seed, within a process and across
//! processes. openraft draws its randomness (election timeouts, tick
//! phase) from `AsyncRuntime::thread_rng` and its time from `AsyncRuntime::Instant`, both the
//! simulator's; its `SystemTime` use only formats instants in logs; its `HashMap`s are never
//! iterated on the paths a run takes. The image's `by_id` `HashMap` is not iterated either.
//! Nothing here reads the wall clock, the OS RNG or thread ids.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ServerState};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{build_raft, state_machine, Publish, Raft};
use crate::cluster::image::MetadataImage;
use crate::controller::{Controller, ControllerConfig};
use crate::runtime::sim::{self, Limits};

mod check;
mod disk;
mod faults;
mod net;
mod workload;

use check::Checker;
use disk::Disk;
use net::{Factory, Net, SharedNet};
use workload::Workload;

/// Raft heartbeat in the simulation (elections time out after 3–6 of these).
const HEARTBEAT: Duration = Duration::from_millis(50);
/// Virtual time the cluster gets to settle once everything is healed.
const SETTLE_MAX: Duration = Duration::from_secs(60);

/// One run's shape, drawn from its seed.
#[derive(Debug, Clone)]
pub struct Params {
    pub nodes: u64,
    /// How long clients write and faults strike.
    pub run_for: Duration,
    pub clients: u64,
    pub faults: bool,
    /// Sync latency range of the disks (µs); `None`: durable at once.
    pub slow_disk: Option<(u64, u64)>,
    pub snapshot_every: u64,
}

impl Params {
    pub fn from_seed(seed: u64) -> Params {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
        Params {
            nodes: if rng.random_range(0..4) == 0 { 5 } else { 3 },
            run_for: Duration::from_millis(rng.random_range(2_000..5_000)),
            clients: rng.random_range(1..=3),
            faults: rng.random_range(0..10) != 0,
            slow_disk: (rng.random_range(0..3) != 0).then(|| (50, rng.random_range(100..5_000))),
            snapshot_every: [8, 32, 128, 1024][rng.random_range(0..4)],
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub trace: u64,
    pub acks: usize,
    pub applies: u64,
    pub crashes: u32,
    pub terms_with_two_leaders: usize,
    pub virtual_time: Duration,
    pub steps: u64,
    pub epoch: u64,
    /// Journal ops slow disks wrote, by kind (see `disk::OpCounts`).
    pub ops: [u64; 6],
    pub snapshots_installed: u64,
    pub messages_lost: u64,
}

/// How a node goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Raft shut down, then the process ends.
    Graceful,
    /// The process dies at once.
    Hard,
    /// The machine dies: unsynced writes are lost too.
    PowerLoss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Down,
    Starting,
    Running,
}

struct Node {
    disk: Disk,
    controller: Rc<RefCell<Controller>>,
    raft: Option<Raft>,
    group: u64,
    incarnation: u32,
    life: Life,
}

/// The simulated cluster.
pub struct Cluster {
    params: Params,
    nodes: RefCell<BTreeMap<u64, Node>>,
    net: SharedNet,
    checker: Rc<RefCell<Checker>>,
    workload: RefCell<Workload>,
    rng: RefCell<SmallRng>,
    stop: Cell<bool>,
    crashes: Cell<u32>,
    ops: disk::OpCounts,
}

fn controller_config() -> ControllerConfig {
    ControllerConfig {
        default_partitions: 1,
        default_replication_factor: 1,
        brokers: vec![1],
        min_insync_replicas: 1,
    }
}

impl Cluster {
    fn new(seed: u64, params: Params) -> Rc<Cluster> {
        let ops = disk::OpCounts::default();
        let nodes = (1..=params.nodes)
            .map(|id| {
                let node = Node {
                    disk: Disk::new(params.slow_disk, ops.clone()),
                    controller: Rc::new(RefCell::new(Controller::new(
                        controller_config(),
                        MetadataImage::default(),
                    ))),
                    raft: None,
                    group: 0,
                    incarnation: 0,
                    life: Life::Down,
                };
                (id, node)
            })
            .collect();
        Rc::new(Cluster {
            params,
            nodes: RefCell::new(nodes),
            net: Net::new(seed ^ 0x7e7),
            checker: Rc::new(RefCell::new(Checker::new(seed))),
            workload: RefCell::new(Workload::new(seed ^ 0x30b)),
            rng: RefCell::new(SmallRng::seed_from_u64(seed)),
            stop: Cell::new(false),
            crashes: Cell::new(0),
            ops,
        })
    }

    pub fn stopping(&self) -> bool {
        self.stop.get()
    }

    pub fn draw(&self, range: Range<u64>) -> u64 {
        self.rng.borrow_mut().random_range(range)
    }

    pub fn event(&self, tag: &str, values: &[u64]) {
        let mut v = vec![sim::elapsed().as_micros() as u64];
        v.extend_from_slice(values);
        self.checker.borrow_mut().event(tag, &v);
    }

    fn ids(&self) -> Vec<u64> {
        self.nodes.borrow().keys().copied().collect()
    }

    fn raft(&self, id: u64) -> Option<Raft> {
        self.nodes.borrow().get(&id).and_then(|n| n.raft.clone())
    }

    /// The node some live node believes leads, if it is up: its id, Raft and controller.
    pub fn leader_handles(&self) -> Option<(u64, Raft, Rc<RefCell<Controller>>)> {
        let ids: Vec<u64> = self
            .nodes
            .borrow()
            .iter()
            .filter(|(_, n)| n.raft.is_some())
            .map(|(id, _)| *id)
            .collect();
        let asked = *ids.get(self.draw(0..ids.len().max(1) as u64) as usize)?;
        let leader = self
            .raft(asked)?
            .metrics()
            .borrow_watched()
            .current_leader?;
        let nodes = self.nodes.borrow();
        let n = nodes.get(&leader)?;
        Some((leader, n.raft.clone()?, n.controller.clone()))
    }

    /// Starts node `id` from its disk (a restart if it ran before).
    async fn start(self: &Rc<Self>, id: u64) {
        let (durable, journal, controller, publish, group, pristine) = {
            let mut nodes = self.nodes.borrow_mut();
            let Some(n) = nodes.get_mut(&id) else { return };
            if n.life != Life::Down {
                return;
            }
            n.life = Life::Starting;
            n.incarnation += 1;
            n.group = sim::new_group();
            let durable = n.disk.durable();
            let image = match &durable.snapshot {
                Some((_, data)) => state_machine::snapshot_image(data)
                    .unwrap_or_else(|e| self.checker.borrow().fail(&format!("snapshot: {e}"))),
                None => MetadataImage::default(),
            };
            n.controller = Rc::new(RefCell::new(Controller::new(controller_config(), image)));
            let journal = n.disk.journal(n.group, self.draw(0..u64::MAX));
            let (checker, incarnation) = (self.checker.clone(), n.incarnation);
            // Shards take a while to take an image, sometimes.
            let delays = RefCell::new(SmallRng::seed_from_u64(self.draw(0..u64::MAX)));
            let publish: Publish = Rc::new(move |image: Arc<MetadataImage>| {
                checker.borrow_mut().applied(id, incarnation, &image);
                let mut rng = delays.borrow_mut();
                let pause = (rng.random_range(0..10) < 3)
                    .then(|| Duration::from_micros(rng.random_range(10..5_000)));
                async move {
                    if let Some(p) = pause {
                        sim::sleep(p).await;
                    }
                    Vec::new()
                }
                .boxed_local()
            });
            let pristine = n.disk.is_pristine();
            (
                durable,
                journal,
                n.controller.clone(),
                publish,
                n.group,
                pristine,
            )
        };
        self.event("start", &[id]);
        let factory = Factory {
            from: id,
            net: self.net.clone(),
        };
        let snapshot_every = self.params.snapshot_every;
        let built = sim::spawn_in(group, async move {
            build_raft(
                id as i32,
                HEARTBEAT,
                snapshot_every,
                factory,
                &durable,
                journal,
                controller,
                publish,
            )
            .await
        })
        .await;
        let raft = match built {
            Ok(Ok(raft)) => raft,
            Ok(Err(e)) => self
                .checker
                .borrow()
                .fail(&format!("node {id} failed to start: {e}")),
            Err(e) => self.checker.borrow().fail(&format!("node {id}: {e}")),
        };
        if let Some(n) = self.nodes.borrow_mut().get_mut(&id) {
            n.raft = Some(raft.clone());
            n.life = Life::Running;
        }
        self.net.borrow_mut().up(id, raft.clone());
        if pristine {
            // As `Quorum::bootstrap` does on every voter whose journal was empty.
            let members: BTreeMap<u64, BasicNode> = self
                .ids()
                .into_iter()
                .map(|i| (i, BasicNode::new(format!("node-{i}"))))
                .collect();
            drop(sim::spawn_in(group, async move {
                let _ = raft.initialize(members).await;
            }));
        }
    }

    /// Crashes node `id`: gracefully (Raft shut down first) or not, then every task of it is
    /// dropped; only its disk survives (less its unsynced writes, on a power loss).
    async fn crash(&self, id: u64, how: Crash) {
        let (raft, group) = {
            let mut nodes = self.nodes.borrow_mut();
            let Some(n) = nodes.get_mut(&id) else { return };
            if n.life != Life::Running {
                return;
            }
            n.life = Life::Down;
            (n.raft.take(), n.group)
        };
        self.net.borrow_mut().down(id);
        self.crashes.set(self.crashes.get() + 1);
        self.event("crash", &[id, how as u64]);
        if let (Some(raft), Crash::Graceful) = (&raft, how) {
            let _ = sim::timeout(Duration::from_secs(5), raft.shutdown()).await;
        }
        sim::kill_group(group);
        if let Some(n) = self.nodes.borrow().get(&id) {
            n.disk.crashed(how == Crash::PowerLoss);
        }
    }

    /// Checked between every two polls: leaders were granted by a quorum of durable votes.
    fn check_step(&self) {
        let nodes = self.nodes.borrow();
        let mut leaders = Vec::new();
        for (id, n) in nodes.iter() {
            if let Some(raft) = &n.raft {
                let m = raft.metrics();
                let m = m.borrow_watched();
                if m.state == ServerState::Leader {
                    leaders.push((*id, m.vote));
                }
            }
        }
        if leaders.is_empty() {
            return;
        }
        let votes: Vec<_> = nodes.values().map(|n| n.disk.durable_vote()).collect();
        let mut checker = self.checker.borrow_mut();
        for (id, vote) in leaders {
            checker.leading(id, &vote, &votes);
        }
    }

    fn check_logs(&self) {
        let disks: Vec<_> = self
            .nodes
            .borrow()
            .iter()
            .map(|(id, n)| (*id, n.disk.durable()))
            .collect();
        self.checker.borrow().logs_match(&disks);
    }

    /// Every node is up, agrees on one leader, and has applied everything that leader holds.
    fn settled(&self) -> bool {
        let nodes = self.nodes.borrow();
        let mut leader = None;
        let mut applied = Vec::new();
        for n in nodes.values() {
            let Some(raft) = &n.raft else { return false };
            let m = raft.metrics().borrow_watched().clone();
            if m.current_leader.is_none() || (leader.is_some() && leader != m.current_leader) {
                return false;
            }
            leader = m.current_leader;
            applied.push(m.last_applied.map(|l| l.index));
        }
        let Some(l) = leader
            .and_then(|l| nodes.get(&l))
            .and_then(|n| n.raft.clone())
        else {
            return false;
        };
        let m = l.metrics().borrow_watched().clone();
        m.state == ServerState::Leader
            && m.local_committed.map(|c| c.index) == m.last_log_index
            && applied.iter().all(|a| *a == m.last_log_index)
    }

    /// The whole run: start, write under faults, heal, settle, check.
    async fn run(self: Rc<Self>) -> Outcome {
        for id in self.ids() {
            self.start(id).await;
        }
        let clients: Vec<_> = (0..self.params.clients)
            .map(|c| sim::spawn(workload::client(self.clone(), c)))
            .collect();
        let end = sim::now() + self.params.run_for;
        if self.params.faults {
            self.clone().faults().await;
        }
        sim::sleep_until(end).await;
        self.stop.set(true);
        for c in clients {
            let _ = c.await;
        }
        self.check_logs();
        // Heal everything and bring every node back.
        {
            let mut net = self.net.borrow_mut();
            net.heal_all();
            net.loss_permille = 0;
            net.latency_us = (100, 2_000);
        }
        self.event("heal", &[]);
        let settle_by = sim::now() + SETTLE_MAX;
        loop {
            for id in self.ids() {
                self.start(id).await;
            }
            if self.settled() {
                break;
            }
            if sim::now() > settle_by {
                self.checker
                    .borrow()
                    .fail(&format!("no settled cluster {SETTLE_MAX:?} after healing"));
            }
            sim::sleep(Duration::from_millis(100)).await;
        }
        self.check_logs();
        let images: Vec<(u64, Arc<MetadataImage>)> = self
            .nodes
            .borrow()
            .iter()
            .map(|(id, n)| (*id, Arc::new(n.controller.borrow().image().clone())))
            .collect();
        self.checker.borrow().converged(&images);
        let epoch = images.first().map_or(0, |(_, i)| i.epoch);
        self.event("settled", &[epoch, sim::steps()]);
        // Stop every node (their tasks would otherwise outlive the run).
        for id in self.ids() {
            self.crash(id, Crash::Graceful).await;
        }
        let checker = self.checker.borrow();
        Outcome {
            trace: checker.trace(),
            acks: checker.acks().len(),
            applies: checker.applies,
            crashes: self.crashes.get(),
            terms_with_two_leaders: checker.leaders.values().filter(|l| l.len() > 1).count(),
            virtual_time: sim::elapsed(),
            steps: sim::steps(),
            epoch,
            ops: *self.ops.borrow(),
            snapshots_installed: self.net.borrow().snapshots_installed,
            messages_lost: self.net.borrow().dropped,
        }
    }
}

/// Virtual time, polls and tasks a run may use.
fn limits(params: &Params) -> Limits {
    Limits {
        max_time: params.run_for + SETTLE_MAX + Duration::from_secs(30),
        max_steps: 5_000_000,
        max_tasks: 5_000,
    }
}

/// Runs the simulation of `seed`; panics (naming the seed) on a violated invariant or a
/// run that passed its limits.
pub fn run_seed(seed: u64) -> Outcome {
    let params = Params::from_seed(seed);
    let limits = limits(&params);
    let cluster = Cluster::new(seed, params);
    let hook_cluster = Rc::downgrade(&cluster);
    sim::run(seed, limits, async move {
        sim::set_step_hook(Some(Rc::new(move || {
            if let Some(c) = hook_cluster.upgrade() {
                c.check_step();
            }
        })));
        cluster.run().await
    })
    .unwrap_or_else(|e| panic!("simulation seed {seed}: {e}"))
}

mod tests;
