//! Broker liveness as the active controller sees it: heartbeats in, fence/unfence commands
//! out. Pure: the clock comes in with every event, and the commands go through the
//! controller like any other. Kafka's rules (KIP-631): a registered broker starts fenced; it is
//! unfenced once it heartbeats having caught up with the metadata log up to its registration;
//! it is fenced when no heartbeat arrives for the session timeout, or when it asks to shut
//! down (controlled shutdown), after which heartbeats do not unfence it again.
//!
//! Two shortcuts past the session timeout, for fast failover: a broker whose heartbeat
//! connection closed (a crashed process's sockets close at once) and that does not heartbeat
//! again within one and a half heartbeat intervals is fenced; and after a controller change,
//! a broker that has not heartbeated to the new controller within as long is fenced (a broker
//! that died with the old controller never will). A paused or cut-off broker keeps its
//! connections open and is fenced by the session timeout.

use std::collections::{BTreeMap, BTreeSet};

use super::Command;
use crate::cluster::image::MetadataImage;
use crate::cluster::record::BrokerRecord;

/// What a heartbeat tells the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Its registration is unknown or was replaced: register again.
    Unknown,
    /// Registered; `fenced` as the image says now.
    Known { fenced: bool },
}

/// Heartbeats of the registered brokers.
#[derive(Debug, Default)]
pub struct Liveness {
    session_timeout_ms: u64,
    heartbeat_interval_ms: u64,
    /// Broker → time of its last heartbeat (this controller's clock).
    last: BTreeMap<i32, u64>,
    /// Broker → the registration epoch its heartbeats carry.
    sessions: BTreeMap<i32, u64>,
    /// Broker → when a connection that carried its heartbeats closed, until it heartbeats
    /// again.
    lost: BTreeMap<i32, u64>,
    /// Brokers that have not heartbeated to this controller since it became active.
    unconfirmed: BTreeSet<i32>,
    /// Brokers (and the epoch) that asked to shut down.
    leaving: BTreeMap<i32, u64>,
}

impl Liveness {
    pub fn new(session_timeout_ms: u64, heartbeat_interval_ms: u64) -> Liveness {
        Liveness {
            session_timeout_ms,
            heartbeat_interval_ms,
            ..Liveness::default()
        }
    }

    /// This controller just became active: every registered broker gets a session from now
    /// (heartbeats went to the previous one), cut short if it does not heartbeat here soon.
    pub fn reset(&mut self, now: u64, image: &MetadataImage) {
        self.last = image.brokers.keys().map(|id| (*id, now)).collect();
        self.unconfirmed = image.brokers.keys().copied().collect();
        self.sessions.clear();
        self.lost.clear();
        self.leaving.clear();
    }

    /// A connection that carried heartbeats of registration `epoch` closed.
    pub fn on_connection_closed(&mut self, now: u64, epoch: u64) {
        if let Some((&id, _)) = self.sessions.iter().find(|(_, e)| **e == epoch) {
            self.lost.insert(id, now);
        }
    }

    /// A heartbeat of broker `id` at registration `epoch` whose image is at `applied`. The
    /// command to run, if any (unfence), and the answer.
    pub fn on_heartbeat(
        &mut self,
        now: u64,
        image: &MetadataImage,
        id: i32,
        epoch: u64,
        applied: u64,
    ) -> (Option<Command>, Beat) {
        let Some(b) = image.brokers.get(&id).filter(|b| b.epoch == epoch) else {
            return (None, Beat::Unknown);
        };
        self.last.insert(id, now);
        self.sessions.insert(id, epoch);
        self.lost.remove(&id);
        self.unconfirmed.remove(&id);
        let leaving = self.leaving.get(&id) == Some(&epoch);
        let unfence = b.fenced && !leaving && applied >= b.epoch;
        let cmd = unfence.then_some(Command::UnfenceBroker { id });
        (cmd, Beat::Known { fenced: b.fenced })
    }

    /// Broker `id` at `epoch` shuts down: fence it and keep it fenced.
    pub fn on_shutdown(&mut self, image: &MetadataImage, id: i32, epoch: u64) -> Option<Command> {
        image.brokers.get(&id).filter(|b| b.epoch == epoch)?;
        self.leaving.insert(id, epoch);
        Some(Command::FenceBroker {
            id,
            epoch: Some(epoch),
        })
    }

    /// Whether `record` may register now. Kafka refuses a new incarnation of a broker id whose
    /// current registration is unfenced and still heartbeating (DUPLICATE_BROKER_REGISTRATION):
    /// two processes with one id must not replace each other. A crashed broker's session
    /// expires; one that shut down cleanly is fenced already.
    pub fn may_register(&self, now: u64, image: &MetadataImage, record: &BrokerRecord) -> bool {
        match image.brokers.get(&record.id) {
            Some(b) if !b.fenced && b.record.incarnation != record.incarnation => self
                .last
                .get(&record.id)
                .is_none_or(|last| now.saturating_sub(*last) > self.session_timeout_ms),
            _ => true,
        }
    }

    /// A registration happened: its session starts now.
    pub fn on_registered(&mut self, now: u64, id: i32) {
        self.last.insert(id, now);
        self.leaving.remove(&id);
        self.lost.remove(&id);
        self.unconfirmed.remove(&id);
    }

    /// Unfenced brokers whose session expired.
    pub fn on_tick(&mut self, now: u64, image: &MetadataImage) -> Vec<Command> {
        image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let id = b.record.id;
                let last = *self.last.entry(id).or_insert(now);
                let beat = self.heartbeat_interval_ms;
                let silent = now.saturating_sub(last);
                // A live broker whose connection closed heartbeats again on a new one within
                // an interval; one that never heard of this controller finds it within one
                // too (voters from their Raft, broker-only nodes by asking the voters).
                silent > self.session_timeout_ms
                    || self
                        .lost
                        .get(&id)
                        .is_some_and(|t| now.saturating_sub(*t) > beat * 3 / 2)
                    || (self.unconfirmed.contains(&id)
                        && silent > (beat * 3 / 2).min(self.session_timeout_ms))
            })
            .map(|b| Command::FenceBroker {
                id: b.record.id,
                epoch: Some(b.epoch),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::record::MetadataRecord;

    fn image_with(id: i32, fenced: bool) -> MetadataImage {
        let mut image = MetadataImage::default();
        let record = BrokerRecord {
            id,
            incarnation: [1; 16],
            host: "h".into(),
            port: 1,
            rack: None,
            listeners: Vec::new(),
        };
        image
            .apply(5, &MetadataRecord::RegisterBroker(record))
            .unwrap();
        if !fenced {
            image
                .apply(6, &MetadataRecord::UnfenceBroker { id, epoch: 5 })
                .unwrap();
        }
        image
    }

    #[test]
    fn unfences_caught_up_brokers_and_fences_silent_ones() {
        let mut l = Liveness::new(100, 10);
        let fenced = image_with(1, true);
        assert_eq!(
            l.on_heartbeat(0, &fenced, 1, 4, 9).1,
            Beat::Unknown,
            "old epoch"
        );
        assert_eq!(
            l.on_heartbeat(0, &fenced, 2, 5, 9).1,
            Beat::Unknown,
            "unknown id"
        );
        let (cmd, beat) = l.on_heartbeat(0, &fenced, 1, 5, 4);
        assert!(cmd.is_none(), "not caught up with its own registration");
        assert_eq!(beat, Beat::Known { fenced: true });
        let (cmd, _) = l.on_heartbeat(10, &fenced, 1, 5, 5);
        assert!(matches!(cmd, Some(Command::UnfenceBroker { id: 1 })));

        let live = image_with(1, false);
        assert!(l.on_tick(110, &live).is_empty(), "within the session");
        let fence = l.on_tick(111, &live);
        assert!(matches!(
            fence[..],
            [Command::FenceBroker {
                id: 1,
                epoch: Some(5)
            }]
        ));
        l.reset(200, &live);
        l.on_heartbeat(230, &live, 1, 5, 9);
        assert!(
            l.on_tick(300, &live).is_empty(),
            "a new controller gives a full session to brokers that heartbeat to it"
        );
    }

    #[test]
    fn closed_connections_and_silence_after_a_controller_change_fence_sooner() {
        let live = image_with(1, false);
        // A new controller: a broker that never heartbeats to it is fenced after one and a
        // half heartbeat intervals, not the whole session.
        let mut l = Liveness::new(100, 10);
        l.reset(0, &live);
        assert!(l.on_tick(15, &live).is_empty());
        assert_eq!(l.on_tick(16, &live).len(), 1);

        // The connection that carried its heartbeats closes: an interval and a half unless it
        // heartbeats again (on another connection).
        let mut l = Liveness::new(100, 10);
        l.on_heartbeat(0, &live, 1, 5, 9);
        l.on_connection_closed(5, 5);
        assert!(l.on_tick(20, &live).is_empty());
        assert_eq!(l.on_tick(21, &live).len(), 1);
        l.on_connection_closed(30, 5);
        l.on_heartbeat(35, &live, 1, 5, 9);
        assert!(l.on_tick(80, &live).is_empty(), "it heartbeat again");
        l.on_connection_closed(90, 4);
        assert!(
            l.on_tick(130, &live).is_empty(),
            "another registration's session"
        );
    }

    #[test]
    fn a_second_incarnation_waits_for_the_first_ones_session() {
        let mut l = Liveness::new(100, 10);
        let live = image_with(1, false);
        l.on_heartbeat(0, &live, 1, 5, 9);
        let other = BrokerRecord {
            incarnation: [2; 16],
            ..live.brokers[&1].record.clone()
        };
        assert!(
            !l.may_register(50, &live, &other),
            "the first still heartbeats"
        );
        assert!(
            l.may_register(50, &live, &live.brokers[&1].record),
            "the same one retries"
        );
        assert!(l.may_register(101, &live, &other), "its session expired");
        assert!(
            l.may_register(50, &image_with(1, true), &other),
            "fenced (shut down)"
        );
    }

    #[test]
    fn a_broker_that_shuts_down_stays_fenced() {
        let mut l = Liveness::new(100, 10);
        let live = image_with(1, false);
        assert!(matches!(
            l.on_shutdown(&live, 1, 5),
            Some(Command::FenceBroker {
                id: 1,
                epoch: Some(5)
            })
        ));
        assert!(l.on_shutdown(&live, 1, 4).is_none());
        let fenced = image_with(1, true);
        assert!(l.on_heartbeat(0, &fenced, 1, 5, 9).0.is_none());
        l.on_registered(1, 1);
        assert!(l.on_heartbeat(2, &fenced, 1, 5, 9).0.is_some());
    }
}
