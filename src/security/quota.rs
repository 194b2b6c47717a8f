//! Client quotas (KIP-13, KIP-55, KIP-124, KIP-546): byte rates for producers and consumers and
//! a share of request-handling time, set per user, per client id, or per (user, client id),
//! each with a `<default>` that gives every user or client id its own quota of that size.
//!
//! Quotas live in the cluster metadata (`MetadataRecord::ClientQuota`, set through
//! AlterClientQuotas); every shard resolves them from its image. Usage is measured in one
//! [`QuotaTracker`] per process (a token bucket per client, see [`Bucket`]), so a client's
//! connections on different shards share their quota. A client over its quota is
//! throttled, not refused: its response says how long to wait (`throttle_time_ms`) and its
//! connection reads nothing more until then (see `docs/architecture.md`, "Quotas").

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Producer bytes per second (request sizes).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Consumer bytes per second (fetch response sizes).
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Percent of one request-handling thread's time per second (100 = one whole core).
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// Entity types a quota is set on.
pub const ENTITY_USER: &str = "user";
pub const ENTITY_CLIENT_ID: &str = "client-id";

/// The longest throttle one response gets (Kafka's quota window, 11 × 1 s).
pub const MAX_THROTTLE: Duration = Duration::from_secs(11);
/// Clients tracked at once; past it, full buckets are dropped, else a new client is not
/// tracked.
const TRACKED_MAX: usize = 100_000;

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    Produce,
    Fetch,
    Request,
}

impl QuotaKind {
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
        }
    }

    pub fn of_key(key: &str) -> Option<QuotaKind> {
        [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request]
            .into_iter()
            .find(|k| k.key() == key)
    }
}

/// One side of an entity: a named user or client id, or the default for all of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityName {
    Default,
    Named(String),
}

/// What a quota is set on: a user, a client id, or both (at least one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
}

impl QuotaEntity {
    /// Builds an entity from AlterClientQuotas/DescribeClientQuotas components: `(type, name)`,
    /// a `None` name being the default. Unknown or repeated types are refused.
    pub fn from_components<'a>(
        parts: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<QuotaEntity, String> {
        let mut e = QuotaEntity {
            user: None,
            client_id: None,
        };
        for (kind, name) in parts {
            let slot = match kind {
                ENTITY_USER => &mut e.user,
                ENTITY_CLIENT_ID => &mut e.client_id,
                "ip" => return Err("ip quotas are not supported".into()),
                other => return Err(format!("unknown entity type {other:?}")),
            };
            if slot.is_some() {
                return Err(format!("entity type {kind:?} given twice"));
            }
            *slot = Some(match name {
                None => EntityName::Default,
                Some(n) => EntityName::Named(n.to_owned()),
            });
        }
        if e.user.is_none() && e.client_id.is_none() {
            return Err("an entity needs a user or a client-id".into());
        }
        Ok(e)
    }

    /// The entity's components as `(type, name)`, user first; `None` is the default.
    pub fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        fn name(n: &EntityName) -> Option<&str> {
            match n {
                EntityName::Default => None,
                EntityName::Named(s) => Some(s.as_str()),
            }
        }
        let mut out = Vec::with_capacity(2);
        if let Some(u) = &self.user {
            out.push((ENTITY_USER, name(u)));
        }
        if let Some(c) = &self.client_id {
            out.push((ENTITY_CLIENT_ID, name(c)));
        }
        out
    }
}

/// A quota's value. Compared bit for bit, so the metadata records that carry it are `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// Checks a quota key and value (AlterClientQuotas).
pub fn validate(key: &str, value: f64) -> Result<(), String> {
    let Some(kind) = QuotaKind::of_key(key) else {
        return Err(format!("unknown or unsupported quota key {key:?}"));
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("{key} must be a positive number, not {value}"));
    }
    if kind != QuotaKind::Request && value.fract() != 0.0 {
        return Err(format!("{key} must be a whole number of bytes per second"));
    }
    Ok(())
}

/// Every quota set, by entity and key (the metadata image's view).
pub type Quotas = BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>;

/// The quota that applies to a request, and whose usage it counts against.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The limit, in the key's unit per second.
    pub limit: f64,
    /// The user and client id the usage is counted for ("" where the quota does not depend
    /// on it: a user's quota is shared by all their client ids).
    pub user: String,
    pub client_id: String,
}

/// The quota of `kind` for `user` and `client_id`, at the most specific of Kafka's eight
/// levels that sets it: user+client, user+default client, user, default user+client,
/// default user+default client, default user, client, default client.
pub fn resolve(quotas: &Quotas, user: &str, client_id: &str, kind: QuotaKind) -> Option<Applied> {
    use EntityName::{Default as D, Named};
    let u = || Some(Named(user.to_owned()));
    let c = || Some(Named(client_id.to_owned()));
    let levels = [
        (u(), c()),
        (u(), Some(D)),
        (u(), None),
        (Some(D), c()),
        (Some(D), Some(D)),
        (Some(D), None),
        (None, c()),
        (None, Some(D)),
    ];
    levels.into_iter().find_map(|(u, c)| {
        let has = (u.is_some(), c.is_some());
        let value = quotas
            .get(&QuotaEntity {
                user: u,
                client_id: c,
            })?
            .get(kind.key())?;
        Some(Applied {
            limit: value.0,
            user: if has.0 {
                user.to_owned()
            } else {
                String::new()
            },
            client_id: if has.1 {
                client_id.to_owned()
            } else {
                String::new()
            },
        })
    })
}

/// A client's allowance: a token bucket (Kafka's `TokenBucket`, KIP-599) filled at the quota's
/// rate up to [`BURST`] of it. A new or long-idle client may send that much at once; one that
/// keeps sending gets the quota's rate, and a request that takes the bucket below zero waits
/// until it is back at zero.
///
/// Not Kafka's sampled `Rate` (the sum of eleven one-second samples over at least ten
/// seconds): it forgets a burst once its samples expire, so a client that keeps sending
/// bursts ten seconds of quota every eleven seconds (measured with librdkafka: 0.09 to 2.1 ×
/// the quota in five-second slices, 0.94 to 1.08 × over thirty seconds).
#[derive(Debug, Clone)]
struct Bucket {
    /// Units in the bucket (negative: owed) as of `at`.
    tokens: f64,
    at: Instant,
}

/// What a bucket holds at most, in seconds of its quota: the burst Kafka's sampled rate allows
/// a new client (ten whole one-second windows).
pub const BURST: Duration = Duration::from_secs(10);

impl Bucket {
    fn new(limit: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: limit * BURST.as_secs_f64(),
            at: now,
        }
    }

    fn refill(&mut self, limit: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit).min(limit * BURST.as_secs_f64());
        self.at = self.at.max(now);
    }

    /// Takes `value` out; answers how long until the bucket is back at zero.
    fn record(&mut self, limit: f64, value: f64, now: Instant) -> Duration {
        self.refill(limit, now);
        self.tokens -= value;
        throttle_for(self.tokens, limit)
    }

    /// Puts back a recorded value (a throttled fetch returns no data).
    fn unrecord(&mut self, limit: f64, value: f64) {
        self.tokens = (self.tokens + value).min(limit * BURST.as_secs_f64());
    }

    /// Full again: nothing is lost by forgetting it.
    fn full(&self, limit: f64, now: Instant) -> bool {
        let mut b = self.clone();
        b.refill(limit, now);
        b.tokens >= limit * BURST.as_secs_f64()
    }
}

/// How long a client whose bucket holds `tokens` waits: until it is back at zero, at most
/// [`MAX_THROTTLE`].
fn throttle_for(tokens: f64, limit: f64) -> Duration {
    if tokens >= 0.0 || limit <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64((-tokens / limit).min(MAX_THROTTLE.as_secs_f64()))
}

type RateKey = (QuotaKind, String, String);

/// Every client's usage, shared by the process's shards.
#[derive(Debug, Default)]
pub struct QuotaTracker {
    buckets: Mutex<HashMap<RateKey, Bucket>>,
}

impl QuotaTracker {
    /// Counts `value` against `applied` and answers how long the client must wait (zero when
    /// it is within its quota).
    pub fn record(&self, kind: QuotaKind, applied: &Applied, value: f64, now: Instant) -> Duration {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Duration::ZERO;
        };
        let key = (kind, applied.user.clone(), applied.client_id.clone());
        if !buckets.contains_key(&key) && buckets.len() >= TRACKED_MAX {
            buckets.retain(|_, b| !b.full(applied.limit, now));
            if buckets.len() >= TRACKED_MAX {
                return Duration::ZERO;
            }
        }
        buckets
            .entry(key)
            .or_insert_with(|| Bucket::new(applied.limit, now))
            .record(applied.limit, value, now)
    }

    /// Takes back what [`QuotaTracker::record`] counted.
    pub fn unrecord(&self, kind: QuotaKind, applied: &Applied, value: f64) {
        if let Ok(mut buckets) = self.buckets.lock() {
            let key = (kind, applied.user.clone(), applied.client_id.clone());
            if let Some(b) = buckets.get_mut(&key) {
                b.unrecord(applied.limit, value);
            }
        }
    }
}

/// Request time as `request_percentage` counts it: percent-seconds of one thread.
pub fn percent_of_thread(busy: Duration) -> f64 {
    busy.as_secs_f64() * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
        QuotaEntity { user, client_id }
    }

    fn named(s: &str) -> Option<EntityName> {
        Some(EntityName::Named(s.into()))
    }

    fn set(q: &mut Quotas, e: QuotaEntity, key: &str, v: f64) {
        q.entry(e).or_default().insert(key.into(), QuotaValue(v));
    }

    #[test]
    fn the_most_specific_level_wins_and_names_its_counter() {
        let mut q = Quotas::new();
        let p = PRODUCER_BYTE_RATE;
        set(&mut q, entity(None, Some(EntityName::Default)), p, 8.0);
        let a = resolve(&q, "alice", "app", QuotaKind::Produce).unwrap();
        assert_eq!(
            (a.limit, a.user.as_str(), a.client_id.as_str()),
            (8.0, "", "app")
        );
        set(&mut q, entity(None, named("app")), p, 7.0);
        assert_eq!(
            resolve(&q, "alice", "app", QuotaKind::Produce)
                .unwrap()
                .limit,
            7.0
        );
        set(&mut q, entity(Some(EntityName::Default), None), p, 6.0);
        let a = resolve(&q, "alice", "app", QuotaKind::Produce).unwrap();
        assert_eq!(
            (a.limit, a.user.as_str(), a.client_id.as_str()),
            (6.0, "alice", "")
        );
        set(
            &mut q,
            entity(Some(EntityName::Default), Some(EntityName::Default)),
            p,
            5.0,
        );
        set(
            &mut q,
            entity(Some(EntityName::Default), named("app")),
            p,
            4.0,
        );
        assert_eq!(
            resolve(&q, "alice", "app", QuotaKind::Produce)
                .unwrap()
                .limit,
            4.0
        );
        assert_eq!(
            resolve(&q, "alice", "other", QuotaKind::Produce)
                .unwrap()
                .limit,
            5.0
        );
        set(&mut q, entity(named("alice"), None), p, 3.0);
        set(
            &mut q,
            entity(named("alice"), Some(EntityName::Default)),
            p,
            2.0,
        );
        assert_eq!(
            resolve(&q, "alice", "other", QuotaKind::Produce)
                .unwrap()
                .limit,
            2.0
        );
        set(&mut q, entity(named("alice"), named("app")), p, 1.0);
        let a = resolve(&q, "alice", "app", QuotaKind::Produce).unwrap();
        assert_eq!(
            (a.limit, a.user.as_str(), a.client_id.as_str()),
            (1.0, "alice", "app")
        );
        // Another key is not set anywhere; another user falls to the defaults.
        assert!(resolve(&q, "alice", "app", QuotaKind::Fetch).is_none());
        assert_eq!(
            resolve(&q, "bob", "app", QuotaKind::Produce).unwrap().limit,
            4.0
        );
    }

    #[test]
    fn entities_and_values_are_validated() {
        assert!(QuotaEntity::from_components([("user", None)]).is_ok());
        assert!(
            QuotaEntity::from_components([("client-id", Some("a")), ("user", Some("b"))]).is_ok()
        );
        assert!(QuotaEntity::from_components([]).is_err());
        assert!(QuotaEntity::from_components([("ip", Some("1.2.3.4"))]).is_err());
        assert!(QuotaEntity::from_components([("user", None), ("user", Some("x"))]).is_err());
        assert!(QuotaEntity::from_components([("group", Some("x"))]).is_err());
        assert!(validate(PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(validate(REQUEST_PERCENTAGE, 12.5).is_ok());
        assert!(validate(PRODUCER_BYTE_RATE, 1.5).is_err());
        assert!(validate(CONSUMER_BYTE_RATE, 0.0).is_err());
        assert!(validate(CONSUMER_BYTE_RATE, f64::NAN).is_err());
        assert!(validate("controller_mutation_rate", 1.0).is_err());
    }

    #[test]
    fn a_new_client_may_burst_then_gets_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100.0, t0);
        // Ten seconds of quota at once, then a debt of one second.
        assert_eq!(b.record(100.0, 1000.0, t0), Duration::ZERO);
        assert_eq!(b.record(100.0, 100.0, t0), Duration::from_secs(1));
        // Sending flat out from then on: 100 per second, each request waiting its share.
        let mut now = t0 + b.record(100.0, 0.0, t0);
        let start = now;
        let mut sent = 0.0;
        for _ in 0..300 {
            b.record(100.0, 10.0, now);
            sent += 10.0;
            now += b.record(100.0, 0.0, now);
        }
        let rate = sent / now.duration_since(start).as_secs_f64();
        assert!((99.0..=101.0).contains(&rate), "{rate}");
        // Idle for a minute: full again, never more.
        assert!(b.full(100.0, now + Duration::from_secs(60)));
        assert_eq!(
            b.record(100.0, 1000.0, now + Duration::from_secs(60)),
            Duration::ZERO
        );
        assert!(b.record(100.0, 1.0, now + Duration::from_secs(60)) > Duration::ZERO);
    }

    #[test]
    fn throttle_is_the_time_to_pay_the_debt() {
        assert_eq!(throttle_for(5.0, 100.0), Duration::ZERO);
        assert_eq!(throttle_for(-250.0, 100.0), Duration::from_millis(2500));
        assert_eq!(throttle_for(-1e9, 1.0), MAX_THROTTLE);
    }

    #[test]
    fn the_tracker_throttles_only_the_client_over_its_quota() {
        let t = QuotaTracker::default();
        let now = Instant::now();
        let over = Applied {
            limit: 100.0,
            user: String::new(),
            client_id: "a".into(),
        };
        let under = Applied {
            client_id: "b".into(),
            ..over.clone()
        };
        assert_eq!(
            t.record(QuotaKind::Produce, &over, 900.0, now),
            Duration::ZERO
        );
        let wait = t.record(QuotaKind::Produce, &over, 1100.0, now);
        assert_eq!(wait, Duration::from_secs(10));
        assert_eq!(
            t.record(QuotaKind::Produce, &under, 10.0, now),
            Duration::ZERO
        );
        // Fetch usage is counted apart from produce usage.
        assert_eq!(t.record(QuotaKind::Fetch, &over, 10.0, now), Duration::ZERO);
        t.unrecord(QuotaKind::Produce, &over, 1100.0);
        assert_eq!(
            t.record(QuotaKind::Produce, &over, 0.0, now),
            Duration::ZERO
        );
    }
}
