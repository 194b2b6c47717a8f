//! `sluice produce TOPIC [VALUE...]`: records from the arguments, or one per stdin line, for
//! quick tests from a terminal.
//!
//! Partitioning follows Kafka's default partitioner where it matters: `--partition` wins, then
//! murmur2 of the key (so keyed records land where a Java or librdkafka producer puts them),
//! then one partition per batch for unkeyed records (sticky).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use serde::Serialize;
use sluice_net::records::BatchBuilder;

use crate::client::{sb, versions, Session};
use crate::output::{emit, Table};
use crate::{parse_key_value, AdminError, ClientArgs};

/// Records per produce request; bounds memory when reading a long stdin.
const BATCH_RECORDS_MAX: usize = 1000;
/// Bytes of keys and values per produce request (below Kafka's default max.message.bytes).
const BATCH_BYTES_MAX: usize = 512 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Acks {
    /// Wait for every in-sync replica (acks=-1).
    All,
    /// Wait for the leader only (acks=1).
    Leader,
}

#[derive(Debug, Args)]
pub struct ProduceCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic to write to.
    pub topic: String,
    /// Record values; without any, each stdin line is one record.
    pub values: Vec<String>,
    /// Key of every record.
    #[arg(long, short = 'k', conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each value (or line) at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Header KEY=VALUE on every record (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Partition to write to (default: by key hash, else one partition per batch).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Acknowledgement to wait for.
    #[arg(long, value_enum, default_value = "all")]
    pub acks: Acks,
}

/// One record before partitioning.
struct Pending {
    key: Option<Bytes>,
    value: Bytes,
}

#[derive(Serialize, Default)]
struct PartitionSummary {
    partition: i32,
    records: u64,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Serialize)]
struct Summary {
    topic: String,
    records: u64,
    partitions: Vec<PartitionSummary>,
}

pub fn run(cmd: ProduceCmd) -> Result<(), AdminError> {
    let c = &cmd.client;
    let headers = cmd
        .headers
        .iter()
        .map(|h| parse_key_value(h))
        .collect::<Result<Vec<_>, _>>()?;
    if cmd.key_separator.as_deref() == Some("") {
        return Err(AdminError::Usage(
            "--key-separator must not be empty".to_owned(),
        ));
    }
    let mut s = c.session()?;
    let leaders = s.leaders(std::slice::from_ref(&cmd.topic))?;
    let partition_count = leaders.len();
    if partition_count == 0 {
        return Err(AdminError::NotFound(format!(
            "topic {:?} has no partitions",
            cmd.topic
        )));
    }
    if let Some(p) = cmd.partition {
        if !leaders.contains_key(&(cmd.topic.clone(), p)) {
            return Err(AdminError::Usage(format!(
                "topic {:?} has no partition {p} (it has {partition_count})",
                cmd.topic
            )));
        }
    }
    let mut producer = Producer {
        cmd: &cmd,
        headers,
        leaders: leaders.into_iter().map(|((_, p), l)| (p, l)).collect(),
        sticky: sticky_start(partition_count),
        summary: BTreeMap::new(),
    };
    let mut batch: Vec<Pending> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut line_no = 0usize;
    let mut push = |raw: Bytes, producer: &mut Producer<'_>, s: &mut Session| {
        line_no += 1;
        let rec = producer.split(raw, line_no)?;
        batch_bytes += rec.value.len() + rec.key.as_ref().map_or(0, Bytes::len);
        batch.push(rec);
        if batch.len() >= BATCH_RECORDS_MAX || batch_bytes >= BATCH_BYTES_MAX {
            producer.send(s, std::mem::take(&mut batch))?;
            batch_bytes = 0;
        }
        Ok::<(), AdminError>(())
    };
    if cmd.values.is_empty() {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .map_err(|e| AdminError::Usage(format!("cannot read stdin: {e}")))?;
            if n == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            push(Bytes::copy_from_slice(&line), &mut producer, &mut s)?;
        }
    } else {
        for v in &cmd.values {
            push(Bytes::from(v.clone()), &mut producer, &mut s)?;
        }
    }
    producer.send(&mut s, batch)?;
    let summary = Summary {
        topic: cmd.topic.clone(),
        records: producer.summary.values().map(|p| p.records).sum(),
        partitions: producer.summary.into_values().collect(),
    };
    emit(c.format, &summary, || {
        let mut text = format!(
            "Produced {} records to topic {:?}.\n",
            summary.records, summary.topic
        );
        let mut t = Table::new(&["PARTITION", "RECORDS", "FIRST-OFFSET", "LAST-OFFSET"]);
        for p in &summary.partitions {
            t.row(vec![
                p.partition.to_string(),
                p.records.to_string(),
                p.first_offset.to_string(),
                p.last_offset.to_string(),
            ]);
        }
        if !t.is_empty() {
            text.push_str(&t.render());
        }
        text
    })
}

struct Producer<'a> {
    cmd: &'a ProduceCmd,
    headers: Vec<(String, String)>,
    /// `partition -> leader node id`.
    leaders: BTreeMap<i32, i32>,
    /// Partition for the next batch of unkeyed records.
    sticky: usize,
    summary: BTreeMap<i32, PartitionSummary>,
}

impl Producer<'_> {
    /// Applies `--key` / `--key-separator` to one input.
    fn split(&self, raw: Bytes, line_no: usize) -> Result<Pending, AdminError> {
        if let Some(sep) = &self.cmd.key_separator {
            let sep = sep.as_bytes();
            let at = raw
                .windows(sep.len())
                .position(|w| w == sep)
                .ok_or_else(|| {
                    AdminError::Usage(format!(
                        "record {line_no} has no key separator {:?}",
                        self.cmd.key_separator.as_deref().unwrap_or("")
                    ))
                })?;
            return Ok(Pending {
                key: Some(raw.slice(..at)),
                value: raw.slice(at + sep.len()..),
            });
        }
        Ok(Pending {
            key: self.cmd.key.as_ref().map(|k| Bytes::from(k.clone())),
            value: raw,
        })
    }

    fn partition_of(&self, rec: &Pending) -> i32 {
        if let Some(p) = self.cmd.partition {
            return p;
        }
        let n = self.leaders.len().max(1);
        let index = match &rec.key {
            Some(k) => (murmur2(k) & 0x7fff_ffff) as usize % n,
            None => self.sticky % n,
        };
        self.leaders.keys().nth(index).copied().unwrap_or(0)
    }

    /// Sends `batch`, grouped by partition and leader; waits for every acknowledgement.
    fn send(&mut self, s: &mut Session, batch: Vec<Pending>) -> Result<(), AdminError> {
        if batch.is_empty() {
            return Ok(());
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let headers: Vec<(String, Option<Bytes>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Some(Bytes::from(v.clone()))))
            .collect();
        let mut by_partition: BTreeMap<i32, BatchBuilder> = BTreeMap::new();
        for rec in batch {
            let p = self.partition_of(&rec);
            let records = by_partition.entry(p).or_default();
            records.push(rec.key, Some(rec.value), now_ms, &headers);
        }
        self.sticky = self.sticky.wrapping_add(1);
        let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for (p, records) in by_partition {
            counts.insert(p, records.len() as u64);
            let bytes = records
                .build()
                .map_err(|e| AdminError::Usage(format!("cannot encode records: {e}")))?;
            let leader = self.leaders.get(&p).copied().unwrap_or(-1);
            by_leader.entry(leader).or_default().push(
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(bytes)),
            );
        }
        let timeout_ms = i32::try_from(s.timeout().as_millis()).unwrap_or(i32::MAX);
        for (leader, partitions) in by_leader {
            let req = ProduceRequest::default()
                .with_acks(match self.cmd.acks {
                    Acks::All => -1,
                    Acks::Leader => 1,
                })
                .with_timeout_ms(timeout_ms)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(sb(self.cmd.topic.as_str())))
                    .with_partition_data(partitions)]);
            let resp: ProduceResponse =
                s.broker_or_bootstrap(leader)?
                    .call(ApiKey::Produce, versions::PRODUCE, &req)?;
            for t in &resp.responses {
                for p in &t.partition_responses {
                    let detail = p.error_message.as_ref().map(|m| m.to_string()).or_else(|| {
                        p.record_errors.first().and_then(|r| {
                            r.batch_index_error_message.as_ref().map(|m| m.to_string())
                        })
                    });
                    AdminError::check(
                        p.error_code,
                        detail.as_deref(),
                        format!("produce to {}-{}", self.cmd.topic, p.index),
                    )?;
                    let n = counts.get(&p.index).copied().unwrap_or(0);
                    let e = self.summary.entry(p.index).or_insert(PartitionSummary {
                        partition: p.index,
                        first_offset: p.base_offset,
                        ..Default::default()
                    });
                    e.records += n;
                    e.last_offset = p.base_offset + n as i64 - 1;
                }
            }
        }
        Ok(())
    }
}

/// A start partition for unkeyed records that differs between runs.
fn sticky_start(partitions: usize) -> usize {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize);
    nanos % partitions.max(1)
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), used by the default
/// partitioner for keyed records.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: &[(&str, i32)] = &[
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input.as_bytes()), *want, "{input}");
        }
    }
}
