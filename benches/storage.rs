//! Criterion micro-benchmarks of `sluice-storage`, with a raw O_DIRECT baseline measured in the
//! same run so ratios are meaningful on this (noisy, shared) disk.
//!
//! ```sh
//! cargo bench --bench storage                 # everything, < 5 min
//! cargo bench --bench storage -- append       # one group (criterion filter)
//! cargo bench --bench storage -- --quick      # smoke run
//! SLUICE_BENCH_DIR=/mnt/nvme/tmp cargo bench --bench storage   # another disk
//! ```
//!
//! Groups (throughput in bytes unless noted):
//! - `raw`: plain O_DIRECT sequential 1 MiB `write_all_at` through compio, fdatasync every
//!   16 MiB, on a fresh file (`fresh`) and on a preallocated one (`prealloc`). "The limit".
//! - `append/{16KiB,1MiB}/{always,interval100ms,never}/{1p,8p}`: `Log::append` of batches of
//!   1 KiB records, IoMode::Direct. Each partition keeps at most `APPEND_WINDOW_BYTES` appended
//!   but not yet durable (like a producer's in-flight requests); with 8 partitions the 8 logs are
//!   appended round-robin in one runtime, so their writers (and fdatasyncs) overlap. The clock
//!   stops when `wait_durable` resolved for the last append of every partition.
//! - `read`: sequential 1 MiB reads over a 256 MiB log of 16 KiB batches: `disk_cold` (page cache
//!   dropped with POSIX_FADV_DONTNEED before every scan), `page_cache` (disk path, warm pages),
//!   `tail_cache` (everything in the in-memory tail cache).
//! - `index`: `Log::read(random offset, 16 KiB)` on the same 256 MiB log split into 16 MiB
//!   segments (segment search + sparse index lookup + one pread of warm pages); time per lookup.
//! - `validate`: `validate_batches` on 1 MiB of record batches (CRC-32C dominated).
//! - `writer_prep`: the CPU the log's writer spends per 16 MiB write before the I/O (zeroed
//!   aligned allocation + copy), to explain append vs raw.
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
/// Appended-but-not-durable bytes allowed per partition (the writer's largest write is 16 MiB).
const APPEND_WINDOW_BYTES: usize = 16 * MIB;
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

/// Appends `batch` `iters` times to every log (round-robin), keeping at most
/// `APPEND_WINDOW_BYTES` not yet durable per log; returns once all of it is durable.
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

const RAW_WRITE_BYTES: usize = MIB;
const RAW_SYNC_EVERY_BYTES: usize = 16 * MIB;

fn bench_raw(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let root = bench_root();
    let mut g = c.benchmark_group("raw");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat);
    // One iteration = 16 MiB written (16 × 1 MiB) + one fdatasync.
    g.throughput(Throughput::Bytes(RAW_SYNC_EVERY_BYTES as u64));
    for prealloc in [false, true] {
        let name = if prealloc { "prealloc" } else { "fresh" };
        g.bench_function(
            BenchmarkId::new("odirect_1MiB_writes_fdatasync_16MiB", name),
            |b| {
                b.iter_custom(|iters| {
                    let dir = fresh_dir(&root, "raw");
                    let path = dir.join("raw.dat");
                    let total = iters as usize * RAW_SYNC_EVERY_BYTES;
                    let elapsed = rt.block_on(async {
                        let mut opts = compio::fs::OpenOptions::new();
                        opts.write(true).create(true).custom_flags(libc::O_DIRECT);
                        let file = opts.open(&path).await.expect("open O_DIRECT");
                        if prealloc {
                            use std::os::fd::AsRawFd;
                            // SAFETY: valid fd owned by `file`.
                            let rc = unsafe {
                                libc::fallocate(file.as_raw_fd(), 0, 0, total as libc::off_t)
                            };
                            assert_eq!(rc, 0, "fallocate");
                        }
                        let mut buf = RawBuf::new(RAW_WRITE_BYTES);
                        let start = Instant::now();
                        let mut pos = 0u64;
                        for _ in 0..iters {
                            for _ in 0..RAW_SYNC_EVERY_BYTES / RAW_WRITE_BYTES {
                                let mut w = &file;
                                let compio::BufResult(res, b) = w.write_all_at(buf, pos).await;
                                res.expect("write");
                                buf = b;
                                pos += RAW_WRITE_BYTES as u64;
                            }
                            file.sync_data().await.expect("fdatasync");
                        }
                        let el = start.elapsed();
                        file.close().await.expect("close");
                        el
                    });
                    remove_dir(&dir);
                    elapsed
                })
            },
        );
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
        .measurement_time(Duration::from_secs(3))
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

/// Fills `log` with `READ_LOG_BYTES` of 16 KiB batches; returns the batch count.
async fn fill_log(log: &Rc<Log>) -> i64 {
    let batch = batch_of(16 * KIB);
    let n = (READ_LOG_BYTES / batch.len()) as u64;
    append_workload(std::slice::from_ref(log), &batch, n).await;
    log.log_end_offset()
}

/// Reads the whole log sequentially, 1 MiB per read; returns bytes read.
async fn scan_log(log: &Log) -> usize {
    let end = log.high_watermark();
    let mut offset = log.log_start_offset();
    let mut total = 0usize;
    while offset < end {
        let r = log.read(offset, MIB).await.expect("read");
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
        if e.path().extension().is_some_and(|x| x == "log") {
            if let Ok(f) = std::fs::File::open(e.path()) {
                // SAFETY: valid fd for the duration of the call.
                unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
        }
    }
}

fn bench_read(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let root = bench_root();
    let dir = fresh_dir(&root, "read");
    let disk_dir = dir.join("disk-0");
    let (disk_log, cache_log, ends) = rt.block_on(async {
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
        let cache_end = fill_log(&cache).await;
        (disk, cache, (disk_end, cache_end))
    });
    let log_bytes = disk_log.size_bytes();
    eprintln!(
        "read log: {} MiB, {} segments, {} batches",
        log_bytes >> 20,
        disk_log.segment_count(),
        ends.0
    );

    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(log_bytes));
    g.bench_function("seq_1MiB/disk_cold", |b| {
        b.iter_custom(|iters| {
            let mut el = Duration::ZERO;
            for _ in 0..iters {
                drop_page_cache(&disk_dir);
                el += rt.block_on(async {
                    let t = Instant::now();
                    std::hint::black_box(scan_log(&disk_log).await);
                    t.elapsed()
                });
            }
            el
        })
    });
    g.bench_function("seq_1MiB/page_cache", |b| {
        rt.block_on(scan_log(&disk_log)); // warm the pages
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(scan_log(&disk_log).await);
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("seq_1MiB/tail_cache", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(scan_log(&cache_log).await);
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
        rt.block_on(scan_log(&disk_log)); // warm the pages
        b.iter_custom(|iters| {
            let mut r = rng.replace(Rng::new(1));
            let el = rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let o = r.below(ends.0 as u64) as i64;
                    let res = disk_log.read(o, 16 * KIB).await.expect("read");
                    std::hint::black_box(res.bytes);
                }
                t.elapsed()
            });
            rng.set(r);
            el
        })
    });
    g.finish();

    rt.block_on(async {
        disk_log.delete().await.expect("delete");
        cache_log.delete().await.expect("delete");
    });
    remove_dir(&dir);
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

    // CPU the log's writer spends per coalesced write before the I/O starts (it does this on
    // the shard thread, one write in flight per log): a fresh zeroed 4 KiB-aligned buffer
    // (AlignedBuf::with_capacity uses alloc_zeroed) plus copying the queued batches into it.
    let mut g = c.benchmark_group("writer_prep");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let src = vec![7u8; 16 * MIB];
    g.throughput(Throughput::Bytes(src.len() as u64));
    g.bench_function("alloc_zeroed_aligned_16MiB", |b| {
        b.iter(|| {
            let layout = std::alloc::Layout::from_size_align(16 * MIB, 4096).expect("layout");
            // SAFETY: non-zero size; freed right below with the same layout.
            unsafe {
                let p = std::alloc::alloc_zeroed(layout);
                assert!(!p.is_null());
                std::hint::black_box(p);
                std::alloc::dealloc(p, layout);
            }
        })
    });
    g.bench_function("alloc_zeroed_aligned_16MiB+copy", |b| {
        b.iter(|| {
            let layout = std::alloc::Layout::from_size_align(16 * MIB, 4096).expect("layout");
            // SAFETY: non-zero size; 16 MiB copied into a 16 MiB allocation; freed below.
            unsafe {
                let p = std::alloc::alloc_zeroed(layout);
                assert!(!p.is_null());
                std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
                std::hint::black_box(p);
                std::alloc::dealloc(p, layout);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_raw, bench_append, bench_read, bench_validate);
criterion_main!(benches);
