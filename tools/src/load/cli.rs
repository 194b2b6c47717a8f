//! Command line of `sluice-load`: the clap definition, named workload presets, duration
//! parsing and the resolution of flags + preset + defaults into one [`Config`].
//!
//! Owns: every default value and every preset. Must not touch the network.
//! Invariant: a [`Config`] that [`resolve`] returned is internally consistent (sizes and counts
//! within their limits, ratios in 0..=1), so the workers never re-validate it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// Largest accepted `--message-size` (bytes). Kafka's default `message.max.bytes` is ~1 MiB;
/// 64 MiB keeps one producer's queue (see `kafka::PRODUCER_QUEUE_KBYTES_MAX`) meaningful.
pub const MESSAGE_SIZE_MAX: usize = 64 * 1024 * 1024;
/// Most producer or consumer clients one process starts; each owns librdkafka threads.
pub const CLIENTS_MAX: usize = 256;
/// Most partitions `--partitions` may ask for when the topic is created.
pub const PARTITIONS_MAX: i32 = 100_000;
/// Default run length when neither `--duration` nor `--messages` is given.
pub const DURATION_DEFAULT: Duration = Duration::from_secs(10);
/// Default warmup for duration-bounded runs; `--messages` runs default to no warmup.
pub const WARMUP_DEFAULT: Duration = Duration::from_secs(2);

/// What the run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Produce only; latency is produce acknowledgement latency.
    Produce,
    /// Consume only; latency is end-to-end from the timestamp each message carries.
    Consume,
    /// Produce and consume at once; latency is end-to-end (intended send → consumed).
    E2e,
}

impl Mode {
    pub fn produces(self) -> bool {
        matches!(self, Mode::Produce | Mode::E2e)
    }
    pub fn consumes(self) -> bool {
        matches!(self, Mode::Consume | Mode::E2e)
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::E2e => "e2e",
        }
    }
}

/// Producer `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Acks {
    #[value(name = "0")]
    #[serde(rename = "0")]
    Zero,
    #[value(name = "1")]
    #[serde(rename = "1")]
    One,
    #[value(name = "all")]
    #[serde(rename = "all")]
    All,
}

impl Acks {
    pub fn as_config(self) -> &'static str {
        match self {
            Acks::Zero => "0",
            Acks::One => "1",
            Acks::All => "all",
        }
    }
}

/// Producer `compression.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_config(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Named standard workloads (OpenMessaging Benchmark shapes). A preset fills in every flag the
/// user did not give explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Workload {
    /// 1 topic × 100 partitions, 1 KiB messages, 4 producers / 4 consumers, 50 000 msg/s.
    #[value(name = "omb-1x100-1k-50k")]
    #[serde(rename = "omb-1x100-1k-50k")]
    Omb1x100x1k50k,
    /// 1 topic × 100 partitions, 1 KiB messages, 4 producers / 4 consumers, 200 000 msg/s.
    #[value(name = "omb-1x100-1k-200k")]
    #[serde(rename = "omb-1x100-1k-200k")]
    Omb1x100x1k200k,
    /// 1 topic × 100 partitions, 1 KiB messages, 4 producers / 4 consumers, maximum rate.
    #[value(name = "omb-1x100-1k-max")]
    #[serde(rename = "omb-1x100-1k-max")]
    Omb1x100x1kMax,
}

/// The values a preset contributes; `None` leaves the generic default in place.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    pub topic: &'static str,
    pub partitions: i32,
    pub message_size: usize,
    pub producers: usize,
    pub consumers: usize,
    /// Messages per second over all producers; 0 = as fast as possible.
    pub rate: f64,
    pub acks: Acks,
    /// OMB's Kafka driver producer settings: `linger.ms=1`, `batch.size=1048576`.
    pub linger_ms: u64,
    pub batch_size: u64,
}

impl Workload {
    pub fn preset(self) -> Preset {
        let rate = match self {
            Workload::Omb1x100x1k50k => 50_000.0,
            Workload::Omb1x100x1k200k => 200_000.0,
            Workload::Omb1x100x1kMax => 0.0,
        };
        Preset {
            topic: "sluice-load-omb-1x100",
            partitions: 100,
            message_size: 1024,
            producers: 4,
            consumers: 4,
            rate,
            acks: Acks::All,
            linger_ms: 1,
            batch_size: 1_048_576,
        }
    }
}

/// Load generator for Kafka-compatible brokers (Sluice, Apache Kafka, Redpanda).
///
/// Fixed-rate runs (--rate) measure latency from each message's *intended* send time, so a
/// stalled broker cannot hide its stall (coordinated omission). Progress goes to stderr every
/// second; the summary goes to stdout.
#[derive(Parser, Debug, Clone)]
#[command(name = "sluice-load", version)]
#[command(
    after_help = "Durations take a unit: 500ms, 10s, 2m, 1h (a bare number means seconds).\n\
Exit codes: 0 ok; 1 setup/runtime failure (bootstrap unreachable within --connect-timeout, \
topic creation failed, bad -X option); 2 bad command line; 3 --fail-on-error and the run saw \
errors, lost messages or missed its --messages target."
)]
pub struct Cli {
    /// What to run.
    #[arg(value_enum)]
    pub mode: Mode,

    /// Named workload preset; fills in every flag not given explicitly.
    #[arg(long, value_enum)]
    pub workload: Option<Workload>,

    /// Bootstrap servers (host:port[,host:port...]).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,

    /// Topic to use; created when missing (with --partitions and --replication-factor).
    #[arg(long)]
    pub topic: Option<String>,

    /// Partitions when the topic must be created [default: 1].
    #[arg(long)]
    pub partitions: Option<i32>,

    /// Replication factor when the topic must be created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,

    /// Payload size in bytes [default: 1024].
    #[arg(long)]
    pub message_size: Option<usize>,

    /// Fraction (0..=1) of each payload that is random bytes; the rest is repetitive text, so
    /// compression ratios are realistic.
    #[arg(long, default_value_t = 0.5)]
    pub random_ratio: f64,

    /// Producer clients (each a separate librdkafka producer and thread) [default: 1].
    #[arg(long)]
    pub producers: Option<usize>,

    /// Consumer clients [default: 1].
    #[arg(long)]
    pub consumers: Option<usize>,

    /// Total messages per second over all producers, on a fixed schedule; 0 or absent = as fast
    /// as possible.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Measured run length after the warmup [default: 10s unless --messages is given].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Warmup before measuring: load runs but is not recorded [default: 2s, or 0 with
    /// --messages].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,

    /// Stop after this many messages (produced in total, or consumed in total).
    #[arg(long)]
    pub messages: Option<u64>,

    /// Producer acks [default: all].
    #[arg(long, value_enum)]
    pub acks: Option<Acks>,

    /// Producer compression.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,

    /// Producer batch.size in bytes [default: librdkafka's].
    #[arg(long)]
    pub batch_size: Option<u64>,

    /// Producer linger.ms [default: librdkafka's].
    #[arg(long)]
    pub linger_ms: Option<u64>,

    /// Send keyed messages, cycling round-robin through --key-count distinct keys.
    #[arg(long)]
    pub keyed: bool,

    /// Transactional producers: each commits a transaction every this many records (its own
    /// transactional.id; acks=all and idempotence implied). Absent: no transactions.
    #[arg(long)]
    pub transaction_size: Option<u64>,

    /// Distinct keys for --keyed.
    #[arg(long, default_value_t = 1000)]
    pub key_count: u64,

    /// Consumer group id; without it consumers are assigned the partitions directly
    /// (partition p goes to consumer p mod --consumers).
    #[arg(long)]
    pub group: Option<String>,

    /// Consume from the beginning and stop once caught up with the end offsets seen at start
    /// (or at --messages / --duration).
    #[arg(long)]
    pub from_beginning: bool,

    /// Client configuration passthrough, applied to producers and consumers (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub client_config: Vec<(String, String)>,

    /// Write every figure, the configuration and a machine description as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the latency percentile distribution (HdrHistogram text format, milliseconds).
    #[arg(long, value_name = "FILE")]
    pub hdr_file: Option<PathBuf>,

    /// Exit with status 3 when any error, lost message or missed --messages target occurred.
    #[arg(long)]
    pub fail_on_error: bool,

    /// Give up when the bootstrap servers do not answer within this time.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,

    /// Stop a consumer that has a target (--messages, --from-beginning) after this long without
    /// a message.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub idle_timeout: Duration,

    /// e2e: how long consumers may keep draining after the producers finished.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub drain_timeout: Duration,

    /// Seed of the payload generator [default: derived from the clock]; printed in the JSON.
    #[arg(long)]
    pub seed: Option<u64>,

    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Everything a run needs, after presets and defaults; serialised verbatim into the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub mode: Mode,
    pub workload: Option<Workload>,
    pub bootstrap: String,
    pub topic: String,
    /// Partitions to create the topic with (an existing topic keeps its own count).
    pub partitions: i32,
    /// Whether `--partitions` or a preset asked for `partitions` (so a mismatch is worth a note).
    #[serde(skip)]
    pub partitions_requested: bool,
    pub replication_factor: i32,
    pub message_size: usize,
    pub random_ratio: f64,
    pub producers: usize,
    pub consumers: usize,
    /// `None` = as fast as possible.
    pub rate_msgs_per_sec: Option<f64>,
    /// `None` = no time limit (the run is bounded by `messages` and the idle timeout).
    pub duration_s: Option<f64>,
    pub warmup_s: f64,
    pub messages: Option<u64>,
    pub acks: Acks,
    pub compression: Compression,
    pub batch_size: Option<u64>,
    pub linger_ms: Option<u64>,
    pub keyed: bool,
    pub key_count: u64,
    /// Records per transaction of each producer (`None`: not transactional).
    pub transaction_size: Option<u64>,
    pub group: Option<String>,
    pub from_beginning: bool,
    /// `-X` overrides, as given.
    pub client_overrides: BTreeMap<String, String>,
    pub json: Option<PathBuf>,
    pub hdr_file: Option<PathBuf>,
    pub fail_on_error: bool,
    pub connect_timeout_s: f64,
    pub idle_timeout_s: f64,
    pub drain_timeout_s: f64,
    pub seed: u64,
    pub quiet: bool,
}

/// Why a command line was rejected after clap accepted its syntax.
#[derive(Debug, PartialEq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// Applies the preset, the defaults and the cross-flag checks.
pub fn resolve(cli: &Cli, seed_fallback: u64) -> Result<Config, UsageError> {
    let preset = cli.workload.map(Workload::preset);
    let p = preset.as_ref();
    let topic = cli
        .topic
        .clone()
        .or_else(|| p.map(|p| p.topic.to_string()))
        .unwrap_or_else(|| "sluice-load".to_string());
    let partitions = cli.partitions.or(p.map(|p| p.partitions)).unwrap_or(1);
    let message_size = cli
        .message_size
        .or(p.map(|p| p.message_size))
        .unwrap_or(1024);
    let producers = cli.producers.or(p.map(|p| p.producers)).unwrap_or(1);
    let consumers = cli.consumers.or(p.map(|p| p.consumers)).unwrap_or(1);
    let rate = cli.rate.or(p.map(|p| p.rate)).unwrap_or(0.0);
    let acks = cli.acks.or(p.map(|p| p.acks)).unwrap_or(Acks::All);
    let linger_ms = cli.linger_ms.or(p.map(|p| p.linger_ms));
    let batch_size = cli.batch_size.or(p.map(|p| p.batch_size));

    if topic.is_empty() || topic.len() > 249 {
        return Err(usage("--topic must be 1..=249 characters"));
    }
    if !(1..=PARTITIONS_MAX).contains(&partitions) {
        return Err(usage(format!(
            "--partitions must be in 1..={PARTITIONS_MAX}"
        )));
    }
    if cli.replication_factor < 1 {
        return Err(usage("--replication-factor must be at least 1"));
    }
    if message_size > MESSAGE_SIZE_MAX {
        return Err(usage(format!(
            "--message-size must be at most {MESSAGE_SIZE_MAX}"
        )));
    }
    if !(0.0..=1.0).contains(&cli.random_ratio) {
        return Err(usage("--random-ratio must be within 0..=1"));
    }
    if !(1..=CLIENTS_MAX).contains(&producers) || !(1..=CLIENTS_MAX).contains(&consumers) {
        return Err(usage(format!(
            "--producers and --consumers must be in 1..={CLIENTS_MAX}"
        )));
    }
    if !rate.is_finite() || rate < 0.0 {
        return Err(usage("--rate must be a non-negative number"));
    }
    if cli.messages == Some(0) {
        return Err(usage("--messages must be at least 1"));
    }
    if cli.keyed && cli.key_count == 0 {
        return Err(usage("--key-count must be at least 1"));
    }
    if cli.from_beginning && cli.mode == Mode::E2e {
        return Err(usage(
            "--from-beginning applies to consume mode only (e2e consumes what it produces)",
        ));
    }
    if cli.duration == Some(Duration::ZERO) {
        return Err(usage("--duration must be positive"));
    }
    let duration = match (cli.duration, cli.messages, cli.from_beginning) {
        (Some(d), _, _) => Some(d),
        (None, Some(_), _) | (None, None, true) => None,
        (None, None, false) => Some(DURATION_DEFAULT),
    };
    let warmup = match cli.warmup {
        Some(w) => w,
        None if duration.is_some() && cli.messages.is_none() && !cli.from_beginning => {
            WARMUP_DEFAULT
        }
        None => Duration::ZERO,
    };
    let mut client_overrides = BTreeMap::new();
    for (k, v) in &cli.client_config {
        client_overrides.insert(k.clone(), v.clone());
    }
    Ok(Config {
        mode: cli.mode,
        workload: cli.workload,
        bootstrap: cli.bootstrap.clone(),
        topic,
        partitions,
        partitions_requested: cli.partitions.is_some() || preset.is_some(),
        replication_factor: cli.replication_factor,
        message_size,
        random_ratio: cli.random_ratio,
        producers,
        consumers,
        rate_msgs_per_sec: (rate > 0.0).then_some(rate),
        duration_s: duration.map(|d| d.as_secs_f64()),
        warmup_s: warmup.as_secs_f64(),
        messages: cli.messages,
        acks,
        compression: cli.compression,
        batch_size,
        linger_ms,
        keyed: cli.keyed,
        key_count: cli.key_count,
        transaction_size: cli.transaction_size.filter(|n| *n > 0),
        group: cli.group.clone(),
        from_beginning: cli.from_beginning,
        client_overrides,
        json: cli.json.clone(),
        hdr_file: cli.hdr_file.clone(),
        fail_on_error: cli.fail_on_error,
        connect_timeout_s: cli.connect_timeout.as_secs_f64(),
        idle_timeout_s: cli.idle_timeout.as_secs_f64(),
        drain_timeout_s: cli.drain_timeout.as_secs_f64(),
        seed: cli.seed.unwrap_or(seed_fallback),
        quiet: cli.quiet,
    })
}

/// Parses `500ms`, `10s`, `1.5s`, `2m`, `1h`, `250us`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("`{text}`: expected a number with a unit, e.g. 10s"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: `{number}` is not a number"))?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use us, ms, s, m, h)"
            ))
        }
    };
    let seconds = value * seconds_per_unit;
    // A week bounds every run; it also keeps Duration::from_secs_f64 away from overflow.
    if !seconds.is_finite() || seconds > 7.0 * 86_400.0 {
        return Err(format!("`{text}`: must be at most a week"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses one `-X key=value`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{text}`: expected KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["sluice-load"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all) {
            Ok(c) => c,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_reject_garbage() {
        for bad in [
            "",
            "s",
            "10x",
            "-1s",
            "1..2s",
            "1e3s",
            "10 parsecs",
            "9999999h",
            "abc",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn key_values_parse() {
        assert_eq!(
            parse_key_value("linger.ms=5"),
            Ok(("linger.ms".into(), "5".into()))
        );
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn defaults_for_duration_runs() {
        let c = resolve(&cli(&["produce"]), 7).unwrap();
        assert_eq!(c.topic, "sluice-load");
        assert_eq!(c.partitions, 1);
        assert_eq!(c.message_size, 1024);
        assert_eq!(c.rate_msgs_per_sec, None);
        assert_eq!(c.duration_s, Some(10.0));
        assert_eq!(c.warmup_s, 2.0);
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.seed, 7);
        assert_eq!(c.bootstrap, "127.0.0.1:9092");
    }

    #[test]
    fn messages_runs_have_no_default_duration_or_warmup() {
        let c = resolve(&cli(&["produce", "--messages", "20000"]), 1).unwrap();
        assert_eq!(c.duration_s, None);
        assert_eq!(c.warmup_s, 0.0);
        let c = resolve(&cli(&["consume", "--from-beginning"]), 1).unwrap();
        assert_eq!(c.duration_s, None);
        let c = resolve(&cli(&["produce", "--messages", "5", "--duration", "3s"]), 1).unwrap();
        assert_eq!(c.duration_s, Some(3.0));
    }

    #[test]
    fn presets_fill_missing_flags() {
        let c = resolve(&cli(&["e2e", "--workload", "omb-1x100-1k-50k"]), 1).unwrap();
        assert_eq!(c.partitions, 100);
        assert_eq!(c.message_size, 1024);
        assert_eq!(c.producers, 4);
        assert_eq!(c.consumers, 4);
        assert_eq!(c.rate_msgs_per_sec, Some(50_000.0));
        assert_eq!(c.linger_ms, Some(1));
        assert_eq!(c.batch_size, Some(1_048_576));
        assert_eq!(c.topic, "sluice-load-omb-1x100");
        let c = resolve(&cli(&["e2e", "--workload", "omb-1x100-1k-200k"]), 1).unwrap();
        assert_eq!(c.rate_msgs_per_sec, Some(200_000.0));
        let c = resolve(&cli(&["e2e", "--workload", "omb-1x100-1k-max"]), 1).unwrap();
        assert_eq!(c.rate_msgs_per_sec, None);
    }

    #[test]
    fn explicit_flags_beat_presets() {
        let args = [
            "e2e",
            "--workload",
            "omb-1x100-1k-50k",
            "--rate",
            "10",
            "--partitions",
            "3",
            "--producers",
            "1",
            "--topic",
            "t",
            "--acks",
            "1",
        ];
        let c = resolve(&cli(&args), 1).unwrap();
        assert_eq!(c.rate_msgs_per_sec, Some(10.0));
        assert_eq!(c.partitions, 3);
        assert_eq!(c.producers, 1);
        assert_eq!(c.consumers, 4);
        assert_eq!(c.topic, "t");
        assert_eq!(c.acks, Acks::One);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["produce", "--random-ratio", "1.5"][..],
            &["produce", "--partitions", "0"],
            &["produce", "--producers", "0"],
            &["produce", "--rate=-5"],
            &["produce", "--messages", "0"],
            &["e2e", "--from-beginning"],
            &["produce", "--duration", "0s"],
        ] {
            assert!(resolve(&cli(args), 1).is_err(), "{args:?} accepted");
        }
        for args in [
            &["sluice-load", "nosuchmode"][..],
            &["sluice-load", "produce", "--acks", "2"],
            &["sluice-load", "produce", "--compression", "brotli"],
            &["sluice-load", "produce", "--duration", "ten"],
            &["sluice-load", "produce", "-X", "nokey"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn client_overrides_repeat() {
        let c = resolve(
            &cli(&["produce", "-X", "linger.ms=7", "-X", "client.id=x"]),
            1,
        )
        .unwrap();
        assert_eq!(
            c.client_overrides.get("linger.ms").map(String::as_str),
            Some("7")
        );
        assert_eq!(c.client_overrides.len(), 2);
    }
}
