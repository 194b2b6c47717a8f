//! Partition work a shard does for requests, whichever shard received them: the data carried by
//! the mesh's messages ([`super::mesh::MeshMsg`]) and the code that runs it on the owner shard.
//! Handlers build these requests and turn the outcomes into Kafka responses.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{join_all, select_all};
use kafka_protocol::ResponseError;

use super::Shard;
use crate::errors::storage_error;
use crate::partition::{records, Partition};
use crate::util::now_ms;
use sluice_storage::{Log, ReadResult, StorageError};

/// Outcome of one partition's append.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    pub error: i16,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub message: Option<String>,
}

impl AppendOutcome {
    pub fn err(e: ResponseError, message: Option<String>) -> AppendOutcome {
        AppendOutcome {
            error: e.code(),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            message,
        }
    }
}

/// Resolves to an append's outcome once its acks are satisfied.
pub type AppendFuture = Pin<Box<dyn Future<Output = AppendOutcome>>>;

/// The producer (id, epoch) of the first transactional batch in `records` that carries a
/// sequence (a client's), if any: the batches KIP-890 part 1 verifies.
pub fn transactional_producer(records: &[u8]) -> Option<(i64, i16)> {
    let mut pos = 0usize;
    while let Some(h) = records
        .get(pos..)
        .and_then(|rest| sluice_storage::BatchHeader::parse(rest).ok())
    {
        if h.is_transactional() && !h.is_control() && h.producer_id >= 0 && h.base_sequence >= 0 {
            return Some((h.producer_id, h.producer_epoch));
        }
        pos += h.total_size();
    }
    None
}

/// KIP-890: per (topic, partition) of this shard, the guard under which `producer`'s
/// transactional batch must be verified with (or added by) the coordinator before it is
/// appended (`epoch_bump`: a transaction version 2 producer's), or `None`
/// when it needs no verification (its transaction is open there, or the append will refuse
/// it anyway: unknown partition, not the leader, stale epoch). See docs/architecture.md §7.1.
pub fn txn_guards(
    shard: &Shard,
    parts: &[(String, i32)],
    producer: (i64, i16),
    epoch_bump: bool,
) -> Vec<Option<u64>> {
    parts
        .iter()
        .map(|(topic, index)| {
            let p = shard.partition(topic, *index)?;
            if !p.is_leader(None) {
                return None;
            }
            p.log.verification_guard(producer.0, producer.1, epoch_bump)
        })
        .collect()
}

/// Appends on this shard now; the returned future resolves when `acks` is satisfied.
/// `guard`: the verification guard of a transactional producer's batch (see [`txn_guards`]).
pub fn append(
    shard: &Shard,
    topic: &str,
    index: i32,
    records: Bytes,
    acks: i16,
    guard: Option<u64>,
) -> AppendFuture {
    let Some(p) = shard.partition(topic, index) else {
        return Box::pin(std::future::ready(AppendOutcome::err(
            ResponseError::UnknownTopicOrPartition,
            None,
        )));
    };
    if !p.is_leader(None) {
        return Box::pin(std::future::ready(AppendOutcome::err(
            ResponseError::NotLeaderOrFollower,
            None,
        )));
    }
    // Kafka refuses acks=all up front when the ISR is below min.insync.replicas: the write
    // could not be kept if the leader failed.
    if acks == -1 && !p.isr_allows_writes() {
        return Box::pin(std::future::ready(AppendOutcome::err(
            ResponseError::NotEnoughReplicas,
            None,
        )));
    }
    if p.log.config().cleanup_compact {
        if let Err(why) = crate::partition::records::check_all_keyed(&records) {
            return Box::pin(std::future::ready(AppendOutcome::err(
                ResponseError::InvalidRecord,
                Some(why),
            )));
        }
    }
    // KIP-890: a transactional batch that would open its producer's transaction here must have
    // been verified with (or added by) the coordinator, under a guard no marker has withdrawn
    // since (Kafka's verification guard). A guard means it was, whatever the flag says: a
    // transaction version 2 producer's batches are always added.
    if shard.config.args.transaction_partition_verification_enable || guard.is_some() {
        if let Some((pid, epoch)) = transactional_producer(&records) {
            if !p.log.txn_verified(pid, epoch, guard) {
                crate::metrics::ShardMetrics::add(&shard.metrics.txn_verification_failures, 1);
                return Box::pin(std::future::ready(AppendOutcome::err(
                    ResponseError::InvalidTxnState,
                    Some("Partition was not added to the transaction".to_owned()),
                )));
            }
        }
    }
    match p.append(records, now_ms()) {
        Err(e) => Box::pin(std::future::ready(AppendOutcome::err(
            storage_error(&e),
            Some(e.to_string()),
        ))),
        Ok(info) => Box::pin(async move {
            match p.wait_acks(&info, acks).await {
                Ok(()) => AppendOutcome {
                    error: 0,
                    base_offset: info.base_offset,
                    log_append_time_ms: info.log_append_time_ms,
                    log_start_offset: info.log_start_offset,
                    message: None,
                },
                Err(e) => AppendOutcome::err(e.code(), Some(e.to_string())),
            }
        }),
    }
}

/// One partition of a Fetch.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub topic: String,
    pub index: i32,
    pub offset: i64,
    pub max_bytes: usize,
    /// At least one batch comes back, however large (the response's first partition, or one
    /// given all of its `partition_max_bytes`); without, none if the first is larger than
    /// `max_bytes`.
    pub min_one: bool,
    /// The leader epoch the fetcher believes current (KIP-320; -1: not given).
    pub current_leader_epoch: i32,
    /// Set when a follower fetches (a replica's Fetch).
    pub replica: Option<ReplicaFetch>,
    /// isolation_level = READ_COMMITTED: read below the last stable offset, and name the
    /// aborted transactions in what was read.
    pub read_committed: bool,
}

/// What a follower's Fetch says about one partition besides its offset.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaFetch {
    pub replica_id: i32,
    /// The leader epoch the follower believes current (-1: unknown).
    pub current_leader_epoch: i32,
    /// The epoch of the last batch the follower holds (-1: none, or an older client).
    pub last_fetched_epoch: i32,
}

/// What a Fetch read of one partition found.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    pub error: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// read_committed: (producer id, first offset) of the aborted transactions in the data.
    pub aborted: Vec<(i64, i64)>,
    pub log_start_offset: i64,
    pub records: Vec<Bytes>,
    pub bytes: usize,
    /// A follower's log diverges from the leader's: (epoch, end offset) to truncate to.
    pub diverging: Option<(i32, i64)>,
    /// Answered without data for want of a share of the response, and the partition has data
    /// past the offset (for a consumer below its bound, for a follower written).
    pub has_more: bool,
}

impl ReadOutcome {
    pub fn not_leader() -> ReadOutcome {
        ReadOutcome::error(ResponseError::NotLeaderOrFollower)
    }

    pub fn error(error: ResponseError) -> ReadOutcome {
        ReadOutcome {
            error: error.code(),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            ..Default::default()
        }
    }
}

/// Reads `reqs` on this (owner) shard, each within its `max_bytes` (its share of the response;
/// see `ReadRequest::min_one` for a first batch larger than that); a partition whose share is
/// zero is answered with its offsets and no data. The partitions are read at once: the ones
/// that go to the disk wait for it together.
pub async fn read(shard: Rc<Shard>, reqs: Vec<ReadRequest>) -> Vec<ReadOutcome> {
    join_all(reqs.into_iter().map(|r| read_one(&shard, r))).await
}

async fn read_one(shard: &Rc<Shard>, r: ReadRequest) -> ReadOutcome {
    let Some(p) = shard
        .partition(&r.topic, r.index)
        .filter(|p| !p.log.is_closed())
    else {
        // Gone since the request was routed (a deleted topic, while a fetch waited), or its
        // log closed (being deleted, or the broker stopping): unknown, as a new fetch would be
        // told; else no longer ours to serve.
        let known = shard
            .metadata()
            .topic(&r.topic)
            .is_some_and(|t| t.has_partition(r.index));
        return if known {
            ReadOutcome::not_leader()
        } else {
            ReadOutcome::error(ResponseError::UnknownTopicOrPartition)
        };
    };
    if !p.is_leader(None) {
        return ReadOutcome::not_leader();
    }
    let room = r.max_bytes;
    // KIP-320: a consumer with an older epoch missed a leader change (it refreshes its
    // metadata); one with a newer epoch is ahead of this broker (it retries).
    let epoch = p.leader_epoch.get();
    if r.replica.is_none() && r.current_leader_epoch >= 0 && r.current_leader_epoch != epoch {
        return ReadOutcome::error(if r.current_leader_epoch < epoch {
            ResponseError::FencedLeaderEpoch
        } else {
            ResponseError::UnknownLeaderEpoch
        });
    }
    if let Some(replica) = r.replica {
        return read_for_replica(shard, &p, &r, replica, room).await;
    }
    let log = &p.log;
    let high_watermark = p.high_watermark();
    let last_stable_offset = p.last_stable_offset();
    // Bounded by the high watermark (or, read_committed, the last stable offset) as read
    // synchronously above.
    let bound = if r.read_committed {
        last_stable_offset
    } else {
        high_watermark
    };
    if room == 0 {
        return ReadOutcome {
            high_watermark,
            last_stable_offset,
            log_start_offset: log.log_start_offset(),
            has_more: r.offset < bound,
            ..Default::default()
        };
    }
    let read = match p.read_below(r.offset, room, r.min_one, bound).await {
        Ok(res) if r.read_committed && res.bytes > 0 => log
            .aborted_transactions(r.offset, bound)
            .await
            .map(|aborted| (res, aborted)),
        other => other.map(|res| (res, Vec::new())),
    };
    let mut o = read_outcome(read, log, high_watermark);
    o.last_stable_offset = last_stable_offset;
    o
}

/// What a read of `log` found (its batches and the aborted transactions in them), or its
/// error; the offsets as the read saw them.
fn read_outcome(
    read: Result<(ReadResult, Vec<(i64, i64)>), StorageError>,
    log: &Log,
    high_watermark: i64,
) -> ReadOutcome {
    match read {
        Ok((res, aborted)) => ReadOutcome {
            high_watermark,
            aborted,
            log_start_offset: res.log_start_offset,
            bytes: res.bytes,
            records: res.chunks,
            ..Default::default()
        },
        Err(e) => ReadOutcome {
            error: storage_error(&e).code(),
            high_watermark,
            log_start_offset: log.log_start_offset(),
            ..Default::default()
        },
    }
}

/// A follower's fetch of one partition this broker leads: fences stale and future epochs,
/// reports a divergence instead of data (the follower truncates, then fetches again), else
/// records the follower's position (which may move the high watermark and the ISR) and reads
/// written batches past the high watermark.
async fn read_for_replica(
    shard: &Rc<Shard>,
    p: &Rc<Partition>,
    r: &ReadRequest,
    replica: ReplicaFetch,
    room: usize,
) -> ReadOutcome {
    let epoch = p.leader_epoch.get();
    if replica.current_leader_epoch >= 0 && replica.current_leader_epoch < epoch {
        return ReadOutcome::error(ResponseError::FencedLeaderEpoch);
    }
    if replica.current_leader_epoch > epoch || !p.is_follower(replica.replica_id) {
        return ReadOutcome::error(ResponseError::UnknownLeaderEpoch);
    }
    let log = &p.log;
    let end_for_epoch = log.end_offset_for_epoch(replica.last_fetched_epoch);
    if let Some(d) =
        crate::partition::replica::divergence(replica.last_fetched_epoch, r.offset, end_for_epoch)
    {
        return ReadOutcome {
            high_watermark: p.high_watermark(),
            log_start_offset: log.log_start_offset(),
            diverging: Some(d),
            ..Default::default()
        };
    }
    if r.offset > log.log_end_offset() || r.offset < log.log_start_offset() {
        return ReadOutcome::error(ResponseError::OffsetOutOfRange);
    }
    if let Some(change) = p.on_follower_fetch(replica.replica_id, r.offset) {
        super::controller::alter_isr(shard, p, change);
    }
    let high_watermark = p.high_watermark();
    if room == 0 {
        return ReadOutcome {
            high_watermark,
            log_start_offset: log.log_start_offset(),
            has_more: r.offset < log.written_offset(),
            ..Default::default()
        };
    }
    let read = p.read_for_replica(r.offset, room, r.min_one).await;
    read_outcome(read.map(|res| (res, Vec::new())), log, high_watermark)
}

/// Resolves when any of `parts` (topic, partition, offset, whether a follower waits) has data
/// past its offset — committed data for consumers, written data for followers — or at `wait`
/// elapsed.
pub async fn wait_for_data(shard: Rc<Shard>, parts: Vec<WaitPart>, wait: Duration) {
    let waits: Vec<_> = parts
        .into_iter()
        .filter_map(|w| {
            let p = shard.partition(&w.topic, w.index)?;
            Some(Box::pin(async move {
                if w.replica {
                    p.wait_for_replica_data(w.offset).await
                } else {
                    p.wait_for_data(w.offset, w.read_committed).await
                }
            }))
        })
        .collect();
    if waits.is_empty() {
        crate::runtime::sleep(wait).await;
        return;
    }
    let _ = crate::runtime::timeout(wait, select_all(waits)).await;
}

/// Appends `marker` to each of `parts` (partitions this shard owns) and waits until each is
/// committed (acks=all). Returns an error code per partition (0: done); an append to
/// `__consumer_offsets` also completes the producer's pending transactional offset commits.
pub async fn write_markers(
    shard: Rc<Shard>,
    parts: Vec<(String, i32)>,
    marker: super::txns::Marker,
) -> Vec<i16> {
    let writes = parts.into_iter().map(|(topic, index)| {
        let shard = shard.clone();
        async move {
            let Some(p) = shard.partition(&topic, index) else {
                let known = shard
                    .metadata()
                    .topic(&topic)
                    .is_some_and(|t| t.has_partition(index));
                return if known {
                    ResponseError::NotLeaderOrFollower.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
            };
            if !p.is_leader(None) {
                return ResponseError::NotLeaderOrFollower.code();
            }
            let appended = p.log.append_marker(
                marker.producer_id,
                marker.producer_epoch,
                marker.commit,
                marker.coordinator_epoch,
                p.leader_epoch.get(),
                crate::util::now_ms(),
            );
            let info = match appended {
                Ok(info) => info,
                Err(e) => return storage_error(&e).code(),
            };
            match p.wait_acks(&info, -1).await {
                Ok(()) => {}
                Err(crate::partition::AckError::Storage(e)) => return storage_error(&e).code(),
                Err(_) => return ResponseError::NotLeaderOrFollower.code(),
            }
            if topic == crate::coordinator::group::OFFSETS_TOPIC {
                super::groups::txn_marker(&shard, index, marker.producer_id, marker.commit);
            }
            tracing::debug!(
                topic,
                partition = index,
                offset = info.base_offset,
                producer_id = marker.producer_id,
                commit = marker.commit,
                "marker written"
            );
            0
        }
    });
    join_all(writes).await
}

/// One partition of a Fetch long poll: wake when there is data past `offset` for this reader.
#[derive(Debug, Clone)]
pub struct WaitPart {
    pub topic: String,
    pub index: i32,
    pub offset: i64,
    /// A follower: written data counts (not only committed).
    pub replica: bool,
    /// read_committed: only data below the last stable offset counts.
    pub read_committed: bool,
}

/// ListOffsets' special timestamps.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL: i64 = -4;

/// A one-partition admin operation.
#[derive(Debug, Clone)]
pub enum PartitionOp {
    /// ListOffsets: a timestamp or one of [`LATEST`], [`EARLIEST`], [`MAX_TIMESTAMP`],
    /// [`EARLIEST_LOCAL`].
    ListOffset {
        timestamp: i64,
        read_committed: bool,
    },
    /// DeleteRecords: move the log start to `offset` (-1: the high watermark).
    DeleteRecords { offset: i64 },
    /// OffsetForLeaderEpoch: the end offset of `wanted`, checking the client's `current` epoch.
    EpochEnd { current: i32, wanted: i32 },
}

/// What a [`PartitionOp`] found.
#[derive(Debug, Clone)]
pub enum PartitionOpOutcome {
    /// `(timestamp, offset)` if any, and the partition's leader epoch.
    Offset(Option<(i64, i64)>, i32),
    /// The new log start offset.
    LowWatermark(i64),
    /// `(epoch, end offset)`.
    EpochEnd(i32, i64),
}

/// Runs `op` on the partition (if this shard has it).
pub async fn run_op(
    part: Option<Rc<Partition>>,
    op: PartitionOp,
) -> Result<PartitionOpOutcome, ResponseError> {
    let part = part
        .filter(|p| p.is_leader(None))
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    match op {
        PartitionOp::ListOffset {
            timestamp,
            read_committed,
        } => list_offset(&part, timestamp, read_committed).await,
        PartitionOp::DeleteRecords { offset } => {
            let hw = part.high_watermark();
            let target = if offset == -1 { hw } else { offset };
            if target < 0 || target > hw {
                return Err(ResponseError::OffsetOutOfRange);
            }
            let low = part
                .log
                .delete_records_before(target)
                .await
                .map_err(|e| storage_error(&e))?;
            Ok(PartitionOpOutcome::LowWatermark(low))
        }
        PartitionOp::EpochEnd { current, wanted } => {
            let leader_epoch = part.leader_epoch.get();
            if current > leader_epoch {
                return Err(ResponseError::UnknownLeaderEpoch);
            }
            if current >= 0 && current < leader_epoch {
                return Err(ResponseError::FencedLeaderEpoch);
            }
            let (epoch, end) = part.log.end_offset_for_epoch(wanted);
            Ok(PartitionOpOutcome::EpochEnd(epoch, end))
        }
    }
}

async fn list_offset(
    part: &Partition,
    ts: i64,
    read_committed: bool,
) -> Result<PartitionOpOutcome, ResponseError> {
    let log = &part.log;
    let found = match ts {
        // A new leader's high watermark may trail the old leader's for a moment: until it
        // reaches the start of the leader's epoch, "latest" is not known (Kafka's
        // OFFSET_NOT_AVAILABLE, which clients retry).
        LATEST if part.high_watermark() < part.epoch_start() => {
            return Err(ResponseError::OffsetNotAvailable)
        }
        LATEST if read_committed => Some((-1, part.last_stable_offset())),
        LATEST => Some((-1, part.high_watermark())),
        EARLIEST | EARLIEST_LOCAL => Some((-1, log.log_start_offset())),
        MAX_TIMESTAMP => match log.max_timestamp() {
            Some((ts, offset)) => Some(
                first_batch(part, offset)
                    .await
                    .and_then(records::max_timestamp_record)
                    .map_or((ts, offset), |(o, t)| (t, o)),
            ),
            None => None,
        },
        t if t >= 0 => match log
            .offset_for_timestamp(t)
            .await
            .map_err(|e| storage_error(&e))?
        {
            // The batch is the first whose max timestamp reaches `t`; Kafka answers with the
            // first *record* at or after `t` inside it.
            Some((offset, batch_ts)) => Some(
                first_batch(part, offset)
                    .await
                    .and_then(|b| records::first_at_or_after(b, t))
                    .map_or((batch_ts, offset), |(o, ts)| {
                        (ts, o.max(log.log_start_offset()))
                    }),
            ),
            None => None,
        },
        _ => return Err(ResponseError::InvalidRequest),
    };
    Ok(PartitionOpOutcome::Offset(found, part.leader_epoch.get()))
}

/// The stored batch containing `offset` (whole, as written).
async fn first_batch(part: &Partition, offset: i64) -> Option<Bytes> {
    let r = part.read(offset, 1).await.ok()?;
    let first = r.chunks.into_iter().next()?;
    let h = sluice_storage::BatchHeader::parse(&first).ok()?;
    first
        .get(..h.total_size())
        .map(|_| first.slice(..h.total_size()))
}

/// `(topic, partition, size_bytes)` of every partition owned by `shard`.
pub fn log_dir_sizes(shard: &Shard) -> Vec<(String, i32, i64)> {
    shard
        .partitions()
        .iter()
        .map(|p| (p.topic.clone(), p.index, p.log.size_bytes() as i64))
        .collect()
}
