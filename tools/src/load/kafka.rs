//! librdkafka configuration and the setup talk with the cluster: reachability, topic creation,
//! partition watermarks.
//!
//! Owns: every client property `sluice-load` sets itself (the `-X` overrides are applied last,
//! so the user always wins). Every call here has a timeout derived from `--connect-timeout`;
//! nothing waits on the network without a bound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::cli::Config;
use super::LoadError;

/// Per-producer cap on queued bytes (KiB). librdkafka's default is 1 GiB per client; 32 MiB is
/// the Java client's `buffer.memory`, keeps `--producers 4` well inside memory and leaves room
/// for 1 MiB batches.
pub const PRODUCER_QUEUE_KBYTES_MAX: u64 = 32 * 1024;
/// Per-producer cap on queued messages.
pub const PRODUCER_QUEUE_MESSAGES_MAX: u64 = 100_000;
/// Per-consumer cap on pre-fetched bytes (KiB); librdkafka's default is 64 MiB.
pub const CONSUMER_QUEUE_KBYTES_MAX: u64 = 16 * 1024;
/// Pause of a partition's fetches once the pre-fetch queue is full (librdkafka default 1000).
pub const FETCH_QUEUE_BACKOFF_MS: u64 = 10;
/// How long a produced message may wait for its acknowledgement before it counts as failed.
/// librdkafka's default (300 s) would outlive any sensible run.
pub const MESSAGE_TIMEOUT_MS: u64 = 30_000;
/// Pause between metadata polls while a new topic appears.
const TOPIC_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Properties shared by every client.
fn common(cfg: &Config) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("bootstrap.servers".into(), cfg.bootstrap.clone());
    m.insert("client.id".into(), "sluice-load".into());
    m
}

fn apply_overrides(mut m: BTreeMap<String, String>, cfg: &Config) -> BTreeMap<String, String> {
    for (k, v) in &cfg.client_overrides {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// Every property a producer gets.
pub fn producer_properties(cfg: &Config) -> BTreeMap<String, String> {
    let mut m = common(cfg);
    m.insert("acks".into(), cfg.acks.as_config().into());
    m.insert(
        "compression.type".into(),
        cfg.compression.as_config().into(),
    );
    m.insert(
        "queue.buffering.max.kbytes".into(),
        PRODUCER_QUEUE_KBYTES_MAX.to_string(),
    );
    m.insert(
        "queue.buffering.max.messages".into(),
        PRODUCER_QUEUE_MESSAGES_MAX.to_string(),
    );
    m.insert("message.timeout.ms".into(), MESSAGE_TIMEOUT_MS.to_string());
    if let Some(b) = cfg.batch_size {
        m.insert("batch.size".into(), b.to_string());
    }
    if let Some(l) = cfg.linger_ms {
        m.insert("linger.ms".into(), l.to_string());
    }
    // Large messages need a matching request cap.
    let message_max = (cfg.message_size as u64 + 64 * 1024).max(1_000_000);
    m.insert("message.max.bytes".into(), message_max.to_string());
    apply_overrides(m, cfg)
}

/// Every property a consumer gets.
pub fn consumer_properties(cfg: &Config) -> BTreeMap<String, String> {
    let mut m = common(cfg);
    m.insert(
        "queued.max.messages.kbytes".into(),
        CONSUMER_QUEUE_KBYTES_MAX.to_string(),
    );
    // With the queue capped as above, librdkafka's default 1 s pause after a full queue idles
    // the consumer for whole seconds of a backlog run (seen against sluice-sink: 4 MB fetches
    // every 2 ms, then nothing for 1.0 s); librdkafka's docs say to lower it with a low cap.
    m.insert(
        "fetch.queue.backoff.ms".into(),
        FETCH_QUEUE_BACKOFF_MS.to_string(),
    );
    // End-of-partition events mark "caught up" for --from-beginning.
    m.insert(
        "enable.partition.eof".into(),
        cfg.from_beginning.to_string(),
    );
    match &cfg.group {
        Some(group) => {
            m.insert("group.id".into(), group.clone());
            let reset = if cfg.from_beginning {
                "earliest"
            } else {
                "latest"
            };
            m.insert("auto.offset.reset".into(), reset.into());
        }
        None => {
            // Assigned partitions: offsets are explicit, nothing is committed.
            m.insert("group.id".into(), "sluice-load-assign".into());
            m.insert("enable.auto.commit".into(), "false".into());
            m.insert("enable.auto.offset.store".into(), "false".into());
        }
    }
    let fetch_max = (cfg.message_size as u64 + 64 * 1024).max(1_048_576);
    m.insert("max.partition.fetch.bytes".into(), fetch_max.to_string());
    apply_overrides(m, cfg)
}

pub fn client_config(props: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in props {
        c.set(k, v);
    }
    c
}

/// The topic as the cluster reports it, with the offsets seen at start.
#[derive(Clone, Debug)]
pub struct TopicState {
    pub partitions: i32,
    pub created: bool,
    /// `(low, high)` watermark of each partition, index = partition id.
    pub watermarks: Vec<(i64, i64)>,
}

impl TopicState {
    /// Messages between the low and high watermarks over all partitions.
    pub fn backlog(&self) -> u64 {
        self.watermarks
            .iter()
            .map(|(lo, hi)| (hi - lo).max(0) as u64)
            .sum()
    }
}

/// Checks the bootstrap servers answer, creates the topic when missing and reads watermarks.
pub fn prepare(cfg: &Config) -> Result<TopicState, LoadError> {
    let timeout = Duration::from_secs_f64(cfg.connect_timeout_s);
    let mut props = common(cfg);
    props.insert("allow.auto.create.topics".into(), "false".into());
    let props = apply_overrides(props, cfg);
    let admin: AdminClient<DefaultClientContext> = client_config(&props)
        .create()
        .map_err(|e| LoadError::Client(format!("cannot create admin client: {e}")))?;

    let mut partitions = topic_partitions(&admin, cfg, timeout)?;
    let mut created = false;
    if partitions.is_none() {
        create_topic(&admin, cfg, timeout)?;
        created = true;
        let deadline = Instant::now() + timeout;
        while partitions.is_none() {
            if Instant::now() >= deadline {
                return Err(LoadError::Topic(format!(
                    "topic {} was created but did not appear in metadata within {:.0?}",
                    cfg.topic, timeout
                )));
            }
            std::thread::sleep(TOPIC_POLL_INTERVAL);
            partitions = topic_partitions(&admin, cfg, timeout)?;
        }
    }
    let partitions = partitions.unwrap_or(0);
    // A just-created partition may have no leader yet: retry each until the shared deadline.
    let deadline = Instant::now() + timeout;
    let mut watermarks = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let w = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match admin.inner().fetch_watermarks(&cfg.topic, p, left) {
                Ok(w) => break w,
                Err(_) if Instant::now() + TOPIC_POLL_INTERVAL < deadline => {
                    std::thread::sleep(TOPIC_POLL_INTERVAL);
                }
                Err(e) => {
                    return Err(LoadError::Topic(format!(
                        "cannot read offsets of {}/{p}: {e}",
                        cfg.topic
                    )))
                }
            }
        };
        watermarks.push(w);
    }
    Ok(TopicState {
        partitions,
        created,
        watermarks,
    })
}

/// Partition count of the topic, `None` when it does not exist.
fn topic_partitions(
    admin: &AdminClient<DefaultClientContext>,
    cfg: &Config,
    timeout: Duration,
) -> Result<Option<i32>, LoadError> {
    let metadata =
        admin
            .inner()
            .fetch_metadata(None, timeout)
            .map_err(|e| LoadError::Unreachable {
                bootstrap: cfg.bootstrap.clone(),
                timeout_s: cfg.connect_timeout_s,
                reason: e.to_string(),
            })?;
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == cfg.topic) else {
        return Ok(None);
    };
    if topic.error().is_some() || topic.partitions().is_empty() {
        return Ok(None);
    }
    Ok(Some(topic.partitions().len() as i32))
}

fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    cfg: &Config,
    timeout: Duration,
) -> Result<(), LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Client(format!("cannot start runtime: {e}")))?;
    let topic = NewTopic::new(
        &cfg.topic,
        cfg.partitions,
        TopicReplication::Fixed(cfg.replication_factor),
    );
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = runtime
        .block_on(async {
            // The admin request carries its own timeout; this one bounds the wait regardless.
            tokio::time::timeout(timeout + Duration::from_secs(1), async {
                admin.create_topics([&topic], &opts).await
            })
            .await
        })
        .map_err(|_| LoadError::Topic(format!("creating topic {} timed out", cfg.topic)))?;
    let results = results.map_err(|e| match e {
        KafkaError::AdminOp(code) => {
            LoadError::Topic(format!("creating topic {} failed: {code}", cfg.topic))
        }
        other => LoadError::Topic(format!("creating topic {} failed: {other}", cfg.topic)),
    })?;
    for r in results {
        match r {
            Ok(_) => {}
            // Someone else created it between our metadata look-up and now: fine.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(LoadError::Topic(format!(
                    "creating topic {name} failed: {code}"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::cli::{resolve, Cli};
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["sluice-load"];
        all.extend_from_slice(args);
        resolve(&Cli::try_parse_from(all).unwrap(), 1).unwrap()
    }

    #[test]
    fn producer_properties_follow_flags_and_overrides() {
        let c = config(&[
            "produce",
            "--acks",
            "1",
            "--compression",
            "zstd",
            "--linger-ms",
            "3",
            "-X",
            "linger.ms=9",
            "-X",
            "queue.buffering.max.kbytes=1024",
        ]);
        let p = producer_properties(&c);
        assert_eq!(p["acks"], "1");
        assert_eq!(p["compression.type"], "zstd");
        assert_eq!(p["linger.ms"], "9");
        assert_eq!(p["queue.buffering.max.kbytes"], "1024");
        assert_eq!(p["bootstrap.servers"], "127.0.0.1:9092");
        assert!(!p.contains_key("batch.size"));
    }

    #[test]
    fn consumer_properties_by_mode() {
        let p = consumer_properties(&config(&["consume", "--from-beginning"]));
        assert_eq!(p["enable.partition.eof"], "true");
        assert_eq!(p["enable.auto.commit"], "false");
        let p = consumer_properties(&config(&["consume", "--group", "g"]));
        assert_eq!(p["group.id"], "g");
        assert_eq!(p["auto.offset.reset"], "latest");
        assert_eq!(p["enable.partition.eof"], "false");
    }
}
