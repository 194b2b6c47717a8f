//! Criterion micro-benchmarks of `sluice-storage`, with a raw O_DIRECT baseline measured in the
//! same run so ratios are meaningful on this (noisy, shared) disk.
//!
//! ```sh
//! cargo bench --bench storage                 # everything, about 5 min
//! cargo bench --bench storage -- append       # one group (criterion filter)
//! cargo bench --bench storage -- --quick      # smoke run
//! SLUICE_BENCH_DIR=/mnt/nvme/tmp cargo bench --bench storage   # another disk
//! ```
//!
//! Groups (throughput in bytes unless noted):
//! - `raw`: plain O_DIRECT sequential `write_all_at` through compio, one write in flight: 1 MiB
//!   writes with fdatasync every 16 MiB on a fresh file (`fresh`) and on a preallocated one
//!   (`prealloc`), 1 MiB / 4 MiB writes without fdatasync, 4 MiB writes with a concurrent
//!   fdatasync every 100 ms; the 1 MiB fdatasync, 1 MiB no-sync and 100 ms variants also over
//!   8 files at once (`prealloc_8files`, the pattern of the 8-partition appends). "The limit":
//!   BENCHMARKS.md says which variant each append row is divided by.
//! - `append/{16KiB,1MiB}/{always,interval100ms,never}/{1p,8p}`: `Log::append` of batches of
//!   1 KiB records, IoMode::Direct. Each partition keeps at most `APPEND_WINDOW_BYTES` appended
//!   but not yet durable (like a producer's in-flight requests); with 8 partitions the 8 logs are
//!   appended round-robin in one runtime, so their writers (and fdatasyncs) overlap. The loop
//!   yields to the runtime after each round, as a shard does between produce requests. The
//!   clock stops when `wait_durable` resolved for the last append of every partition.
//! - `read`: sequential 1 MiB reads over a 256 MiB log of 16 KiB batches: `disk_cold` (page cache
//!   dropped with POSIX_FADV_DONTNEED before every scan), `page_cache` (disk path, warm pages),
//!   `tail_cache` (everything in the in-memory tail cache).
//! - `index`: `Log::read(random offset, 16 KiB)` on the same 256 MiB log split into 16 MiB
//!   segments (segment search + sparse index lookup + one pread of warm pages); time per lookup.
//! - `validate`: `validate_batches` on 1 MiB of record batches (CRC-32C dominated).
//! - `writer_prep`: the CPU the log's writer spends building one 2 MiB write (aligned allocation
//!   + copy); it overlaps the previous write's I/O.
//! - `recovery`: `Log::open` of a 10 GiB log (1 GiB segments) with the page cache dropped:
//!   after a crash (no index for the active 1023 MiB segment: it is scanned and checked batch by
//!   batch) and after a clean close (nothing scanned).
//!
//! Data goes to `$SLUICE_BENCH_DIR` or the cargo target tmp dir (target/tmp), which must be on a
//! real disk: tmpfs refuses O_DIRECT and the log silently falls back to buffered I/O (a warning
//! is printed when that happens).

use std::cell::Cell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::buf::IoBuf;
use compio::io::AsyncWriteAtExt;
use compio::runtime::Runtime;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use sluice_storage::test_util::{build_batch, BatchSpec, Rng};
use sluice_storage::{validate_batches, FlushPolicy, IoMode, Log, LogConfig};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Value bytes of one record ("1 KiB records").
const RECORD_VALUE_BYTES: usize = 1000;
/// Appended-but-not-durable bytes allowed per partition (the writer's largest write is 2 MiB).
const APPEND_WINDOW_BYTES: usize = 16 * MIB;
/// Measurement time of the `raw` and `append` groups (10 samples). An append sample starts on
/// freshly opened logs whose first writes are small until the queues fill; with 3 s (about
/// 70 MiB per 8-partition 16 KiB sample) that start-up weighed: back to back, 16KiB/never/8p
/// gave 364–450 MiB/s with 3 s and 567–612 MiB/s with 15 s. Both groups get the same time, so
/// neither catches more of the disk's short bursts than the other.
const WRITE_MEASUREMENT: Duration = Duration::from_secs(10);
/// Size of the logs the read and index benchmarks scan.
const READ_LOG_BYTES: usize = 256 * MIB;

// ---------------------------------------------------------------------------------------------
// Helpers

fn bench_root() -> PathBuf {
    let root = std::env::var_os("SLUICE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sluice-storage-bench"));
    std::fs::create_dir_all(&root).expect("create bench dir");
    if is_tmpfs(&root) {
        eprintln!(
            "WARNING: {} is on tmpfs: O_DIRECT is refused there and numbers are not disk numbers; \
             set SLUICE_BENCH_DIR to a directory on a real disk",
            root.display()
        );
    }
    root
}

fn is_tmpfs(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: zeroed statfs is a valid out-parameter; c is a valid NUL-terminated path.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut s) };
    rc == 0 && s.f_type as i64 == 0x0102_1994 // TMPFS_MAGIC
}

static DIR_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh, empty directory under the bench root (removed by `remove_dir`).
fn fresh_dir(root: &Path, tag: &str) -> PathBuf {
    let n = DIR_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = root.join(format!("{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create dir");
    d
}

fn remove_dir(d: &Path) {
    let _ = std::fs::remove_dir_all(d);
}

/// One batch of `total / 1 KiB` records of `RECORD_VALUE_BYTES` each (about `total` bytes).
fn batch_of(total: usize) -> Bytes {
    let records = (total / KIB).max(1) as i32;
    Bytes::from(build_batch(
        &BatchSpec::new(records).value_bytes(RECORD_VALUE_BYTES),
    ))
}

fn log_config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        io_mode: IoMode::Direct,
        flush,
        max_message_bytes: 4 * MIB as u32,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

static WARNED_BUFFERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn open_log(dir: PathBuf, cfg: LogConfig) -> Rc<Log> {
    let log = Log::open(dir, cfg).await.expect("open log");
    if log.io_mode() != IoMode::Direct
        && !WARNED_BUFFERED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        eprintln!("WARNING: O_DIRECT refused; the log fell back to buffered I/O");
    }
    log
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Lets the runtime run the other ready tasks (the logs' writers) once before this one goes on.
async fn yield_to_runtime() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// Appends `batch` `iters` times to every log (round-robin), keeping at most
/// `APPEND_WINDOW_BYTES` not yet durable per log; returns once all of it is durable. After each
/// round the loop yields, as a shard does between produce requests: without that, a sample
/// smaller than the window queued all of its appends before the first write started.
async fn append_workload(logs: &[Rc<Log>], batch: &Bytes, iters: u64) -> Duration {
    let window = (APPEND_WINDOW_BYTES / batch.len()).max(1);
    let mut inflight: Vec<VecDeque<i64>> = vec![VecDeque::with_capacity(window + 1); logs.len()];
    let now = now_ms();
    let start = Instant::now();
    for _ in 0..iters {
        for (log, q) in logs.iter().zip(inflight.iter_mut()) {
            while q.len() >= window {
                let o = q.pop_front().unwrap_or_default();
                log.wait_durable(o).await.expect("wait_durable");
            }
            let info = log.append(batch.clone(), 0, now).expect("append");
            q.push_back(info.last_offset);
        }
        yield_to_runtime().await;
    }
    for (log, q) in logs.iter().zip(inflight.iter()) {
        if let Some(&o) = q.back() {
            log.wait_durable(o).await.expect("wait_durable");
        }
    }
    start.elapsed()
}

/// A 4 KiB-aligned heap buffer for the raw O_DIRECT baseline.
struct RawBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl RawBuf {
    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len, 4096).expect("layout")
    }
    fn new(len: usize) -> RawBuf {
        assert!(len > 0 && len.is_multiple_of(4096));
        // SAFETY: non-zero size, power-of-two alignment.
        let raw = unsafe { std::alloc::alloc(Self::layout(len)) };
        let ptr = std::ptr::NonNull::new(raw).expect("alloc");
        // Fill with non-zero pseudo-random bytes (initialises the memory).
        let mut rng = Rng::new(42);
        for i in (0..len).step_by(8) {
            let v = rng.next_u64().to_le_bytes();
            // SAFETY: i + 8 <= len because len is a multiple of 4096.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), raw.add(i), 8) };
        }
        RawBuf { ptr, len }
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

impl IoBuf for RawBuf {
    fn as_init(&self) -> &[u8] {
        // SAFETY: the whole allocation was initialised in `new`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

// ---------------------------------------------------------------------------------------------
// raw: the disk's O_DIRECT sequential write bandwidth, through compio like the log

/// Bytes per iteration of every raw variant.
const RAW_ITER_BYTES: usize = 16 * MIB;

/// When a raw variant calls fdatasync.
#[derive(Clone, Copy, PartialEq)]
enum RawSync {
    Never,
    /// After every `RAW_ITER_BYTES` written, before the next write (like `always`).
    EveryIter,
    /// Every 100 ms, concurrently with the writes (like the log's `interval100ms` flusher).
    Every100ms,
}

/// One raw variant: `files` files written concurrently, each with `write_bytes` per O_DIRECT
/// write and one write in flight, fdatasync as `sync` says, files preallocated (like the log's
/// segments) if `prealloc`. An iteration writes `RAW_ITER_BYTES` to every file.
struct RawVariant {
    name: &'static str,
    param: &'static str,
    files: usize,
    write_bytes: usize,
    sync: RawSync,
    prealloc: bool,
}

const RAW_VARIANTS: [RawVariant; 8] = [
    RawVariant {
        name: "odirect_1MiB_writes_fdatasync_16MiB",
        param: "fresh",
        files: 1,
        write_bytes: MIB,
        sync: RawSync::EveryIter,
        prealloc: false,
    },
    RawVariant {
        name: "odirect_1MiB_writes_fdatasync_16MiB",
        param: "prealloc",
        files: 1,
        write_bytes: MIB,
        sync: RawSync::EveryIter,
        prealloc: true,
    },
    // Without fdatasync: on a disk with a volatile write cache this is faster, and it is what
    // `never`/`interval` appends compete with.
    RawVariant {
        name: "odirect_1MiB_writes_nosync",
        param: "prealloc",
        files: 1,
        write_bytes: MIB,
        sync: RawSync::Never,
        prealloc: true,
    },
    RawVariant {
        name: "odirect_4MiB_writes_nosync",
        param: "prealloc",
        files: 1,
        write_bytes: 4 * MIB,
        sync: RawSync::Never,
        prealloc: true,
    },
    // Eight files at once, as the 8-partition appends write: what the disk gives that pattern.
    RawVariant {
        name: "odirect_1MiB_writes_fdatasync_16MiB",
        param: "prealloc_8files",
        files: 8,
        write_bytes: MIB,
        sync: RawSync::EveryIter,
        prealloc: true,
    },
    RawVariant {
        name: "odirect_1MiB_writes_nosync",
        param: "prealloc_8files",
        files: 8,
        write_bytes: MIB,
        sync: RawSync::Never,
        prealloc: true,
    },
    // The device work of `interval100ms`: writes plus a concurrent fdatasync every 100 ms.
    RawVariant {
        name: "odirect_4MiB_writes_fdatasync_100ms",
        param: "prealloc",
        files: 1,
        write_bytes: 4 * MIB,
        sync: RawSync::Every100ms,
        prealloc: true,
    },
    RawVariant {
        name: "odirect_4MiB_writes_fdatasync_100ms",
        param: "prealloc_8files",
        files: 8,
        write_bytes: 4 * MIB,
        sync: RawSync::Every100ms,
        prealloc: true,
    },
];

/// Writes `iters × RAW_ITER_BYTES` to `file` as `v` says; the buffer goes back and forth.
async fn raw_write_file(file: &compio::fs::File, v: &RawVariant, iters: u64) {
    let writes = async {
        let mut buf = RawBuf::new(v.write_bytes);
        let mut pos = 0u64;
        for _ in 0..iters {
            for _ in 0..RAW_ITER_BYTES / v.write_bytes {
                let mut w = file;
                let compio::BufResult(res, b) = w.write_all_at(buf, pos).await;
                res.expect("write");
                buf = b;
                pos += v.write_bytes as u64;
            }
            if v.sync == RawSync::EveryIter {
                file.sync_data().await.expect("fdatasync");
            }
        }
    };
    if v.sync != RawSync::Every100ms {
        return writes.await;
    }
    let syncs = async {
        loop {
            compio::time::sleep(Duration::from_millis(100)).await;
            file.sync_data().await.expect("fdatasync");
        }
    };
    // Done when the writes are, like an `interval100ms` append (it waits for no fdatasync).
    futures_util::future::select(std::pin::pin!(writes), std::pin::pin!(syncs)).await;
}

fn bench_raw(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let root = bench_root();
    let mut g = c.benchmark_group("raw");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(WRITE_MEASUREMENT)
        .sampling_mode(SamplingMode::Flat);
    for v in &RAW_VARIANTS {
        g.throughput(Throughput::Bytes((RAW_ITER_BYTES * v.files) as u64));
        g.bench_function(BenchmarkId::new(v.name, v.param), |b| {
            b.iter_custom(|iters| {
                let dir = fresh_dir(&root, "raw");
                let total = iters as usize * RAW_ITER_BYTES;
                let elapsed = rt.block_on(async {
                    let mut files = Vec::with_capacity(v.files);
                    for i in 0..v.files {
                        let mut opts = compio::fs::OpenOptions::new();
                        opts.write(true).create(true).custom_flags(libc::O_DIRECT);
                        let path = dir.join(format!("raw-{i}.dat"));
                        let file = opts.open(&path).await.expect("open O_DIRECT");
                        if v.prealloc {
                            use std::os::fd::AsRawFd;
                            // SAFETY: valid fd owned by `file`.
                            let rc = unsafe {
                                libc::fallocate(file.as_raw_fd(), 0, 0, total as libc::off_t)
                            };
                            assert_eq!(rc, 0, "fallocate");
                        }
                        files.push(file);
                    }
                    let start = Instant::now();
                    futures_util::future::join_all(
                        files.iter().map(|f| raw_write_file(f, v, iters)),
                    )
                    .await;
                    let el = start.elapsed();
                    for f in files {
                        f.close().await.expect("close");
                    }
                    el
                });
                remove_dir(&dir);
                elapsed
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// append

fn bench_append(c: &mut Criterion) {
    // As the broker does at start-up (A/B here: +34 % for 16 KiB appends, +9 % for 1 MiB).
    sluice_storage::keep_large_buffers_in_heap();
    let rt = Runtime::new().expect("runtime");
    let root = bench_root();
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(WRITE_MEASUREMENT)
        .sampling_mode(SamplingMode::Flat);
    let policies = [
        ("always", FlushPolicy::Always),
        (
            "interval100ms",
            FlushPolicy::Interval(Duration::from_millis(100)),
        ),
        ("never", FlushPolicy::Never),
    ];
    for (size_name, size) in [("16KiB", 16 * KIB), ("1MiB", MIB)] {
        let batch = batch_of(size);
        for (pname, policy) in policies {
            for parts in [1usize, 8] {
                g.throughput(Throughput::Bytes((batch.len() * parts) as u64));
                let id = BenchmarkId::new(format!("{size_name}/{pname}"), format!("{parts}p"));
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let dir = fresh_dir(&root, "append");
                        let elapsed = rt.block_on(async {
                            let mut logs = Vec::with_capacity(parts);
                            for p in 0..parts {
                                logs.push(
                                    open_log(dir.join(format!("bench-{p}")), log_config(policy))
                                        .await,
                                );
                            }
                            let el = append_workload(&logs, &batch, iters).await;
                            for l in &logs {
                                l.delete().await.expect("delete");
                            }
                            el
                        });
                        remove_dir(&dir);
                        elapsed
                    })
                });
            }
        }
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// read + index

/// Bytes `fill_log` writes: as many whole 16 KiB batches as fit in `READ_LOG_BYTES`.
fn read_log_bytes() -> u64 {
    let batch = batch_of(16 * KIB).len();
    ((READ_LOG_BYTES / batch) * batch) as u64
}

/// Fills `log` with `READ_LOG_BYTES` of 16 KiB batches; returns the batch count.
async fn fill_log(log: &Rc<Log>) -> i64 {
    let batch = batch_of(16 * KIB);
    let n = (READ_LOG_BYTES / batch.len()) as u64;
    append_workload(std::slice::from_ref(log), &batch, n).await;
    log.log_end_offset()
}

/// Reads the whole log sequentially, 1 MiB per read; returns bytes read.
async fn scan_log(log: &Log) -> usize {
    let end = log.written_offset();
    let mut offset = log.log_start_offset();
    let mut total = 0usize;
    while offset < end {
        let r = log.read(offset, MIB, i64::MAX).await.expect("read");
        assert!(r.bytes > 0, "empty read at {offset}");
        total += r.bytes;
        let last = r.chunks.last().expect("chunk");
        // Next offset = last offset of the last batch + 1 (header: base i64, ..., last delta).
        let mut at = 0usize;
        let mut next = offset;
        while at < last.len() {
            let base = i64::from_be_bytes(last[at..at + 8].try_into().unwrap_or_default());
            let len = i32::from_be_bytes(last[at + 8..at + 12].try_into().unwrap_or_default());
            let delta = i32::from_be_bytes(last[at + 23..at + 27].try_into().unwrap_or_default());
            next = base + delta as i64 + 1;
            at += 12 + len as usize;
        }
        offset = next;
    }
    total
}

fn drop_page_cache(dir: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if let Ok(f) = std::fs::File::open(e.path()) {
            // SAFETY: valid fd for the duration of the call.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

/// The two 256 MiB logs the read and index benchmarks scan.
struct ReadLogs {
    dir: PathBuf,
    disk_dir: PathBuf,
    disk: Rc<Log>,
    cache: Rc<Log>,
    /// Log end offset of `disk`.
    disk_end: i64,
}

fn write_read_logs(rt: &Runtime, root: &Path) -> ReadLogs {
    let dir = fresh_dir(root, "read");
    let disk_dir = dir.join("disk-0");
    let (disk, cache, disk_end) = rt.block_on(async {
        let disk_cfg = LogConfig {
            segment_bytes: 16 * MIB as u64, // multi-segment, for the index benchmark
            tail_cache_bytes: 0,
            ..log_config(FlushPolicy::Never)
        };
        let disk = open_log(disk_dir.clone(), disk_cfg).await;
        let disk_end = fill_log(&disk).await;
        let cache_cfg = LogConfig {
            tail_cache_bytes: 2 * READ_LOG_BYTES,
            ..log_config(FlushPolicy::Never)
        };
        let cache = open_log(dir.join("cache-0"), cache_cfg).await;
        fill_log(&cache).await;
        (disk, cache, disk_end)
    });
    let bytes = disk.size_bytes();
    assert_eq!(bytes, read_log_bytes(), "read log size");
    eprintln!(
        "read log: {} MiB, {} segments, {} batches",
        bytes >> 20,
        disk.segment_count(),
        disk_end
    );
    ReadLogs {
        dir,
        disk_dir,
        disk,
        cache,
        disk_end,
    }
}

fn bench_read(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let root = bench_root();
    // Written on first use, so a criterion filter that skips these groups writes nothing (the
    // paired append-vs-raw runs of storage_rounds.py would otherwise write 512 MiB each).
    let logs: std::cell::OnceCell<ReadLogs> = std::cell::OnceCell::new();
    let get = || logs.get_or_init(|| write_read_logs(&rt, &root));
    // Known before the logs exist (criterion takes the throughput first); checked when written.
    let log_bytes = read_log_bytes();

    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(log_bytes));
    g.bench_function("seq_1MiB/disk_cold", |b| {
        let l = get();
        b.iter_custom(|iters| {
            let mut el = Duration::ZERO;
            for _ in 0..iters {
                drop_page_cache(&l.disk_dir);
                el += rt.block_on(async {
                    let t = Instant::now();
                    std::hint::black_box(scan_log(&l.disk).await);
                    t.elapsed()
                });
            }
            el
        })
    });
    g.bench_function("seq_1MiB/page_cache", |b| {
        let l = get();
        rt.block_on(scan_log(&l.disk)); // warm the pages
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(scan_log(&l.disk).await);
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("seq_1MiB/tail_cache", |b| {
        let l = get();
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(scan_log(&l.cache).await);
                }
                t.elapsed()
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("index");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
    let rng = Cell::new(Rng::new(7));
    g.bench_function("random_read_16KiB/page_cache", |b| {
        let l = get();
        rt.block_on(scan_log(&l.disk)); // warm the pages
        b.iter_custom(|iters| {
            let mut r = rng.replace(Rng::new(1));
            let el = rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let o = r.below(l.disk_end as u64) as i64;
                    let res = l.disk.read(o, 16 * KIB, i64::MAX).await.expect("read");
                    std::hint::black_box(res.bytes);
                }
                t.elapsed()
            });
            rng.set(r);
            el
        })
    });
    g.finish();

    if let Some(logs) = logs.get() {
        rt.block_on(async {
            logs.disk.delete().await.expect("delete");
            logs.cache.delete().await.expect("delete");
        });
        remove_dir(&logs.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// validate

fn bench_validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let one = batch_of(MIB);
    g.throughput(Throughput::Bytes(one.len() as u64));
    g.bench_function("1MiB_batch", |b| {
        b.iter(|| validate_batches(std::hint::black_box(&one)).expect("valid"))
    });
    let small = batch_of(16 * KIB);
    let many: Vec<u8> = (0..MIB / small.len())
        .flat_map(|_| small.iter().copied())
        .collect();
    g.throughput(Throughput::Bytes(many.len() as u64));
    g.bench_function("64x16KiB_batches", |b| {
        b.iter(|| validate_batches(std::hint::black_box(&many)).expect("valid"))
    });
    g.throughput(Throughput::Bytes(one.len() as u64));
    g.bench_function("crc32c_1MiB_baseline", |b| {
        b.iter(|| crc32c::crc32c(std::hint::black_box(&one[21..])))
    });
    g.finish();

    // CPU the log's writer spends building one write (at most 2 MiB) before the I/O: a 4 KiB-
    // aligned heap buffer (not zeroed) plus copying the queued batches into it. The writer
    // builds the next write while the current one is on the device.
    sluice_storage::keep_large_buffers_in_heap();
    let mut g = c.benchmark_group("writer_prep");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let src = vec![7u8; 2 * MIB];
    g.throughput(Throughput::Bytes(src.len() as u64));
    g.bench_function("alloc_aligned_2MiB+copy", |b| {
        b.iter(|| {
            let layout = std::alloc::Layout::from_size_align(src.len(), 4096).expect("layout");
            // SAFETY: non-zero size; 2 MiB copied into a 2 MiB allocation; freed below.
            unsafe {
                let p = std::alloc::alloc(layout);
                assert!(!p.is_null());
                std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
                std::hint::black_box(p);
                std::alloc::dealloc(p, layout);
            }
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// recovery: reopening a 10 GiB log

/// Bytes in the recovery benchmark's log: 9 sealed 1 GiB segments and a 1023 MiB active one.
const RECOVERY_LOG_BYTES: usize = 10 * 1024 * MIB - MIB;

/// Small files of a log directory (checkpoints, indexes), to put a crashed log back as it was.
fn snapshot_small_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "log") {
            out.push((p.clone(), std::fs::read(&p).expect("read")));
        }
    }
    out
}

fn restore_small_files(dir: &Path, snap: &[(PathBuf, Vec<u8>)]) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "log") && !snap.iter().any(|(s, _)| *s == p) {
            std::fs::remove_file(&p).expect("remove");
        }
    }
    for (p, bytes) in snap {
        std::fs::write(p, bytes).expect("write");
    }
}

/// A crashed 10 GiB log for the recovery benchmark: its directory, end offset and the small
/// files as the crash left them.
struct CrashedLog {
    dir: PathBuf,
    end: i64,
    small_files: Vec<(PathBuf, Vec<u8>)>,
}

fn write_crashed_log(rt: &Runtime, root: &Path, cfg: &LogConfig) -> CrashedLog {
    let dir = fresh_dir(root, "recovery").join("log-0");
    eprintln!("recovery: writing a {} MiB log", RECOVERY_LOG_BYTES >> 20);
    let end = rt.block_on(async {
        let log = open_log(dir.clone(), cfg.clone()).await;
        let batch = batch_of(MIB);
        let n = (RECOVERY_LOG_BYTES / MIB) as u64;
        append_workload(std::slice::from_ref(&log), &batch, n).await;
        eprintln!(
            "recovery log: {} MiB in {} segments",
            log.size_bytes() >> 20,
            log.segment_count()
        );
        let end = log.log_end_offset();
        drop(log); // a crash: no close, the active segment has no index yet
        end
    });
    CrashedLog {
        small_files: snapshot_small_files(&dir),
        dir,
        end,
    }
}

/// Time of one `Log::open` of `log` with its page cache dropped; then closes the log cleanly
/// if `close`, else drops it (a crash).
fn time_cold_open(rt: &Runtime, log: &CrashedLog, cfg: &LogConfig, close: bool) -> Duration {
    drop_page_cache(&log.dir);
    rt.block_on(async {
        let t = Instant::now();
        let l = Log::open(log.dir.clone(), cfg.clone()).await.expect("open");
        let el = t.elapsed();
        assert_eq!(l.log_end_offset(), log.end);
        if close {
            l.close().await.expect("close");
        }
        el
    })
}

fn bench_recovery(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let root = bench_root();
    // No boot checkpoint: this group measures what a restart after a reboot sees, where one
    // would be ignored (a restart in the same boot: benches/startup.sh).
    let cfg = LogConfig {
        boot_checkpoint_interval_ms: 0,
        ..log_config(FlushPolicy::Never)
    };
    // Written on first use, so a criterion filter that skips this group skips the 10 GiB too.
    let crashed: std::cell::OnceCell<CrashedLog> = std::cell::OnceCell::new();
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(SamplingMode::Flat);
    // Page cache dropped before every open: what a restart after a reboot sees.
    g.bench_function("open_after_crash/10GiB_cold", |b| {
        let log = crashed.get_or_init(|| write_crashed_log(&rt, &root, &cfg));
        b.iter_custom(|iters| {
            let mut el = Duration::ZERO;
            for _ in 0..iters {
                // Crash again after each open; the snapshot puts the small files back.
                restore_small_files(&log.dir, &log.small_files);
                el += time_cold_open(&rt, log, &cfg, false);
            }
            el
        })
    });
    g.bench_function("open_after_close/10GiB_cold", |b| {
        let log = crashed.get_or_init(|| write_crashed_log(&rt, &root, &cfg));
        rt.block_on(async {
            let l = Log::open(log.dir.clone(), cfg.clone()).await.expect("open");
            l.close().await.expect("close");
        });
        b.iter_custom(|iters| {
            let mut el = Duration::ZERO;
            for _ in 0..iters {
                el += time_cold_open(&rt, log, &cfg, true);
            }
            el
        })
    });
    g.finish();
    if let Some(parent) = crashed.get().and_then(|l| l.dir.parent()) {
        remove_dir(parent);
    }
}

criterion_group!(
    benches,
    bench_raw,
    bench_append,
    bench_read,
    bench_validate,
    bench_recovery
);
criterion_main!(benches);
