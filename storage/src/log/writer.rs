//! The background writer task: coalesces queued appends into block-aligned writes, publishes
//! them (segment size and index, tail cache, written offset), handles write failures, and the
//! interval flusher.

use std::future::Future;
use std::io;
use std::rc::{Rc, Weak};
use std::task::Poll;

use crate::runtime::AsyncWriteAtExt;
use crate::runtime::IntoInner;
use bytes::Bytes;

use super::append::Failure;
use super::read::CachedBatch;
use super::Log;
use crate::aligned::{round_down, AlignedBuf, BLOCK_BYTES};
use crate::batch::rewrite_header;
use crate::config::FlushPolicy;
use crate::notify::Notify;
use crate::scan::ScannedBatch;
use crate::segment::{open_write, preallocate_range, PREALLOCATE_STEP_BYTES};

/// Largest single write the writer issues (bounds the aligned buffer). Small enough that a
/// backlog is several writes, so building one overlaps the device writing another; and the
/// bytes in flight on a shard stay moderate with many partitions (A/B in the storage bench on
/// a virtual disk: 8 partitions never-flush ran +50 % with 1 MiB writes than with 4 MiB; one
/// partition the same or slightly better with 4 MiB — 2 MiB keeps most of both).
const WRITE_BYTES_MAX: usize = 2 << 20;
/// Write buffers at least this large are filled with non-temporal stores
/// ([`AlignedBuf::extend_from_slice_streaming`]): their memory is cold (large buffers live on
/// in the tail cache until evicted), while a small one is reused straight after its write and
/// still cached. The ordinary copy into large buffers was 20 % of the broker's CPU producing
/// 1 KiB messages to 8 partitions (perf, docs/architecture.md §4).
const STREAMING_COPY_MIN_BYTES: usize = 256 << 10;
/// Writes per writer step before it releases the log's lock (see `Log::write_pipeline`).
const PIPELINE_WRITES_MAX: usize = 64;

pub(super) struct BatchPlan {
    pub(super) pos: usize,
    pub(super) size: usize,
    pub(super) base_offset: i64,
}

pub(super) struct PendingAppend {
    pub(super) records: Bytes,
    pub(super) batches: Vec<BatchPlan>,
    /// The epoch stamped into every batch (a leader's append); `None`: the batches are a
    /// leader's copies, written as they are (`Log::append_replicated`).
    pub(super) leader_epoch: Option<i32>,
    pub(super) log_append_time_ms: Option<i64>,
}

pub(super) enum Pending {
    Append(PendingAppend),
    Roll { seq: u64 },
}

/// A write built by `Log::prepare_write`, not yet on disk.
struct PreparedWrite {
    file: crate::runtime::File,
    /// Block-aligned file position of `buf`.
    start: u64,
    buf: AlignedBuf,
    /// Bytes of `buf` that are log data (the rest is zero padding to a whole block).
    logical_len: usize,
    /// Each batch and its position in `buf`.
    placed: Vec<(ScannedBatch, i32)>,
}

impl Log {
    /// One writer step: a roll, or a pipeline of coalesced writes of queued appends (see
    /// [`Log::write_pipeline`]).
    async fn write_step(&self) {
        let _g = self.lock().await;
        let roll = match self.state.borrow_mut().pending.front() {
            Some(Pending::Roll { seq }) => Some(*seq),
            Some(Pending::Append(_)) => None,
            None => return,
        };
        if let Some(seq) = roll {
            self.state.borrow_mut().pending.pop_front();
            match self.roll().await {
                Ok(()) => self.roll_seq_done.set(seq),
                Err(e) => self.fail(e),
            }
            self.progress.notify_all();
            return;
        }
        if let Err(e) = self.write_pipeline().await {
            self.fail(e);
        }
        self.progress.notify_all();
    }

    /// Writes queued appends up to the next roll marker, at most [`PIPELINE_WRITES_MAX`] writes
    /// per step. One write is in flight at a time — consecutive writes share the partial tail
    /// block, so they must not overlap on the device — but the next write's buffer is built
    /// while the current one is on the device: building it (copy + header rewrite, about
    /// 0.1 ms per MiB) was the gap between 1 MiB appends and raw O_DIRECT writes in the storage
    /// bench. A prepared write holds appends already taken off `pending`; after a failure it is
    /// dropped with them ([`Log::fail`] moves LEO back to the written offset: none of them was
    /// reported written).
    async fn write_pipeline(&self) -> io::Result<()> {
        self.ensure_write_file().await?;
        let mut next = self.prepare_write(None)?;
        let mut writes = 0;
        while let Some(w) = next.take() {
            writes += 1;
            next = self.write_prepared(w, writes < PIPELINE_WRITES_MAX).await?;
        }
        Ok(())
    }

    /// Opens the active segment's write handle when appends are queued for it and it has none:
    /// a log opens it on its first write, so an idle partition holds one file descriptor
    /// instead of two (10,000 partitions must fit the usual 20,000-descriptor limit).
    async fn ensure_write_file(&self) -> io::Result<()> {
        let path = {
            let st = self.state.borrow();
            if !matches!(st.pending.front(), Some(Pending::Append(_))) {
                return Ok(());
            }
            match st.segments.last() {
                Some(s) if s.write_file.is_none() => s.path.clone(),
                _ => return Ok(()),
            }
        };
        let (wf, mode) = open_write(&path, self.io_mode.get()).await?;
        self.io_mode.set(mode);
        let mut st = self.state.borrow_mut();
        if let Some(s) = st.segments.last_mut() {
            if s.path == path && s.write_file.is_none() {
                s.write_file = Some(wf);
            }
        }
        Ok(())
    }

    /// Takes queued appends (up to [`WRITE_BYTES_MAX`], at least one) off the front of `pending`
    /// and builds their aligned write buffer. It starts with the partial last block of the
    /// active segment, or of `after` = (end, partial last block) of a write not yet published.
    fn prepare_write(&self, after: Option<(u64, &[u8])>) -> io::Result<Option<PreparedWrite>> {
        let mut items = Vec::new();
        let mut total = 0usize;
        let (file, start, mut buf) = {
            let mut st = self.state.borrow_mut();
            while let Some(Pending::Append(p)) = st.pending.front() {
                if !items.is_empty() && total + p.records.len() > WRITE_BYTES_MAX {
                    break;
                }
                total += p.records.len();
                if let Some(Pending::Append(p)) = st.pending.pop_front() {
                    items.push(p);
                }
            }
            if items.is_empty() {
                return Ok(None);
            }
            let s = st
                .segments
                .last()
                .ok_or_else(|| io::Error::other("no active segment"))?;
            let f = s
                .write_file
                .clone()
                .ok_or_else(|| io::Error::other("active segment has no write handle"))?;
            let (size, tail) = after.unwrap_or((s.size, &s.tail));
            let mut buf = AlignedBuf::with_capacity(tail.len() + total);
            buf.extend_from_slice(tail);
            (f, round_down(size), buf)
        };
        let mut placed: Vec<(ScannedBatch, i32)> = Vec::new();
        let streaming = buf.capacity() >= STREAMING_COPY_MIN_BYTES;
        for item in &items {
            for b in &item.batches {
                let at = buf.len();
                let src = &item.records[b.pos..b.pos + b.size];
                if streaming {
                    buf.extend_from_slice_streaming(src);
                } else {
                    buf.extend_from_slice(src);
                }
                let bytes = &mut buf.as_mut_slice()[at..at + b.size];
                if let Some(epoch) = item.leader_epoch {
                    rewrite_header(bytes, b.base_offset, epoch, item.log_append_time_ms);
                }
                let h = crate::batch::BatchHeader::parse(bytes).map_err(|e| {
                    io::Error::other(format!("batch changed after validation: {e}"))
                })?;
                placed.push((
                    ScannedBatch {
                        base_offset: b.base_offset,
                        last_offset: h.last_offset(),
                        position: start + at as u64,
                        size: b.size as u32,
                        max_timestamp: h.max_timestamp,
                        records_count: h.records_count,
                        partition_leader_epoch: h.partition_leader_epoch,
                    },
                    at as i32,
                ));
            }
        }
        let logical_len = buf.len();
        buf.pad_to_block();
        Ok(Some(PreparedWrite {
            file,
            start,
            buf,
            logical_len,
            placed,
        }))
    }

    /// Writes `w` (then fdatasync under `always`) and publishes its batches. While the write is
    /// on the device, prepares the next write if `prepare_next`, and returns it.
    async fn write_prepared(
        &self,
        w: PreparedWrite,
        prepare_next: bool,
    ) -> io::Result<Option<PreparedWrite>> {
        if let Some(ok) = self.inject_write_failure.get() {
            self.inject_write_failure.set(ok.checked_sub(1));
            if ok == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let PreparedWrite {
            file,
            start,
            buf,
            logical_len,
            placed,
        } = w;
        let new_size = start + logical_len as u64;
        let new_tail_start = (round_down(new_size) - start) as usize;
        let tail_after = buf.as_slice()[new_tail_start..logical_len].to_vec();
        let mut next: Option<io::Result<Option<PreparedWrite>>> = None;
        // The rewritten partial block goes in its own write. ext4 issues an O_DIRECT write
        // without blocking only if its whole range has one mapping state; a range that starts
        // in a written block and goes on into preallocated (unwritten) ones is punted to an
        // io_uring worker thread. With the split (and preallocation that extends the file),
        // single-partition never-flush appends ran +23 % (16 KiB) and +12 % (1 MiB) in an
        // interleaved A/B (BENCHMARKS.md). The two ranges are disjoint; both are
        // awaited before anything is published, so a crash between them is a torn write that
        // recovery truncates, as before.
        // Bytes before the first batch are the partial last block already on disk.
        let rewrites_tail_block = placed.first().is_some_and(|(_, at)| *at > 0);
        let head = if rewrites_tail_block && buf.len() > BLOCK_BYTES {
            let mut h = AlignedBuf::with_capacity(BLOCK_BYTES);
            h.extend_from_slice(&buf.as_slice()[..BLOCK_BYTES]);
            Some(h)
        } else {
            None
        };
        let body_from = if head.is_some() { BLOCK_BYTES } else { 0 };
        let mut head_writer = &file;
        let mut body_writer = &file;
        let mut head_write = std::pin::pin!(async {
            match head {
                Some(h) => head_writer.write_all_at(h, start).await.0,
                None => Ok(()),
            }
        });
        let mut body_write = std::pin::pin!(body_writer.write_all_at(
            crate::runtime::IoBuf::slice(buf, body_from..),
            start + body_from as u64
        ));
        let mut head_res: Option<io::Result<()>> = None;
        let mut body_res = None;
        let mut poll_both = |cx: &mut std::task::Context<'_>| {
            if head_res.is_none() {
                if let Poll::Ready(r) = head_write.as_mut().poll(cx) {
                    head_res = Some(r);
                }
            }
            if body_res.is_none() {
                if let Poll::Ready(r) = body_write.as_mut().poll(cx) {
                    body_res = Some(r);
                }
            }
            if head_res.is_some() && body_res.is_some() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        };
        let submitted = std::time::Instant::now();
        // The first poll queues the writes on the ring; flushing submits them to the kernel now
        // instead of when this task next yields, so the device works while the next is built.
        let first = std::future::poll_fn(|cx| Poll::Ready(poll_both(cx))).await;
        if first.is_pending() {
            if prepare_next {
                crate::runtime::submit_now();
                next = Some(self.prepare_write(Some((new_size, &tail_after))));
            }
            // Even if preparing failed, the writes on the device are finished first.
            std::future::poll_fn(&mut poll_both).await;
        }
        self.stats
            .write_seconds
            .observe(submitted.elapsed().as_secs_f64());
        let (Some(head_res), Some(crate::runtime::BufResult(body_res, body))) =
            (head_res, body_res)
        else {
            return Err(io::Error::other("write pipeline: a write did not finish"));
        };
        let mut buf = body.into_inner();
        head_res?;
        body_res?;
        let next = next.transpose()?.flatten();
        let s = &self.stats;
        s.writes.set(s.writes.get() + 1);
        s.bytes_written
            .set(s.bytes_written.get() + logical_len as u64);
        s.batches_per_write.observe(placed.len() as f64);
        let always = self.config.borrow().flush == FlushPolicy::Always;
        if always {
            let t = std::time::Instant::now();
            file.sync_data().await?;
            s.fsync_seconds.observe(t.elapsed().as_secs_f64());
        }
        // A cached batch shares the write buffer it was written from, which keeps the whole
        // buffer alive. Where the new batches fill less than half of it (small writes: the
        // partial block before them and the padding after), they are cached as copies instead,
        // so the tail cache's byte counts stay close to the memory it holds.
        let placed_bytes: usize = placed.iter().map(|(b, _)| b.size as usize).sum();
        let copy_into_cache = buf.capacity() > 2 * placed_bytes;
        buf.truncate(logical_len);
        let bytes = Bytes::from_owner(buf);
        let self_weak = self.self_weak.borrow().clone();
        let mut last_offset = self.written.get() - 1;
        let epochs_dirty;
        {
            let mut st = self.state.borrow_mut();
            let cfg = self.config.borrow();
            let st = &mut *st;
            let seg = st
                .segments
                .last_mut()
                .ok_or_else(|| io::Error::other("active segment vanished"))?;
            for (b, at) in &placed {
                seg.on_batch(b, cfg.index_interval_bytes);
                let at = *at as usize;
                st.cache.push(
                    &self_weak,
                    CachedBatch {
                        base_offset: b.base_offset,
                        last_offset: b.last_offset,
                        bytes: if copy_into_cache {
                            Bytes::copy_from_slice(&bytes[at..at + b.size as usize])
                        } else {
                            bytes.slice(at..at + b.size as usize)
                        },
                    },
                );
                last_offset = b.last_offset;
                if st.max_timestamp.is_none_or(|(t, _)| b.max_timestamp > t) {
                    st.max_timestamp = Some((b.max_timestamp, b.last_offset));
                }
            }
            seg.tail = tail_after;
            st.cache.trim_to(cfg.tail_cache_bytes);
            epochs_dirty = st.epochs_dirty;
        }
        super::cache::enforce_budget();
        self.written.set(last_offset + 1);
        if always {
            self.durable.set(last_offset + 1);
        }
        self.progress.notify_all();
        self.extend_preallocation(&file, new_size);
        self.maybe_write_boot_checkpoint();
        if epochs_dirty {
            if let Err(e) = self.write_epochs().await {
                tracing::warn!(error = %e, "failed to persist leader epoch checkpoint");
            }
        }
        Ok(next)
    }

    /// Keeps a window reserved ahead of the active segment's end, growing it (up to
    /// [`PREALLOCATE_STEP_BYTES`]) each time the writes reach it.
    fn extend_preallocation(&self, file: &crate::runtime::File, size: u64) {
        if self.preallocating() {
            // The next write tries again.
            return;
        }
        let limit = self.config.borrow().segment_bytes_effective();
        let step = self.prealloc_step.get();
        let (from, len) = {
            let mut st = self.state.borrow_mut();
            let Some(seg) = st.segments.last_mut() else {
                return;
            };
            if seg.allocated_end >= limit || size + step / 2 <= seg.allocated_end {
                return;
            }
            let from = seg.allocated_end.max(size);
            let len = step.min(limit.saturating_sub(from));
            // Advance even on failure: the next attempt comes one step later, not on every
            // write.
            seg.allocated_end = from + len;
            (from, len)
        };
        if len > 0 {
            self.start_preallocation(file, from, len);
        }
        self.prealloc_step
            .set((step * 2).min(PREALLOCATE_STEP_BYTES));
    }

    /// Whether a fallocate started by [`Log::start_preallocation`] is still running.
    fn preallocating(&self) -> bool {
        self.prealloc_job
            .borrow()
            .as_ref()
            .is_some_and(|job| !job.is_finished())
    }

    /// Reserves `[from, from + len)` of `file` (see [`preallocate_range`]) on a blocking-work
    /// thread. fallocate can wait for the filesystem — block bitmaps read from the disk, room
    /// in the journal — and on the shard's thread it stopped every task of the shard: up to
    /// 50 ms at a time producing at the maximum rate (an off-CPU profile, docs/architecture.md
    /// §4 step 6). Writes go on meanwhile: one into a range not reserved yet is slower, not
    /// wrong, as fallocate (mode 0) never changes data already written. One runs per log at a
    /// time; [`Log::cut_active_file`] waits for it before the file's size is cut.
    pub(super) fn start_preallocation(&self, file: &crate::runtime::File, from: u64, len: u64) {
        use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
        // SAFETY: `file` is open for the duration of the call; the duplicate is the job's own.
        let fd = unsafe { BorrowedFd::borrow_raw(file.as_raw_fd()) }.try_clone_to_owned();
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => {
                tracing::debug!(error = %e, "no preallocation: dup failed");
                return;
            }
        };
        let delay = self.prealloc_delay.get();
        let job = crate::runtime::spawn(async move {
            crate::runtime::spawn_blocking(move || {
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                preallocate_range(fd.as_fd(), from, len);
            })
            .await;
        });
        *self.prealloc_job.borrow_mut() = Some(job);
    }

    /// Sets the length of the active segment's file `file` (a roll, a truncation, the close),
    /// once the running fallocate, if any, is done: one that ended later would extend the file
    /// with zeros again.
    pub(super) async fn cut_active_file(
        &self,
        file: &crate::runtime::File,
        len: u64,
    ) -> io::Result<()> {
        let job = self.prealloc_job.borrow_mut().take();
        if let Some(job) = job {
            let _ = job.await;
        }
        file.set_len(len).await
    }

    /// Handles a failed write or roll: see the module documentation.
    fn fail(&self, error: io::Error) {
        tracing::error!(dir = %self.dir.display(), error = %error, "log write failed");
        let written = self.written.get();
        let gen = self.fail_gen.get() + 1;
        self.fail_gen.set(gen);
        let mut st = self.state.borrow_mut();
        st.pending.clear();
        self.roll_seq_done.set(self.roll_seq_next.get());
        st.epochs.retain(|&(_, start)| start < written);
        st.producers.truncate_from(written);
        if let Some((size, base)) = st.segments.last().map(|s| (s.size, s.base_offset)) {
            st.active_projected_bytes = size;
            st.active_projected_base = base;
        }
        st.failures.push(Failure {
            gen,
            from_offset: written,
            error,
        });
        st.failed = true;
        drop(st);
        self.leo.set(written);
        self.progress.notify_all();
    }
}

pub(super) async fn writer_loop(log: Weak<Log>, work: Rc<Notify>) {
    loop {
        let notified = work.notified();
        {
            let Some(log) = log.upgrade() else {
                return;
            };
            if !log.state.borrow().pending.is_empty() {
                log.write_step().await;
                continue;
            }
            if log.closed.get() {
                return;
            }
        }
        notified.await;
    }
}

pub(super) async fn flusher_loop(log: Weak<Log>) {
    loop {
        let period = {
            let Some(l) = log.upgrade() else { return };
            let cfg = l.config.borrow();
            match cfg.flush {
                FlushPolicy::Interval(d) if !l.closed.get() => d,
                _ => {
                    l.flusher_running.set(false);
                    return;
                }
            }
        };
        crate::runtime::sleep(period).await;
        let Some(l) = log.upgrade() else { return };
        let written = l.written.get();
        if written > l.durable.get() {
            if let Some(f) = l.active_write_file() {
                let t = std::time::Instant::now();
                let synced = f.sync_data().await;
                l.stats.fsync_seconds.observe(t.elapsed().as_secs_f64());
                match synced {
                    Ok(()) => {
                        // Known gap: a `truncate_to` that completed during the fsync leaves the
                        // written offset below `written` here, and this raises the durable
                        // offset past it (see the module documentation).
                        l.durable.set(l.durable.get().max(written));
                        l.progress.notify_all();
                    }
                    Err(e) => tracing::warn!(error = %e, "interval fsync failed"),
                }
            }
        }
    }
}
