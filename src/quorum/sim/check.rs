//! The simulation's invariants, and the trace whose hash shows a run repeats.
//!
//! Checked as things happen (each failure panics with the seed):
//! - one history: every image any node applies, at epoch `e`, has the fingerprint every
//!   other image at `e` had (whichever node, incarnation or path — entries or snapshot);
//! - within one incarnation a node's applied epoch never goes back (a restart starts again
//!   from its snapshot and must re-apply the same history, which the first check covers);
//! - an acknowledged write holds in every image at or past its last offset, on every node,
//!   before and after restarts (its effect is a monotone predicate, see [`Expect`]);
//! - a leader's term was granted by a majority: a quorum of durable votes is at or past the
//!   leader's (so a vote is durable before it is granted);
//! - log matching on the disks (after every fault and at the end): the same log id is the
//!   same entry, with the same entries before it; committed prefixes agree.
//!
//! Not checked: "at most one leader per term". The quorum uses openraft's default leader id
//! (`leader_id_adv`: a leader is a (term, node) pair, totally ordered), under which two nodes
//! may both be elected in one term — the later, higher (term, node) one wins votes the
//! earlier got — and that is safe: log ids carry the node, so their entries never collide.
//! Runs count such terms ([`Checker::leaders`]); the quorum-of-durable-votes check above is
//! the election safety that holds.
//!
//! And at the end: every node converged on one image, holding every acknowledged write.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::cluster::image::MetadataImage;
use crate::quorum::journal::Durable;
use crate::quorum::Vote;

/// What an acknowledged write guarantees from its last offset on. Each is monotone under the
/// workload: names are never reused, only `tmp-` topics are deleted, keys are only set.
#[derive(Debug, Clone)]
pub enum Expect {
    Topic {
        name: String,
        id: [u8; 16],
    },
    Config {
        topic: String,
        key: String,
        value: String,
    },
    ProducerIdsAtLeast(i64),
    PartitionsAtLeast {
        topic: String,
        count: i32,
    },
    Gone {
        name: String,
    },
    /// No lasting effect to check (broker state changes, `tmp-` topics).
    Nothing,
}

impl Expect {
    fn holds(&self, image: &MetadataImage) -> bool {
        match self {
            Expect::Topic { name, id } => image.topic(name).is_some_and(|t| t.id == *id),
            Expect::Config { topic, key, value } => image
                .topic(topic)
                .and_then(|t| t.configs.get(key))
                .is_some_and(|v| v == value),
            Expect::ProducerIdsAtLeast(n) => image.producer_id_block_end >= *n,
            Expect::PartitionsAtLeast { topic, count } => image
                .topic(topic)
                .is_some_and(|t| t.partition_count() >= *count),
            Expect::Gone { name } => image.topic(name).is_none(),
            Expect::Nothing => true,
        }
    }
}

/// An acknowledged write.
#[derive(Debug, Clone)]
pub struct Ack {
    pub node: u64,
    pub last_offset: u64,
    pub expect: Expect,
}

/// A node's latest applied image.
struct Seen {
    incarnation: u32,
    image: Arc<MetadataImage>,
}

/// FNV-1a, 64 bits: stable across runs and builds (std's hashers promise neither).
pub fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// [`fnv`] as a `Hasher`.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv(self.0, bytes);
    }
}

/// An image's identity: every field of it, hashed (cheap enough to take at every apply; the
/// end compares whole images as records).
pub fn fingerprint(image: &MetadataImage) -> u64 {
    let MetadataImage {
        cluster_id,
        epoch,
        topics,
        producer_id_block_end,
        brokers,
        ..
    } = image;
    let mut h = Fnv(FNV_START);
    (cluster_id, epoch, producer_id_block_end).hash(&mut h);
    for (name, t) in topics {
        (name, &t.name, t.id, &t.configs, t.internal).hash(&mut h);
        for p in &t.partitions {
            let (r, i) = (&p.replicas, &p.isr);
            (r, i, p.leader, p.leader_epoch, p.partition_epoch).hash(&mut h);
        }
    }
    for (id, b) in brokers {
        let r = &b.record;
        (
            id,
            r.id,
            r.incarnation,
            &r.host,
            r.port,
            &r.rack,
            b.epoch,
            b.fenced,
        )
            .hash(&mut h);
    }
    h.finish()
}

pub struct Checker {
    seed: u64,
    history: BTreeMap<u64, u64>,
    latest: BTreeMap<u64, Seen>,
    acks: Vec<Ack>,
    trace: u64,
    /// Nodes seen leading, per term.
    pub leaders: BTreeMap<u64, BTreeSet<u64>>,
    pub applies: u64,
}

impl Checker {
    pub fn new(seed: u64) -> Checker {
        Checker {
            seed,
            history: BTreeMap::new(),
            latest: BTreeMap::new(),
            acks: Vec::new(),
            trace: FNV_START,
            leaders: BTreeMap::new(),
            applies: 0,
        }
    }

    pub fn fail(&self, what: &str) -> ! {
        panic!("simulation seed {}: invariant violated: {what}", self.seed)
    }

    /// Mixes an event into the trace.
    pub fn event(&mut self, tag: &str, values: &[u64]) {
        self.trace = fnv(self.trace, tag.as_bytes());
        for v in values {
            self.trace = fnv(self.trace, &v.to_be_bytes());
        }
    }

    pub fn trace(&self) -> u64 {
        self.trace
    }

    pub fn acks(&self) -> &[Ack] {
        &self.acks
    }

    /// Node `node` (incarnation `incarnation`) applied `image`.
    pub fn applied(&mut self, node: u64, incarnation: u32, image: &Arc<MetadataImage>) {
        let fp = fingerprint(image);
        let epoch = image.epoch;
        self.applies += 1;
        let at = crate::runtime::sim::elapsed().as_nanos() as u64;
        self.event("apply", &[at, node, u64::from(incarnation), epoch, fp]);
        match self.history.get(&epoch) {
            Some(seen) if *seen != fp => self.fail(&format!(
                "node {node} applied an image at epoch {epoch} unlike the one applied there before \
                 (fingerprint {fp:x}, was {seen:x})"
            )),
            Some(_) => {}
            None => {
                self.history.insert(epoch, fp);
            }
        }
        if let Some(prev) = self.latest.get(&node) {
            if prev.incarnation == incarnation && epoch < prev.image.epoch {
                self.fail(&format!(
                    "node {node} went back from epoch {} to {epoch} without a restart",
                    prev.image.epoch
                ));
            }
        }
        for ack in &self.acks {
            if ack.last_offset <= epoch && !ack.expect.holds(image) {
                self.fail(&format!(
                    "node {node} at epoch {epoch} lost a write acknowledged at offset {}: {:?}",
                    ack.last_offset, ack.expect
                ));
            }
        }
        self.latest.insert(
            node,
            Seen {
                incarnation,
                image: image.clone(),
            },
        );
    }

    /// A write was acknowledged.
    pub fn acked(&mut self, ack: Ack) {
        self.event("ack", &[ack.node, ack.last_offset]);
        if !self.history.contains_key(&ack.last_offset) {
            self.fail(&format!(
                "a write was acknowledged at offset {} that no node applied",
                ack.last_offset
            ));
        }
        for (node, seen) in &self.latest {
            if ack.last_offset <= seen.image.epoch && !ack.expect.holds(&seen.image) {
                self.fail(&format!(
                    "node {node} at epoch {} lacks a write acknowledged at offset {}: {:?}",
                    seen.image.epoch, ack.last_offset, ack.expect
                ));
            }
        }
        self.acks.push(ack);
    }

    /// `leader` leads with `vote`; `votes` are every node's durable votes.
    pub fn leading(&mut self, leader: u64, vote: &Vote, votes: &[Option<Vote>]) {
        let term = vote.leader_id().term;
        if self.leaders.entry(term).or_default().insert(leader) {
            self.event("leader", &[term, leader]);
        }
        let at_or_past = votes
            .iter()
            .flatten()
            .filter(|v| v.leader_id() >= vote.leader_id())
            .count();
        if at_or_past * 2 <= votes.len() {
            self.fail(&format!(
                "node {leader} leads with vote {vote} but only {at_or_past} of {} durable votes \
                 are at or past it",
                votes.len()
            ));
        }
    }

    /// Raft's log properties on the nodes' disks: entries with the same log id are the same
    /// entry, and so are all entries before them (log matching); entries up to a node's own
    /// commit point agree with every other node's up to its commit point.
    pub fn logs_match(&self, disks: &[(u64, Durable)]) {
        let fail = |what: String| -> ! {
            let mut why = what;
            for (node, d) in disks {
                let ids: Vec<String> = d.log.values().map(|e| e.log_id.to_string()).collect();
                why.push_str(&format!(
                    "\n  node {node}: vote {:?}, committed {:?}, purged {:?}, snapshot {:?}, log [{}]",
                    d.vote.map(|v| v.to_string()),
                    d.committed.map(|c| c.to_string()),
                    d.last_purged.map(|p| p.to_string()),
                    d.snapshot.as_ref().map(|(m, _)| m.last_log_id.map(|l| l.to_string())),
                    ids.join(" ")
                ));
            }
            self.fail(&why)
        };
        let mut by_id = BTreeMap::new();
        let mut committed = BTreeMap::new();
        for (node, d) in disks {
            // Nothing is committed before the first commit point.
            let commit = d.committed.map(|c| c.index);
            for (index, e) in &d.log {
                if let Some((other, o)) = by_id.insert(e.log_id, (*node, e)) {
                    if o != e {
                        fail(format!(
                            "nodes {other} and {node} hold different entries with log id {}",
                            e.log_id
                        ));
                    }
                }
                if commit.is_some_and(|c| *index <= c) {
                    if let Some((other, id)) = committed.insert(*index, (*node, e.log_id)) {
                        if id != e.log_id {
                            fail(format!(
                                "nodes {other} and {node} committed different entries at index \
                                 {index}: {id} and {}",
                                e.log_id
                            ));
                        }
                    }
                }
            }
        }
        for (i, (a, da)) in disks.iter().enumerate() {
            for (b, db) in &disks[i + 1..] {
                let common = da
                    .log
                    .iter()
                    .rev()
                    .find(|(index, e)| db.log.get(index).is_some_and(|o| o.log_id == e.log_id));
                let Some((upto, _)) = common else { continue };
                for (index, e) in da.log.range(..=upto) {
                    if db.log.get(index).is_some_and(|o| o.log_id != e.log_id) {
                        fail(format!(
                            "nodes {a} and {b} share the entry at {upto} but differ at {index}"
                        ));
                    }
                }
            }
        }
    }

    /// The end: `images` (every node's, healed and settled) are one image that holds every
    /// acknowledged write.
    pub fn converged(&self, images: &[(u64, Arc<MetadataImage>)]) {
        let Some((first, image)) = images.first() else {
            return;
        };
        let records = image.records();
        for (node, other) in images {
            if other.epoch != image.epoch || other.records() != records {
                self.fail(&format!(
                    "after healing, nodes {first} (epoch {}) and {node} (epoch {}) differ",
                    image.epoch, other.epoch
                ));
            }
        }
        for ack in &self.acks {
            if ack.last_offset > image.epoch || !ack.expect.holds(image) {
                self.fail(&format!(
                    "after healing, the image (epoch {}) lacks a write acknowledged at offset {}: \
                     {:?}",
                    image.epoch, ack.last_offset, ack.expect
                ));
            }
        }
    }
}
