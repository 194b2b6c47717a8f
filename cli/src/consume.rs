//! `sluice consume TOPIC`: prints records, for quick tests from a terminal.
//!
//! No consumer group: partitions are assigned directly (like `kcat -C`) and nothing is
//! committed. Follows the topic until `--count` records were printed, or with `--exit-at-end`
//! until every partition was read to its high watermark; each Fetch waits at most
//! [`FETCH_WAIT_MS`] on the broker.
//!
//! Record batches in a Fetch answer (see `storage` for the full layout):
//! ```text
//! base_offset: i64 | batch_length: i32 | partition_leader_epoch: i32 | magic: i8 | crc: u32 |
//! attributes: i16 | last_offset_delta: i32 | ... | records_count: i32 (at byte 57) | records
//! ```
//! A Fetch answer may end in a partial batch (cut at `max_bytes`); it is skipped, not an error.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::records::Record;
use serde_json::json;
use sluice_net::records::decode_records;

use crate::client::{sb, versions, Session, EARLIEST, LATEST};
use crate::{AdminError, ClientArgs, Format};

/// Longest a Fetch waits on the broker for new data.
pub const FETCH_WAIT_MS: i32 = 500;
/// Bytes per partition per Fetch.
const PARTITION_FETCH_BYTES_MAX: i32 = 1 << 20;
/// Bytes per Fetch answer.
const FETCH_BYTES_MAX: i32 = 8 << 20;
/// Records accepted in one batch header: guards the decoder's allocation against bad counts.
const BATCH_RECORDS_MAX: i32 = 1 << 20;
/// Size of a record batch header up to and including `records_count`.
const BATCH_HEADER_BYTES: usize = 61;
const OFFSET_OUT_OF_RANGE: i16 = 1;

#[derive(Debug, Args)]
pub struct ConsumeCmd {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic to read.
    pub topic: String,
    /// Partition to read (repeatable; default: all).
    #[arg(long = "partition", short = 'p')]
    pub partitions: Vec<i32>,
    /// Start at the log start offset (default: the log end, only new records).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset in every selected partition.
    #[arg(long, short = 'o')]
    pub offset: Option<i64>,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Stop once every partition was read up to its high watermark.
    #[arg(long, short = 'e')]
    pub exit_at_end: bool,
    /// Print the key before the value (table format).
    #[arg(long)]
    pub print_key: bool,
    /// Print headers before the value as k=v,k=v (table format).
    #[arg(long)]
    pub print_headers: bool,
    /// Print partition:offset before each record (table format).
    #[arg(long)]
    pub print_offset: bool,
    /// Separator between printed fields (table format).
    #[arg(long, default_value = "\t", value_name = "SEP")]
    pub key_separator: String,
}

/// Fetch position of one partition.
struct Position {
    leader: i32,
    offset: i64,
    /// Last high watermark seen; `None` before the first Fetch answer.
    high_watermark: Option<i64>,
}

pub fn run(cmd: ConsumeCmd) -> Result<(), AdminError> {
    let c = &cmd.client;
    let mut s = c.session()?;
    let leaders = s.leaders(std::slice::from_ref(&cmd.topic))?;
    let mut selected: Vec<i32> = if cmd.partitions.is_empty() {
        leaders.keys().map(|(_, p)| *p).collect()
    } else {
        cmd.partitions.clone()
    };
    selected.sort_unstable();
    selected.dedup();
    for p in &selected {
        if !leaders.contains_key(&(cmd.topic.clone(), *p)) {
            return Err(AdminError::Usage(format!(
                "topic {:?} has no partition {p} (it has {})",
                cmd.topic,
                leaders.len()
            )));
        }
    }
    let tps: Vec<_> = selected.iter().map(|p| (cmd.topic.clone(), *p)).collect();
    let starts = match (cmd.offset, cmd.from_beginning) {
        (Some(o), _) => tps.iter().map(|tp| (tp.clone(), o)).collect(),
        (None, true) => s.list_offsets(&tps, EARLIEST)?,
        (None, false) => s.list_offsets(&tps, LATEST)?,
    };
    let mut positions: BTreeMap<i32, Position> = tps
        .iter()
        .map(|tp| {
            (
                tp.1,
                Position {
                    leader: leaders.get(tp).copied().unwrap_or(-1),
                    offset: starts.get(tp).copied().unwrap_or(0),
                    high_watermark: None,
                },
            )
        })
        .collect();
    let mut printer = Printer {
        cmd: &cmd,
        printed: 0,
        out: std::io::BufWriter::new(std::io::stdout().lock()),
    };
    if cmd.count == Some(0) {
        return Ok(());
    }
    loop {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (p, pos) in &positions {
            by_leader.entry(pos.leader).or_default().push(*p);
        }
        for (leader, partitions) in by_leader {
            let resp = fetch(&mut s, &cmd.topic, leader, &partitions, &positions)?;
            if consume_answer(&mut s, &cmd.topic, resp, &mut positions, &mut printer)? {
                return printer.flush();
            }
        }
        printer.flush()?;
        if cmd.exit_at_end
            && positions
                .values()
                .all(|p| p.high_watermark.is_some_and(|hw| p.offset >= hw))
        {
            return Ok(());
        }
    }
}

fn fetch(
    s: &mut Session,
    topic: &str,
    leader: i32,
    partitions: &[i32],
    positions: &BTreeMap<i32, Position>,
) -> Result<FetchResponse, AdminError> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES_MAX)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(sb(topic)))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(positions.get(p).map_or(0, |pos| pos.offset))
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(PARTITION_FETCH_BYTES_MAX)
                    })
                    .collect(),
            )])
        .with_rack_id(sb(""));
    let resp: FetchResponse = s.broker_or_bootstrap(leader)?.call_waiting(
        ApiKey::Fetch,
        versions::FETCH,
        &req,
        Duration::from_millis(FETCH_WAIT_MS as u64),
    )?;
    AdminError::check(resp.error_code, None, format!("fetch from {topic}"))?;
    Ok(resp)
}

/// Prints the records of one Fetch answer; `true` once `--count` records were printed.
fn consume_answer(
    s: &mut Session,
    topic: &str,
    resp: FetchResponse,
    positions: &mut BTreeMap<i32, Position>,
    printer: &mut Printer<'_>,
) -> Result<bool, AdminError> {
    for t in resp.responses {
        for pd in t.partitions {
            let Some(pos) = positions.get_mut(&pd.partition_index) else {
                continue;
            };
            if pd.error_code == OFFSET_OUT_OF_RANGE {
                let tp = (topic.to_owned(), pd.partition_index);
                let earliest = s.list_offsets(std::slice::from_ref(&tp), EARLIEST)?;
                let to = earliest.get(&tp).copied().unwrap_or(0);
                eprintln!(
                    "sluice: offset {} of {topic}-{} is out of range; continuing at {to}",
                    pos.offset, pd.partition_index
                );
                pos.offset = to;
                continue;
            }
            AdminError::check(
                pd.error_code,
                None,
                format!("fetch {topic}-{}", pd.partition_index),
            )?;
            pos.high_watermark = Some(pd.high_watermark);
            let Some(records) = pd.records else {
                continue;
            };
            for batch in split_batches(records) {
                let next = batch.next_offset;
                for r in decode_batch(batch.bytes, topic, pd.partition_index)? {
                    if r.control || r.offset < pos.offset {
                        continue;
                    }
                    pos.offset = r.offset + 1;
                    if printer.print(topic, pd.partition_index, &r)? {
                        return Ok(true);
                    }
                }
                pos.offset = pos.offset.max(next);
            }
        }
    }
    Ok(false)
}

/// One complete record batch and the offset after it.
struct RawBatch {
    bytes: Bytes,
    next_offset: i64,
}

/// Splits a Fetch record set into complete batches; a trailing partial batch is dropped.
fn split_batches(mut records: Bytes) -> Vec<RawBatch> {
    let mut out = Vec::new();
    while records.len() >= 12 {
        let base_offset = i64::from_be_bytes(records[0..8].try_into().unwrap_or([0; 8]));
        let length = i32::from_be_bytes(records[8..12].try_into().unwrap_or([0; 4]));
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let total = 12 + length;
        if records.len() < total || total < BATCH_HEADER_BYTES {
            break;
        }
        let batch = records.split_to(total);
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().unwrap_or([0; 4]));
        out.push(RawBatch {
            next_offset: base_offset + i64::from(last_offset_delta) + 1,
            bytes: batch,
        });
    }
    out
}

/// Decodes one complete batch; bad bytes are an error naming the partition.
fn decode_batch(bytes: Bytes, topic: &str, partition: i32) -> Result<Vec<Record>, AdminError> {
    let bad = |reason: String| AdminError::Protocol {
        addr: format!("{topic}-{partition}"),
        reason: format!("record batch: {reason}"),
    };
    let magic = bytes.get(16).copied().unwrap_or(0);
    if magic != 2 {
        return Err(bad(format!("magic {magic} (only v2 batches are read)")));
    }
    let count = i32::from_be_bytes(bytes[57..61].try_into().unwrap_or([0; 4]));
    if !(0..=BATCH_RECORDS_MAX).contains(&count) {
        return Err(bad(format!("records count {count}")));
    }
    decode_records(bytes).map_err(bad)
}

struct Printer<'a> {
    cmd: &'a ConsumeCmd,
    printed: u64,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
}

impl Printer<'_> {
    /// Prints one record; `true` once `--count` is reached.
    fn print(&mut self, topic: &str, partition: i32, r: &Record) -> Result<bool, AdminError> {
        let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        let line = match self.cmd.client.format {
            Format::Json => {
                let headers: serde_json::Map<String, serde_json::Value> = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(text(v))))
                    .collect();
                let mut l = json!({
                    "topic": topic,
                    "partition": partition,
                    "offset": r.offset,
                    "timestamp": r.timestamp,
                    "key": text(&r.key),
                    "value": text(&r.value),
                    "headers": headers,
                })
                .to_string();
                l.push('\n');
                l
            }
            Format::Table => {
                let sep = &self.cmd.key_separator;
                let mut l = String::new();
                if self.cmd.print_offset {
                    l.push_str(&format!("{partition}:{}{sep}", r.offset));
                }
                if self.cmd.print_headers {
                    let hs: Vec<String> = r
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{}={}", k.as_str(), text(v).unwrap_or_default()))
                        .collect();
                    l.push_str(&hs.join(","));
                    l.push_str(sep);
                }
                if self.cmd.print_key {
                    l.push_str(&text(&r.key).unwrap_or_default());
                    l.push_str(sep);
                }
                l.push_str(&text(&r.value).unwrap_or_default());
                l.push('\n');
                l
            }
        };
        self.write(line.as_bytes())?;
        self.printed += 1;
        Ok(self.cmd.count.is_some_and(|n| self.printed >= n))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), AdminError> {
        match self.out.write_all(bytes) {
            Ok(()) => Ok(()),
            // `| head`: the reader is gone; stop quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            Err(e) => Err(AdminError::Output(e.to_string())),
        }
    }

    fn flush(&mut self) -> Result<(), AdminError> {
        match self.out.flush() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            Err(e) => Err(AdminError::Output(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use sluice_net::records::BatchBuilder;

    fn batch(n: i64) -> Bytes {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(None, Some(Bytes::from(format!("v{i}"))), 1, &[]);
        }
        // Offsets from 10, as if stored there.
        let mut bytes = b.build().unwrap().to_vec();
        bytes[..8].copy_from_slice(&10i64.to_be_bytes());
        Bytes::from(bytes)
    }

    #[test]
    fn partial_trailing_batch_is_dropped() {
        let one = batch(3);
        let mut two = BytesMut::from(&one[..]);
        two.extend_from_slice(&one[..one.len() - 5]);
        let batches = split_batches(two.freeze());
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].next_offset, 13);
        let recs = decode_batch(batches[0].bytes.clone(), "t", 0).unwrap();
        assert_eq!(recs.len(), 3);
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let good = batch(2);
        for cut in 0..good.len() {
            let mut b = BytesMut::from(&good[..]);
            // Keep the length consistent so the batch is "complete" yet its content is garbage.
            for byte in b.iter_mut().skip(cut.max(12)) {
                *byte = 0xff;
            }
            for rb in split_batches(b.freeze()) {
                let _ = decode_batch(rb.bytes, "t", 0);
            }
        }
        let mut huge_count = BytesMut::from(&good[..]);
        huge_count[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let rb = split_batches(huge_count.freeze());
        assert!(decode_batch(rb[0].bytes.clone(), "t", 0).is_err());
    }
}
