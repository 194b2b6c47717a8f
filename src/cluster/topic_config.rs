//! Topic configuration: the Kafka config names Sluice understands, their broker-level defaults,
//! validation, and the mapping to the storage engine's [`LogConfig`].

use std::collections::BTreeMap;

use sluice_storage::{LogConfig, TimestampType};

use crate::config::Config;

/// Topic config keys we accept, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "max.message.bytes",
    "message.timestamp.type",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "delete.retention.ms",
];

/// A topic config value that is not acceptable.
#[derive(Debug, thiserror::Error)]
#[error("invalid value {value:?} for {key}: {reason}")]
pub struct InvalidConfig {
    pub key: String,
    pub value: String,
    pub reason: &'static str,
}

/// Broker default for `key`, as Kafka would report it.
pub fn default_value(config: &Config, key: &str) -> Option<String> {
    let a = &config.args;
    Some(match key {
        "cleanup.policy" => "delete".to_owned(),
        "compression.type" => "producer".to_owned(),
        "max.message.bytes" => a.message_max_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".to_owned(),
        "retention.bytes" => a.log_retention_bytes.to_string(),
        "retention.ms" => a.log_retention_ms.to_string(),
        "segment.bytes" => a.log_segment_bytes.to_string(),
        "segment.ms" => a.log_segment_ms.to_string(),
        "index.interval.bytes" => "4096".to_owned(),
        "min.insync.replicas" => a.min_insync_replicas.to_string(),
        "unclean.leader.election.enable" => "false".to_owned(),
        "min.cleanable.dirty.ratio" => a.log_cleaner_min_cleanable_ratio.to_string(),
        "min.compaction.lag.ms" => "0".to_owned(),
        "max.compaction.lag.ms" => i64::MAX.to_string(),
        "delete.retention.ms" => a.log_cleaner_delete_retention_ms.to_string(),
        _ => return None,
    })
}

/// Checks one `key=value` pair.
pub fn validate(key: &str, value: &str) -> Result<(), InvalidConfig> {
    let bad = |reason| InvalidConfig {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let int = |min: i64| -> Result<(), InvalidConfig> {
        match value.parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => Err(bad("value too small")),
            Err(_) => Err(bad("not an integer")),
        }
    };
    match key {
        "cleanup.policy" => {
            let ok = value
                .split(',')
                .all(|p| matches!(p.trim(), "delete" | "compact"));
            if ok {
                Ok(())
            } else {
                Err(bad("expected delete and/or compact"))
            }
        }
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => Err(bad(
                "expected producer, uncompressed, gzip, snappy, lz4 or zstd",
            )),
        },
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(bad("expected CreateTime or LogAppendTime")),
        },
        "max.message.bytes" => int(0),
        "retention.bytes" | "retention.ms" => int(-1),
        "segment.bytes" => int(14),
        "segment.ms" => int(1),
        "index.interval.bytes" => int(0),
        "min.insync.replicas" => int(1),
        "unclean.leader.election.enable" => match value {
            "true" | "false" => Ok(()),
            _ => Err(bad("expected true or false")),
        },
        "min.cleanable.dirty.ratio" => match value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(bad("expected a number from 0 to 1")),
        },
        "min.compaction.lag.ms" | "delete.retention.ms" => int(0),
        "max.compaction.lag.ms" => int(1),
        _ => Err(bad("unknown topic config")),
    }
}

/// The effective value of `key` for a topic with `overrides`.
pub fn effective(
    config: &Config,
    overrides: &BTreeMap<String, String>,
    key: &str,
) -> Option<String> {
    overrides
        .get(key)
        .cloned()
        .or_else(|| default_value(config, key))
}

/// The storage configuration for a topic's partitions.
pub fn log_config(config: &Config, overrides: &BTreeMap<String, String>) -> LogConfig {
    let num = |key: &str, fallback: i64| -> i64 {
        effective(config, overrides, key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(fallback)
    };
    let a = &config.args;
    let policy = effective(config, overrides, "cleanup.policy").unwrap_or_default();
    LogConfig {
        segment_bytes: num("segment.bytes", a.log_segment_bytes as i64).max(14) as u64,
        segment_ms: num("segment.ms", a.log_segment_ms),
        index_interval_bytes: num("index.interval.bytes", 4096).clamp(0, i64::from(u32::MAX))
            as u32,
        max_message_bytes: num("max.message.bytes", i64::from(a.message_max_bytes))
            .clamp(0, i64::from(u32::MAX)) as u32,
        retention_ms: num("retention.ms", a.log_retention_ms),
        retention_bytes: num("retention.bytes", a.log_retention_bytes),
        timestamp_type: match effective(config, overrides, "message.timestamp.type").as_deref() {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        },
        io_mode: config.io_mode,
        flush: config.flush,
        tail_cache_bytes: a.tail_cache_bytes,
        boot_checkpoint_interval_ms: a.boot_checkpoint_interval_ms,
        cleanup_delete: policy.contains("delete"),
        cleanup_compact: policy.contains("compact"),
        min_cleanable_dirty_ratio: effective(config, overrides, "min.cleanable.dirty.ratio")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(a.log_cleaner_min_cleanable_ratio)
            .clamp(0.0, 1.0),
        min_compaction_lag_ms: num("min.compaction.lag.ms", 0).max(0),
        max_compaction_lag_ms: num("max.compaction.lag.ms", i64::MAX).max(1),
        delete_retention_ms: num("delete.retention.ms", a.log_cleaner_delete_retention_ms).max(0),
    }
}
