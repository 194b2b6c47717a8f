#!/usr/bin/env bash
# Sluice standard workload matrix -> BENCHMARKS.md
#
#   benches/run-matrix.sh                      full matrix (fresh broker per row, Sluice then
#                                              Apache Kafka), ~30 min
#   benches/run-matrix.sh --quick              smoke version (3 s runs, fewer rows), ~2-3 min
#   benches/run-matrix.sh --bootstrap H:P      same matrix against an already-running broker
#
# What it does, in one run (so every ratio compares numbers from the same conditions):
#   1. builds release binaries (cargo build --release -p sluice -p sluice-tools)
#   2. measures this machine's limits: loopback TCP bandwidth (iperf3), O_DIRECT sequential write
#      bandwidth with fdatasync every 16 MiB, O_DIRECT sequential read bandwidth of the file just
#      written (the consume rows divide by it), and fdatasync latency after a 4 KiB O_DIRECT write
#      (fio; a small python writer if fio is unavailable)
#   3. for each row: starts a fresh broker on 127.0.0.1 with its own data dir under the work dir
#      (on the real disk), runs sluice-load, stops the broker by PID, deletes the data dir; then
#      the same row against a fresh Apache Kafka broker (scripts/kafka-ref.sh: single-node KRaft
#      from Maven Central's jars, the same flush policy in Kafka's terms) unless --no-kafka;
#      and, once per distinct produce/consume workload, against sluice-sink (tools/: a do-nothing
#      broker that answers Produce at once and serves Fetch from memory) — the client's ceiling,
#      which the "÷ ceiling" columns divide by — unless --no-sink
#   4. optionally runs `cargo bench --bench storage` (criterion) and adds its table
#   5. writes BENCHMARKS.md (tables, ratios to the limits, exact commands, machine, date, commit)
#
# Every external command runs under `timeout`. Only loopback addresses are used (unless you pass
# another --bootstrap yourself).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=${SLUICE_BENCH_WORK:-$TARGET_DIR/bench-matrix}
OUT=$ROOT/BENCHMARKS.md
BOOTSTRAP=""
QUICK=0
BUILD=1
STORAGE_BENCH=auto     # auto = on for the full run, off for --quick
KEEP_DATA=0
KAFKA=auto             # auto = on when java is installed and no --bootstrap is given
SINK=1                 # the sluice-sink ceiling rows (off with --bootstrap)
FLUSH_INTERVAL_MS=${FLUSH_INTERVAL_MS:-100}
PRODUCERS=${PRODUCERS:-1}
CONSUMERS=${CONSUMERS:-1}

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --bootstrap HOST:PORT  run against this already-running broker (no broker is started; the
                         flush-policy dimension collapses to whatever that broker uses)
  --quick                short smoke run (3 s per row, fewer rows, smaller limits measurements)
  --out FILE             output markdown (default: $OUT)
  --work-dir DIR         results, logs, broker data dirs (default: $WORK; must be on a real disk)
  --no-build             use the existing release binaries
  --storage-bench        also run 'cargo bench --bench storage' (default in the full run)
  --no-storage-bench     skip it
  --keep-data            keep broker data dirs
  --no-kafka             skip the Apache Kafka rows
  --no-sink              skip the sluice-sink (client ceiling) rows
Environment: FLUSH_INTERVAL_MS (default 100), PRODUCERS (1), CONSUMERS (1), CARGO_TARGET_DIR.
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bootstrap) BOOTSTRAP=${2:?--bootstrap needs HOST:PORT}; shift 2 ;;
        --bootstrap=*) BOOTSTRAP=${1#*=}; shift ;;
        --quick) QUICK=1; shift ;;
        --out) OUT=${2:?}; shift 2 ;;
        --work-dir) WORK=${2:?}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --storage-bench) STORAGE_BENCH=1; shift ;;
        --no-storage-bench) STORAGE_BENCH=0; shift ;;
        --keep-data) KEEP_DATA=1; shift ;;
        --no-kafka) KAFKA=0; shift ;;
        --no-sink) SINK=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $STORAGE_BENCH == auto ]] && STORAGE_BENCH=$((1 - QUICK))
if [[ $KAFKA == auto ]]; then
    KAFKA=0
    [[ -z $BOOTSTRAP ]] && command -v java >/dev/null 2>&1 && KAFKA=1
fi
[[ -n $BOOTSTRAP ]] && KAFKA=0 && SINK=0
KAFKA_REF=$ROOT/scripts/kafka-ref.sh

if [[ $QUICK == 1 ]]; then
    DURATION=3s; WARMUP=1s; BACKLOG_MSGS=200000; KAFKA_WARM=5s
    IPERF_SECS=2; FIO_SEQ_SIZE=256M; FIO_SYNC_SECS=3
else
    DURATION=10s; WARMUP=2s; BACKLOG_MSGS=1000000; KAFKA_WARM=15s
    IPERF_SECS=5; FIO_SEQ_SIZE=1G; FIO_SYNC_SECS=8
fi
MSG_SIZE=1024

SLUICE=$TARGET_DIR/release/sluice
LOADGEN=$TARGET_DIR/release/sluice-load
SINK_BIN=$TARGET_DIR/release/sluice-sink
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
RES=$WORK/$RUN_ID
mkdir -p "$RES"
HELPER=$RES/helper.py
ROWS=$RES/rows.jsonl
LIMITS=$RES/limits.json
: > "$ROWS"
BROKER_PID=""
IPERF_PID=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
    [[ -n $IPERF_PID ]] && kill "$IPERF_PID" 2>/dev/null || true
    [[ -n $BROKER_PID ]] && stop_broker || true
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------------------------------------
# Python helper (stdlib only): free ports, CPU snapshots, JSON extraction, the report.
cat > "$HELPER" <<'PYEOF'
import json, os, socket, sys, time, glob, math

def freeport():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()

def listening(port):
    """Exit 0 when something listens on 127.0.0.1:port (checked without connecting)."""
    want = f":{int(port):04X}"
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(want) and f[3] == "0A":
            sys.exit(0)
    sys.exit(1)

def ticks(path):
    with open(path) as f:
        data = f.read()
    comm = data[data.index("(") + 1:data.rindex(")")]
    rest = data[data.rindex(")") + 2:].split()
    return comm, int(rest[11]) + int(rest[12])

def cpusnap(pid, out):
    snap = {"t": time.monotonic(), "total": 0, "threads": {}}
    try:
        snap["total"] = ticks(f"/proc/{pid}/stat")[1]
        for p in glob.glob(f"/proc/{pid}/task/*/stat"):
            try:
                comm, t = ticks(p)
                snap["threads"][p.split("/")[4]] = [comm, t]
            except OSError:
                pass
    except OSError:
        snap = None
    json.dump(snap, open(out, "w"))

def get(path, *keys):
    d = json.load(open(path))
    for k in keys:
        d = d[int(k)] if isinstance(d, list) else d[k]
    print(d)

def addrow(out, *kv):
    row = {}
    for a in kv:
        k, v = a.split("=", 1)
        row[k] = v
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")

def setlimit(out, key, value):
    d = json.load(open(out)) if os.path.exists(out) else {}
    try:
        value = float(value)
    except ValueError:
        pass
    d[key] = value
    json.dump(d, open(out, "w"), indent=1)

def iperf(path):
    d = json.load(open(path))
    print(d["end"]["sum_received"]["bits_per_second"] / 8)

def fio_bw(path, direction="write"):
    d = json.load(open(path))
    print(d["jobs"][0][direction]["bw_bytes"])

def fio_sync(path):
    d = json.load(open(path))
    lat = d["jobs"][0]["sync"]["lat_ns"]
    p = lat["percentile"]
    print(p["50.000000"] / 1e6, p["99.000000"] / 1e6, p.get("99.900000", 0) / 1e6, lat["N"])

def pywriter(path, total_mib, sync_secs):
    """Fallback when fio is missing: O_DIRECT 1 MiB writes with fdatasync every 16 MiB, the
    same file read back with O_DIRECT 1 MiB reads, then 4 KiB O_DIRECT write + fdatasync
    latencies for sync_secs."""
    import mmap
    buf = mmap.mmap(-1, 1 << 20)
    buf.write(os.urandom(1 << 20))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    t = time.monotonic()
    for i in range(total_mib):
        os.pwrite(fd, buf, i << 20)
        if (i + 1) % 16 == 0:
            os.fdatasync(fd)
    os.fdatasync(fd)
    bw = total_mib * (1 << 20) / (time.monotonic() - t)
    os.close(fd)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    t = time.monotonic()
    for i in range(total_mib):
        os.preadv(fd, [buf], i << 20)
    read_bw = total_mib * (1 << 20) / (time.monotonic() - t)
    os.close(fd)
    small = mmap.mmap(-1, 4096)
    fd = os.open(path + ".sync", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    lats, end, i = [], time.monotonic() + sync_secs, 0
    while time.monotonic() < end:
        os.pwrite(fd, small, i * 4096)
        t = time.monotonic(); os.fdatasync(fd); lats.append(time.monotonic() - t); i += 1
    os.close(fd)
    os.unlink(path); os.unlink(path + ".sync")
    lats.sort()
    q = lambda x: lats[min(len(lats) - 1, int(x * len(lats)))] * 1e3
    print(bw, read_bw, q(0.5), q(0.99), q(0.999), len(lats))

# ---------------------------------------------------------------------------- report

def fmt(v, nd=1):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)

def pct(v):
    return "–" if v is None else f"{100 * v:.0f} %"

def cpu_cores(a, b):
    try:
        sa, sb = json.load(open(a)), json.load(open(b))
    except (OSError, ValueError):
        return None, []
    if not sa or not sb:
        return None, []
    hz = os.sysconf("SC_CLK_TCK")
    dt = sb["t"] - sa["t"]
    if dt <= 0:
        return None, []
    threads = []
    for tid, (comm, t1) in sb["threads"].items():
        t0 = sa["threads"].get(tid, [comm, 0])[1]
        threads.append((comm, (t1 - t0) / hz / dt))
    threads.sort(key=lambda x: -x[1])
    return (sb["total"] - sa["total"]) / hz / dt, threads

def load_rows(rows_path):
    rows = []
    for line in open(rows_path):
        r = json.loads(line)
        r["res"] = None
        try:
            r["res"] = json.load(open(r["json"]))["results"]
        except (OSError, ValueError, KeyError):
            pass
        r["cpu"], r["threads"] = cpu_cores(r.get("cpu0", ""), r.get("cpu1", ""))
        rows.append(r)
    return rows

def criterion_results(target_dir, since):
    out = []
    for bj in glob.glob(os.path.join(target_dir, "criterion", "**", "new", "benchmark.json"), recursive=True):
        if os.path.getmtime(bj) < since:
            continue
        est = os.path.join(os.path.dirname(bj), "estimates.json")
        try:
            b = json.load(open(bj)); e = json.load(open(est))
        except (OSError, ValueError):
            continue
        ns = e["mean"]["point_estimate"]
        lo, hi = e["mean"]["confidence_interval"]["lower_bound"], e["mean"]["confidence_interval"]["upper_bound"]
        thr = b.get("throughput") or {}
        out.append({"id": b["full_id"], "group": b["group_id"], "ns": ns, "lo": lo, "hi": hi,
                    "bytes": thr.get("Bytes") or thr.get("BytesDecimal"), "elems": thr.get("Elements")})
    order = {"raw": 0, "append": 1, "read": 2, "index": 3, "validate": 4, "writer_prep": 5, "recovery": 6}
    out.sort(key=lambda r: (order.get(r["group"], 9), r["id"]))
    return out

def report(res_dir, out, meta_path):
    meta = json.load(open(meta_path))
    lim = json.load(open(os.path.join(res_dir, "limits.json")))
    rows = load_rows(os.path.join(res_dir, "rows.jsonl"))
    loop = lim.get("loopback_bytes_per_s")
    disk = lim.get("disk_seq_bytes_per_s")
    disk_read = lim.get("disk_read_bytes_per_s")
    sync_p99 = lim.get("fdatasync_p99_ms")
    MB = 1e6
    L = []
    w = L.append
    w("# Sluice benchmarks\n")
    w("Generated by `benches/run-matrix.sh` — do not edit by hand; re-run the script instead.\n")
    w("## How to reproduce\n")
    w("```sh")
    w("benches/run-matrix.sh                       # full matrix + storage micro-benchmarks (~30 min)")
    w("benches/run-matrix.sh --quick               # smoke version (~3 min)")
    w("benches/run-matrix.sh --bootstrap HOST:PORT # same matrix against an already-running broker")
    w("benches/run-matrix.sh --no-kafka            # without the Apache Kafka rows")
    w("benches/run-matrix.sh --no-sink             # without the sluice-sink (client ceiling) rows")
    w("cargo bench --bench storage                 # criterion micro-benchmarks of sluice-storage only")
    w("```\n")
    w("Each matrix row starts a fresh `sluice` broker on 127.0.0.1 with an empty data dir on the "
      "same disk fio measured, runs one `sluice-load` command (1 KiB messages, "
      "librdkafka's default batching), and stops the broker by PID. The machine's limits are "
      "measured in the same run, and every ratio below divides by them. "
      "MB = 10^6 bytes and counts message payload bytes only, not Kafka framing. "
      "The load generator runs on the same machine as the broker and takes CPU from it.\n")
    if meta.get("quick"):
        w("> **Quick (smoke) run**: 3 s per row and fewer rows. The numbers are indicative only. "
          "The machine was shared with other jobs (compilers) during this run, so results are noisy.\n")
    w("## Run\n")
    w(f"- date: {meta['date']}")
    w(f"- git commit: `{meta['commit']}`")
    w(f"- mode: {'quick' if meta.get('quick') else 'full'}; broker: "
      + (f"external `{meta['bootstrap']}`" if meta.get("bootstrap") else
         f"fresh per row, `{meta['broker_cmd']}`"))
    w(f"- machine: {meta['machine']}")
    w(f"- data/work dir: `{meta['work']}` ({meta['fs']})")
    w(f"- load: {meta['load_desc']}\n")
    w("## Machine limits (measured in this run)\n")
    w("| quantity | value | how |")
    w("|---|---|---|")
    w(f"| loopback TCP | {fmt(loop and loop / MB, 0)} MB/s | {lim.get('loopback_how', '–')} |")
    w(f"| O_DIRECT sequential write, fdatasync every 16 MiB | {fmt(disk and disk / MB, 0)} MB/s | {lim.get('disk_how', '–')} |")
    w(f"| O_DIRECT sequential read | {fmt(disk_read and disk_read / MB, 0)} MB/s | {lim.get('disk_read_how', '–')} |")
    w(f"| fdatasync after a 4 KiB O_DIRECT write | p50 {fmt(lim.get('fdatasync_p50_ms'), 2)} ms, "
      f"p99 {fmt(sync_p99, 2)} ms, p99.9 {fmt(lim.get('fdatasync_p999_ms'), 2)} ms "
      f"({fmt(int(lim.get('fdatasync_count', 0)))} syncs) | {lim.get('sync_how', '–')} |\n")

    def r_ok(r):
        return r["res"] is not None

    def lat(r, k):
        return r["res"]["latency_ms"].get(k) if r_ok(r) else None

    def prob(r):
        if not r_ok(r):
            return f"FAILED (exit {r.get('rc')})"
        p = r["res"].get("problems") or []
        e = r["res"].get("errors", 0)
        s = []
        if e:
            s.append(f"{e} errors")
        if p and not e:
            s.append("; ".join(p)[:80])
        return ", ".join(s) if s else "ok"

    kafka_rows = {r["name"][: -len("-kafka")]: r for r in rows if r.get("broker") == "kafka"}
    with_kafka = bool(kafka_rows)

    # Each workload's sink rows (two runs: one is too noisy a ceiling on this machine).
    sink_rows = {}
    for r in rows:
        if r.get("broker") == "sink":
            sink_rows.setdefault(r.get("sinkkey"), []).append(r)

    def who(r):
        return {"kafka": "Apache Kafka", "sink": "sluice-sink (ceiling)"}.get(r.get("broker"), "Sluice")

    def flush_of(r):
        return "–" if r.get("broker") == "sink" else r["flush"]

    def vs_sink(r, value, lower_is_better=False):
        """A broker's value ÷ the same workload's best value against sluice-sink (the client's
        ceiling): the higher rate, or with `lower_is_better` the lower latency, of its runs."""
        if r.get("broker") == "sink" or not r_ok(r):
            return "–"
        best = [value(k) for k in sink_rows.get(r.get("sinkkey"), []) if r_ok(k)]
        best = [b for b in best if b]
        a = value(r)
        if a is None or not best:
            return "–"
        return f"{a / (min(best) if lower_is_better else max(best)):.2f}"

    def cpu_per_gb(r, mbps):
        """Broker CPU seconds per GB (10^9 payload bytes) moved."""
        if r.get("cpu") is None or not mbps:
            return "–"
        return fmt(r["cpu"] / mbps * 1e9, 2)

    def vs_kafka(r, value):
        """Sluice's value ÷ the same row's Apache Kafka value (– for Kafka rows or without one)."""
        k = kafka_rows.get(r["name"]) if r.get("broker", "sluice") == "sluice" else None
        if not k or not r_ok(r) or not r_ok(k):
            return "–"
        a, b = value(r), value(k)
        if a is None or not b:
            return "–"
        q = a / b
        return f"{q:.2f}" if q >= 0.1 else f"{q:.2g}"

    def thr(r):
        return r["res"]["throughput_msgs_per_sec"]

    if with_kafka:
        w("## Apache Kafka side by side\n")
        w("Every row below ran twice in this run, on the same machine and disk: against Sluice, then "
          "against a fresh single-node Apache Kafka "
          f"{meta.get('kafka_version', '')} broker (KRaft, combined broker and controller, "
          "`scripts/kafka-ref.sh`, started from Maven Central's jars with its default JVM "
          "settings but a 768 MiB heap). Kafka's flush policy follows Sluice's: `never` = Kafka's "
          "default (page cache, no fsync; Sluice's `never` writes with O_DIRECT and does not fsync "
          "either), `interval` = `log.flush.interval.ms`, `always` = "
          "`log.flush.interval.messages=1`. Before each Kafka row a load of "
          f"{meta.get('kafka_warm', '?')} on another topic warms the JVM up (not measured). The "
          "end-to-end rows offer Kafka the same rate as Sluice. **÷ Kafka** is Sluice's figure "
          "divided by Kafka's on the same row: above 1 means Sluice moved more messages per "
          "second; for latency, below 1 means Sluice was faster.\n")

    if sink_rows:
        w("## The client's ceiling\n")
        w("Each produce and consume workload (acks, partitions, client properties; the flush "
          "policy aside) also ran twice against `sluice-sink` (`tools/src/bin/sluice-sink.rs`): a "
          "do-nothing broker that answers Produce at once (offsets assigned, no CRC check, nothing "
          "written) and serves Fetch from the produced batches kept in memory, one thread per "
          "connection. What the client reaches against it is the most this client can do on this "
          "machine with no broker work at all; one run of it varies by 10–30 % on this machine, so "
          "**÷ ceiling** divides a broker's msg/s by the better of the sink's two runs on the same "
          "workload (its p99 by the lower p99); **CPU s/GB** is the broker's (or the sink's) CPU time per "
          "10^9 payload bytes moved.\n")

    prod = [r for r in rows if r["kind"] == "produce"]
    if prod:
        w("## Produce only\n")
        w("Latency = acknowledgement time − hand-over to the client (max rate, so it includes "
          "time queued in librdkafka).\n")
        w("| broker | flush | acks | partitions | msg/s | ÷ Kafka | ÷ ceiling | MB/s | ÷ loopback | ÷ disk | p50 ms | p99 ms | p99.9 ms | max ms | broker CPU (cores) | CPU s/GB | status |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in prod:
            mbps = r["res"]["throughput_mb_per_sec"] * 1048576 if r_ok(r) else None
            acks = f"{r['acks']} (idempotent)" if r['name'].endswith(('-idempotent', '-idempotent-sink')) else r['acks']
            w(f"| {who(r)} | {flush_of(r)} | {acks} | {r['partitions']} | "
              f"{fmt(r['res']['throughput_msgs_per_sec'], 0) if r_ok(r) else '–'} | {vs_kafka(r, thr)} | "
              f"{vs_sink(r, thr)} | "
              f"{fmt(mbps and mbps / MB)} | {pct(mbps / loop if mbps and loop else None)} | "
              f"{pct(mbps / disk if mbps and disk else None)} | "
              f"{fmt(lat(r, 'p50'), 2)} | {fmt(lat(r, 'p99'), 2)} | {fmt(lat(r, 'p999'), 2)} | "
              f"{fmt(lat(r, 'max'), 1)} | {fmt(r['cpu'], 2)} | {cpu_per_gb(r, mbps)} | {prob(r)} |")
        w("")
    light = [r for r in rows if r["kind"] == "latency"]
    if light:
        w("## Acknowledgement latency at a light fixed rate\n")
        w("One producer sends 1 KiB messages on a fixed schedule with `linger.ms=0` (one message "
          "a request), acks=all, 4 partitions. Latency = acknowledgement − intended send time "
          "(coordinated-omission safe). The sluice-sink rows are the floor this client and machine "
          "reach with no broker work; **p99 ÷ ceiling** divides a broker's p99 by the lower of the "
          "sink's two.\n")
        w("| broker | flush | rate msg/s | acked msg/s | p50 ms | p99 ms | p99 ÷ ceiling | p99.9 ms | p99.99 ms | max ms | broker CPU (cores) | status |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in light:
            w(f"| {who(r)} | {flush_of(r)} | {fmt(float(r['rate']), 0)} | "
              f"{fmt(r['res']['throughput_msgs_per_sec'], 0) if r_ok(r) else '–'} | "
              f"{fmt(lat(r, 'p50'), 3)} | {fmt(lat(r, 'p99'), 3)} | {vs_sink(r, lambda x: lat(x, 'p99'), lower_is_better=True)} | "
              f"{fmt(lat(r, 'p999'), 3)} | {fmt(lat(r, 'p9999'), 3)} | {fmt(lat(r, 'max'), 2)} | "
              f"{fmt(r['cpu'], 2)} | {prob(r)} |")
        w("")
    cons = [r for r in rows if r["kind"] == "consume"]
    if cons:
        w("## Consume from a backlog\n")
        w(f"The backlog is written first (`produce --messages`, acks=1, not timed here), then "
          "one consumer reads it from the beginning until caught up. "
          "Sluice writes with O_DIRECT and reads a backlog beyond its tail cache from the disk with O_DIRECT too (into its own buffers, one chunk read ahead per partition): no page-cache pages are filled, which on this VM cost about 1.4 s of kernel CPU per GB on first touch (`dd` of a fresh 1 GiB file took 1.67 s of system time the first time and 0.07-0.28 s once the guest reused freed page-cache pages). Kafka's backlog is still in the page cache it was written through.\n")
        w("| broker | flush | partitions | backlog msgs | msg/s | ÷ Kafka | ÷ ceiling | MB/s | ÷ loopback | ÷ disk read | broker CPU (cores) | CPU s/GB | status |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in cons:
            mbps = r["res"]["throughput_mb_per_sec"] * 1048576 if r_ok(r) else None
            w(f"| {who(r)} | {flush_of(r)} | {r['partitions']} | {fmt(r['res']['topic']['backlog_at_start']) if r_ok(r) else '–'} | "
              f"{fmt(r['res']['throughput_msgs_per_sec'], 0) if r_ok(r) else '–'} | {vs_kafka(r, thr)} | "
              f"{vs_sink(r, thr)} | "
              f"{fmt(mbps and mbps / MB)} | {pct(mbps / loop if mbps and loop else None)} | "
              f"{pct(mbps / disk_read if mbps and disk_read else None)} | "
              f"{fmt(r['cpu'], 2)} | {cpu_per_gb(r, mbps)} | {prob(r)} |")
        w("")
    e2e = [r for r in rows if r["kind"] == "e2e"]
    if e2e:
        w("## End to end at 50 % of the measured maximum produce rate\n")
        w("Fixed rate = 0.5 × the acks=all produce-only rate of the same flush policy and partition "
          "count (8 partitions' rate if that row is missing). Latency = consume time − intended send time "
          "(coordinated-omission safe). Bound: 5 ms for flush=never; 2 × the fdatasync p99 measured above "
          "for flush=always (an ack waits for about one fdatasync, the next batch for at most one more). "
          "**fell behind the rate** = consumed msg/s < 95 % of the target: the latency then measures a "
          "growing queue, not the broker's latency (with 1 consumer on 2 shared cores the consumer, not "
          "the broker, is usually what falls behind). The sluice-sink rows (the same rate; it serves "
          "each Fetch from memory as soon as the batches arrive) are what this client and machine "
          "reach with no broker work; **p99 ÷ ceiling** divides a broker's p99 by the lower of the "
          "sink's two.\n")
        w("| broker | flush | acks | partitions | rate msg/s | consumed msg/s | p50 ms | p99 ms | p99 ÷ Kafka | p99 ÷ ceiling | p99.9 ms | max ms | bound ms | p99 ÷ bound | broker CPU (cores) | status |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in e2e:
            bound = None
            if r.get("broker") == "sink":
                pass
            elif r["flush"] == "never":
                bound = 5.0
            elif r["flush"] == "always" and sync_p99:
                bound = 2 * sync_p99
            p99 = lat(r, "p99")
            ratio = f"{p99 / bound:.2f}" if (p99 is not None and bound) else "–"
            missing = r["res"].get("missing") if r_ok(r) else None
            st = prob(r) + (f", {missing} missing" if missing else "")
            if r_ok(r) and r["res"]["throughput_msgs_per_sec"] < 0.95 * float(r["rate"]):
                st += ", **fell behind the rate**"
            w(f"| {who(r)} | {flush_of(r)} | {r['acks']} | {r['partitions']} | {fmt(float(r['rate']), 0)} | "
              f"{fmt(r['res']['throughput_msgs_per_sec'], 0) if r_ok(r) else '–'} | "
              f"{fmt(lat(r, 'p50'), 2)} | {fmt(p99, 2)} | {vs_kafka(r, lambda x: lat(x, 'p99'))} | "
              f"{vs_sink(r, lambda x: lat(x, 'p99'), lower_is_better=True)} | {fmt(lat(r, 'p999'), 2)} | {fmt(lat(r, 'max'), 1)} | "
              f"{fmt(bound, 2)} | {ratio} | {fmt(r['cpu'], 2)} | {st} |")
        w("")

    crit = criterion_results(meta["target_dir"], meta["storage_bench_since"]) if meta.get("storage_bench") else []
    if crit:
        sys.path.insert(0, meta["benches_dir"])
        from storage_rounds import baselines, target_of
        raw_bps = {r["id"]: r["bytes"] / (r["ns"] / 1e9) for r in crit if r["group"] == "raw" and r["bytes"]}
        w("## Storage micro-benchmarks (criterion, `cargo bench --bench storage`)\n")
        w("Run in the same session as the matrix. `raw/*` are baselines measured by the same "
          "benchmark binary: O_DIRECT sequential `write_all_at` through compio, one write in flight "
          "per file (1 MiB writes with fdatasync every 16 MiB, fresh or preallocated file; 1 MiB and "
          "4 MiB writes without fdatasync; the same over 8 files at once). Two ratios: **÷ disk** "
          "divides by the fastest single-file raw variant with the same sync behaviour (fdatasync "
          "for `always`; none for `never` and, the stricter choice, `interval100ms`) — the raw disk "
          "bandwidth the targets refer to; **÷ same** divides by the raw variant with the same "
          "pattern (8 files for 8p rows). Appends: batches of 1 KiB records; each partition keeps "
          "at most 16 MiB appended-but-not-durable; 8p = 8 logs appended concurrently in one "
          "runtime, yielding to it after each round; raw and append rows measure 10 s each. "
          "Targets: never/interval ≥ 80 % of the disk; always with 8 partitions ≥ 50 %. "
          "On a drifting disk one run's ratios are noisy: `benches/storage_rounds.py --paired` "
          "measures each append row right next to its own baselines, several times, and reports "
          "median ratios. `read/…/tail_cache` hands out `Bytes` clones "
          "of cached batches (no copy), so its figure is bytes handed out per second, not bytes "
          "moved. `writer_prep` is the CPU the log's writer spends building one 2 MiB write; it "
          "overlaps the previous write's I/O. `recovery/*` opens a 10 GiB log with the page cache "
          "dropped: after a crash (the active 1023 MiB segment is scanned) and after a clean close.\n")
        w("| benchmark | mean time / iter | throughput | ÷ disk | ÷ same | target |")
        w("|---|---|---|---|---|---|")
        for r in crit:
            t = r["ns"]
            tstr = f"{t / 1e6:.2f} ms" if t >= 1e6 else (f"{t / 1e3:.2f} µs" if t >= 1e3 else f"{t:.0f} ns")
            disk_r = same_r = target = "–"
            if r["bytes"]:
                bps = r["bytes"] / (t / 1e9)
                thr = f"{bps / MB:,.0f} MB/s"
                if r["group"] == "append":
                    disk_b, same_b = baselines(r["id"], raw_bps)
                    disk_r = pct(bps / disk_b) if disk_b else "–"
                    same_r = pct(bps / same_b) if same_b else "–"
                    goal = target_of(r["id"])
                    if goal and disk_b:
                        target = f"≥ {goal:.0%}: " + ("met" if bps >= goal * disk_b else "**missed**")
            elif r["elems"]:
                thr = f"{1e9 / t:,.0f} ops/s"
            else:
                thr = "–"
            w(f"| `{r['id']}` | {tstr} | {thr} | {disk_r} | {same_r} | {target} |")
        w("")

    heavy = [r for r in rows if r.get("threads")]
    if heavy:
        w("## Broker threads (CPU cores used during each row, top 4)\n")
        w("| row | threads |")
        w("|---|---|")
        for r in heavy:
            ts = ", ".join(f"{c} {v:.2f}" for c, v in r["threads"][:4] if v > 0.005)
            w(f"| {r['name']} | {ts or '–'} |")
        w("")

    w("## Exact commands\n")
    w("```sh")
    for c in meta.get("limit_cmds", []):
        w(c)
    for r in rows:
        w(f"# {r['name']}")
        if r.get("broker_cmd"):
            w(r["broker_cmd"] + ("" if r.get("broker") == "kafka" else " &"))
        for k in ("pre_cmd", "cmd"):
            if r.get(k):
                w(r[k])
    if meta.get("storage_bench"):
        w(meta.get("storage_bench_cmd", ""))
    w("```")
    text = "\n".join(L) + "\n"
    # Paths inside the repository are written relative to it (no machine-specific prefix).
    root = os.environ.get("META_ROOT")
    if root:
        text = text.replace(root.rstrip("/") + "/", "")
    # The replication, compaction, TLS and transactions sections are written by benches/replication.sh (a
    # three-node cluster), benches/compaction.sh, benches/tls.sh, benches/transactions.sh and
    # benches/transactions-java.sh, the start-up one by benches/startup.sh, the authentication
    # one by hand from `cargo bench --bench security`; keep them.
    if os.path.exists(out):
        import re
        old = open(out).read()
        for name in ("replication", "compaction", "tls", "txn", "txn-java", "auth", "startup"):
            m = re.search(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->\n?", old, re.S)
            if m:
                text += "\n" + m.group(0)
    with open(out, "w") as f:
        f.write(text)

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"freeport": freeport, "listening": listening, "cpusnap": cpusnap, "get": get, "addrow": addrow, "setlimit": setlimit,
     "iperf": iperf, "fio-bw": fio_bw, "fio-sync": fio_sync, "report": report,
     "pywriter": lambda p, m, s: pywriter(p, int(m), float(s))}[cmd](*args)
PYEOF
py() { timeout 60 python3 "$HELPER" "$@"; }

# ------------------------------------------------------------------------------------------------
# Build

if [[ $BUILD == 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && timeout 3600 cargo build --release -p sluice -p sluice-tools) >&2
    if [[ $STORAGE_BENCH == 1 ]]; then
        log "building the storage benchmark"
        (cd "$ROOT" && timeout 3600 cargo bench --bench storage --no-run) >&2
    fi
fi
[[ -x $LOADGEN ]] || { echo "missing $LOADGEN" >&2; exit 1; }
[[ -n $BOOTSTRAP || -x $SLUICE ]] || { echo "missing $SLUICE" >&2; exit 1; }

# ------------------------------------------------------------------------------------------------
# Machine limits

ensure_tool() { # ensure_tool BINARY APT_PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2"
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q "$2" >/dev/null 2>&1 ||
            { timeout 300 apt-get update -q >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q "$2" >/dev/null 2>&1; } || true
    fi
    command -v "$1" >/dev/null 2>&1
}

LIMIT_CMDS=()
measure_loopback() {
    if ! ensure_tool iperf3 iperf3; then
        log "iperf3 unavailable: loopback limit not measured"
        return 0
    fi
    local port; port=$(py freeport)
    timeout $((IPERF_SECS + 30)) iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    IPERF_PID=$!
    # (not probed by connecting: -1 makes the server exit after its first connection)
    for _ in $(seq 50); do py listening "$port" && break; sleep 0.1; done
    local cmd="iperf3 -c 127.0.0.1 -p $port -t $IPERF_SECS -J"
    LIMIT_CMDS+=("iperf3 -s -1 -B 127.0.0.1 -p $port &" "$cmd")
    if timeout $((IPERF_SECS + 20)) $cmd > "$RES/iperf3.json" 2>/dev/null; then
        local bw; bw=$(py iperf "$RES/iperf3.json") || bw=""
    fi
    if [[ -n ${bw:-} ]]; then
        py setlimit "$LIMITS" loopback_bytes_per_s "$bw"
        py setlimit "$LIMITS" loopback_how "iperf3 -t $IPERF_SECS, 1 stream"
        log "loopback: $(awk -v b="$bw" 'BEGIN{printf "%.0f MB/s", b/1e6}')"
    else
        log "iperf3 failed"
    fi
    kill "$IPERF_PID" 2>/dev/null || true
    wait "$IPERF_PID" 2>/dev/null || true
    IPERF_PID=""
}

measure_disk() {
    local dir=$RES/disk-probe
    mkdir -p "$dir"
    if ensure_tool fio fio; then
        local c1="fio --name=seqwrite --filename=$dir/seq --rw=write --bs=1M --size=$FIO_SEQ_SIZE --direct=1 --ioengine=psync --fdatasync=16 --fallocate=none --output-format=json"
        local c3="fio --name=seqread --filename=$dir/seq --rw=read --bs=1M --size=$FIO_SEQ_SIZE --direct=1 --ioengine=psync --output-format=json"
        local c2="fio --name=fdatasync --filename=$dir/sync --rw=write --bs=4k --size=64M --direct=1 --ioengine=psync --fdatasync=1 --runtime=$FIO_SYNC_SECS --output-format=json"
        LIMIT_CMDS+=("$c1" "$c3" "$c2")
        if timeout 300 $c1 > "$RES/fio-seq.json" 2>/dev/null; then
            local bw; bw=$(py fio-bw "$RES/fio-seq.json") || bw=0
            py setlimit "$LIMITS" disk_seq_bytes_per_s "$bw"
            py setlimit "$LIMITS" disk_how "fio psync bs=1M size=$FIO_SEQ_SIZE direct=1 fdatasync=16, fresh file"
            log "disk O_DIRECT seq write: $(awk -v b="$bw" 'BEGIN{printf "%.0f MB/s", b/1e6}')"
            if timeout 300 $c3 > "$RES/fio-read.json" 2>/dev/null; then
                bw=$(py fio-bw "$RES/fio-read.json" read) || bw=0
                py setlimit "$LIMITS" disk_read_bytes_per_s "$bw"
                py setlimit "$LIMITS" disk_read_how "fio psync bs=1M size=$FIO_SEQ_SIZE direct=1, the file just written"
                log "disk O_DIRECT seq read: $(awk -v b="$bw" 'BEGIN{printf "%.0f MB/s", b/1e6}')"
            else
                log "fio seqread failed"
            fi
        else
            log "fio seqwrite failed"
        fi
        rm -f "$dir/seq"
        if timeout $((FIO_SYNC_SECS + 60)) $c2 > "$RES/fio-sync.json" 2>/dev/null; then
            local p50 p99 p999 n
            read -r p50 p99 p999 n < <(py fio-sync "$RES/fio-sync.json") || true
            py setlimit "$LIMITS" fdatasync_p50_ms "$p50"
            py setlimit "$LIMITS" fdatasync_p99_ms "$p99"
            py setlimit "$LIMITS" fdatasync_p999_ms "$p999"
            py setlimit "$LIMITS" fdatasync_count "$n"
            py setlimit "$LIMITS" sync_how "fio psync bs=4k direct=1 fdatasync=1, ${FIO_SYNC_SECS}s"
            log "fdatasync p50 ${p50} ms p99 ${p99} ms"
        else
            log "fio fdatasync failed"
        fi
        rm -f "$dir/sync"
    else
        log "fio unavailable: using the python O_DIRECT writer"
        local mib=${FIO_SEQ_SIZE%[MG]}; [[ $FIO_SEQ_SIZE == *G ]] && mib=$((mib * 1024))
        LIMIT_CMDS+=("python3 helper.py pywriter $dir/seq $mib $FIO_SYNC_SECS")
        if read -r bw rbw p50 p99 p999 n < <(timeout 300 python3 "$HELPER" pywriter "$dir/seq" "$mib" "$FIO_SYNC_SECS"); then
            py setlimit "$LIMITS" disk_seq_bytes_per_s "$bw"
            py setlimit "$LIMITS" disk_read_bytes_per_s "$rbw"
            py setlimit "$LIMITS" disk_read_how "python os.preadv O_DIRECT 1 MiB, the file just written"
            py setlimit "$LIMITS" disk_how "python os.pwrite O_DIRECT 1 MiB, fdatasync every 16 MiB, ${mib} MiB"
            py setlimit "$LIMITS" fdatasync_p50_ms "$p50"
            py setlimit "$LIMITS" fdatasync_p99_ms "$p99"
            py setlimit "$LIMITS" fdatasync_p999_ms "$p999"
            py setlimit "$LIMITS" fdatasync_count "$n"
            py setlimit "$LIMITS" sync_how "python 4 KiB O_DIRECT pwrite + fdatasync, ${FIO_SYNC_SECS}s"
        fi
    fi
    rm -rf "$dir"
}

echo '{}' > "$LIMITS"
log "results: $RES"
measure_loopback
measure_disk

# ------------------------------------------------------------------------------------------------
# Broker lifecycle

BROKER_ADDR=""
BROKER_CMD=""
BROKER_KIND=sluice
start_broker() { # start_broker ROW FLUSH
    local row=$1 flush=$2 port
    port=$(py freeport)
    local data=$RES/$row/data
    mkdir -p "$data"
    BROKER_ADDR=127.0.0.1:$port
    BROKER_CMD="$SLUICE --listen $BROKER_ADDR --data-dir $data --flush $flush --flush-interval-ms $FLUSH_INTERVAL_MS --io-mode direct --log-level warn"
    $BROKER_CMD > "$RES/$row/broker.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 300); do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            log "broker exited at start-up; see $RES/$row/broker.log"
            wait "$BROKER_PID" 2>/dev/null || true
            BROKER_PID=""
            return 1
        fi
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
        sleep 0.1
    done
    log "broker did not listen within 30 s"
    stop_broker
    return 1
}

start_sink() { # start_sink ROW KIND [RATE]: the do-nothing broker, memory enough for a consume
    # backlog, or for everything an end-to-end row sends (split over its partitions, so that a
    # consumer a few seconds behind still finds its batches)
    local row=$1 kind=$2 rate=${3:-0} port mem=$((512 << 20))
    [[ $kind == consume ]] && mem=$((BACKLOG_MSGS * 3 * MSG_SIZE))
    if [[ $kind == e2e ]]; then
        local secs=$(( ${DURATION%s} + ${WARMUP%s} + 5 ))
        mem=$(( rate * secs * (MSG_SIZE + 128) ))
        (( mem < (512 << 20) )) && mem=$((512 << 20))
        (( mem > (8 << 30) )) && mem=$((8 << 30))
    fi
    port=$(py freeport)
    mkdir -p "$RES/$row"
    BROKER_ADDR=127.0.0.1:$port
    BROKER_CMD="$SINK_BIN --listen $BROKER_ADDR --memory-bytes $mem"
    $BROKER_CMD > "$RES/$row/broker.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "sluice-sink did not listen; see $RES/$row/broker.log"
    stop_broker
    return 1
}

# Apache Kafka's properties for a Sluice flush policy: never = Kafka's default (the page cache,
# no fsync); interval = an fsync every FLUSH_INTERVAL_MS; always = an fsync after every message
# (Kafka checks after each appended batch).
kafka_flush_props() {
    case $1 in
        never) echo "" ;;
        interval) echo "log.flush.interval.ms=$FLUSH_INTERVAL_MS log.flush.scheduler.interval.ms=$FLUSH_INTERVAL_MS" ;;
        always) echo "log.flush.interval.messages=1" ;;
    esac
}

start_kafka() { # start_kafka ROW FLUSH
    local row=$1 flush=$2 port cport
    port=$(py freeport)
    cport=$(py freeport)
    mkdir -p "$RES/$row"
    BROKER_ADDR=127.0.0.1:$port
    BROKER_KIND=kafka
    local props; props=$(kafka_flush_props "$flush")
    BROKER_CMD="KAFKA_REF_PROPS='$props' scripts/kafka-ref.sh start"
    if ! KAFKA_REF_ADDR=$BROKER_ADDR KAFKA_REF_CONTROLLER_ADDR=127.0.0.1:$cport KAFKA_REF_PROPS="$props" \
        KAFKA_REF_PARTITIONS=1 TMPDIR=$RES/$row timeout 180 "$KAFKA_REF" start > "$RES/$row/broker.log" 2>&1; then
        log "Apache Kafka did not start; see $RES/$row/broker.log"
        timeout 60 "$KAFKA_REF" stop >> "$RES/$row/broker.log" 2>&1 || true
        return 1
    fi
    BROKER_PID=$(cat "$ROOT/.test-deps/kafka/run/pid")
}

stop_broker() {
    [[ -n $BROKER_PID ]] || return 0
    if [[ $BROKER_KIND == kafka ]]; then
        timeout 60 "$KAFKA_REF" stop >&2 || true
        BROKER_PID=""
        BROKER_KIND=sluice
        return 0
    fi
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        log "broker $BROKER_PID ignored SIGTERM for 20 s; SIGKILL"
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

# Seconds from a sluice-load duration like 10s / 500ms.
secs() { case "$1" in *ms) echo 1 ;; *s) echo "${1%s}" ;; *) echo "$1" ;; esac; }
LOAD_TIMEOUT=$(( $(secs "$DURATION") + $(secs "$WARMUP") + 90 ))

declare -A PRODUCE_RATE   # "flush/partitions" -> msgs/s of the acks=all produce-only row
declare -A SINK_DONE      # "kind/acks/partitions/client property" -> 1 once its sink row ran

# run_row NAME KIND FLUSH ACKS PARTITIONS [RATE] [CLIENT_PROPERTY]: the row against Sluice, then
# (with KAFKA=1) the same row against Apache Kafka, named NAME-kafka.
# Produce, consume and end-to-end rows also run twice per workload (the flush policy aside)
# against sluice-sink, named NAME-sink and NAME-sink-2; the ratios divide by the better of the two.
run_row() {
    run_one sluice "$@"
    [[ $KAFKA == 1 ]] && run_one kafka "$@"
    local key="$2/$4/$5/${6:-}/${7:-}"
    if [[ $SINK == 1 && -z ${SINK_DONE[$key]:-} ]]; then
        SINK_DONE[$key]=1
        run_one sink "$@"
        SINK_RUN=2 run_one sink "$@"
    fi
    return 0
}

run_one() { # run_one sluice|kafka|sink NAME KIND FLUSH ACKS PARTITIONS [RATE] [CLIENT_PROPERTY]
    local broker=$1 name=$2 kind=$3 flush=$4 acks=$5 parts=$6 rate=${7:-} extra=${8:-}
    [[ $broker == kafka ]] && name=$name-kafka
    [[ $broker == sink ]] && name=$name-sink${SINK_RUN:+-$SINK_RUN}
    local sinkkey="$kind/$acks/$parts/$rate/$extra"
    mkdir -p "$RES/$name"
    local json=$RES/$name/result.json addr topic="bench-$name" pre_cmd="" broker_cmd=""
    if [[ -n $BOOTSTRAP ]]; then
        addr=$BOOTSTRAP
        topic="bench-$RUN_ID-$name"
    else
        local started=0
        if [[ $broker == kafka ]]; then
            start_kafka "$name" "$flush" && started=1
        elif [[ $broker == sink ]]; then
            start_sink "$name" "$kind" "${rate:-0}" && started=1
        else
            start_broker "$name" "$flush" && started=1
        fi
        if [[ $started == 0 ]]; then
            py addrow "$ROWS" name="$name" broker="$broker" kind="$kind" flush="$flush" acks="$acks" \
                partitions="$parts" rate="${rate:-0}" json="$json" rc=broker-start-failed sinkkey="$sinkkey"
            return 0
        fi
        addr=$BROKER_ADDR
        broker_cmd=$BROKER_CMD
    fi
    if [[ $broker == kafka ]]; then
        # The JVM compiles its hot paths during the first seconds of load: warm it up on another
        # topic first (not measured), so that the row measures Kafka at speed.
        local warm=("$LOADGEN" produce --bootstrap "$addr" --topic "warm-$name" --partitions "$parts"
                    --message-size "$MSG_SIZE" -q --acks 1 --duration "$KAFKA_WARM")
        broker_cmd="$broker_cmd"$'\n'"${warm[*]}"
        log "$name: warming Apache Kafka up for $KAFKA_WARM"
        timeout --kill-after=5 120 "${warm[@]}" > "$RES/$name/warm.out" 2>&1 || log "$name: warm-up failed"
    fi
    local common=(--bootstrap "$addr" --topic "$topic" --partitions "$parts" --message-size "$MSG_SIZE" -q)
    local cmd=()
    case $kind in
        produce)
            cmd=("$LOADGEN" produce "${common[@]}" --acks "$acks" --producers "$PRODUCERS"
                 --duration "$DURATION" --warmup "$WARMUP" --json "$json" ${extra:+-X "$extra"}) ;;
        consume)
            local pre=("$LOADGEN" produce "${common[@]}" --acks 1 --producers "$PRODUCERS"
                       --messages "$BACKLOG_MSGS" --json "$RES/$name/backlog.json")
            pre_cmd="${pre[*]}"
            log "$name: writing backlog of $BACKLOG_MSGS messages"
            timeout --kill-after=5 300 "${pre[@]}" > "$RES/$name/backlog.out" 2>&1 || log "$name: backlog produce failed"
            cmd=("$LOADGEN" consume "${common[@]}" --consumers "$CONSUMERS" --from-beginning
                 --idle-timeout 15s --json "$json") ;;
        latency)
            cmd=("$LOADGEN" produce "${common[@]}" --acks "$acks" --producers 1 --rate "$rate"
                 --duration "$DURATION" --warmup "$WARMUP" --json "$json" -X linger.ms=0) ;;
        e2e)
            cmd=("$LOADGEN" e2e "${common[@]}" --acks "$acks" --producers "$PRODUCERS" --consumers "$CONSUMERS"
                 --rate "$rate" --duration "$DURATION" --warmup "$WARMUP" --json "$json") ;;
    esac
    log "$name: ${cmd[*]}"
    [[ -n $BROKER_PID ]] && py cpusnap "$BROKER_PID" "$RES/$name/cpu0.json"
    local rc=0
    timeout --kill-after=5 "$LOAD_TIMEOUT" "${cmd[@]}" > "$RES/$name/load.out" 2> "$RES/$name/load.err" || rc=$?
    [[ -n $BROKER_PID ]] && py cpusnap "$BROKER_PID" "$RES/$name/cpu1.json"
    tail -n 2 "$RES/$name/load.out" | sed 's/^/    /' >&2 || true
    [[ $rc == 0 ]] || log "$name: sluice-load exit $rc (see $RES/$name/load.err)"
    if [[ -z $BOOTSTRAP ]]; then
        stop_broker
        [[ $KEEP_DATA == 1 ]] || rm -rf "$RES/$name/data"
    fi
    if [[ $broker == sluice && $kind == produce && $acks == all && -z $extra && -s $json ]]; then
        PRODUCE_RATE["$flush/$parts"]=$(py get "$json" results throughput_msgs_per_sec)
    fi
    py addrow "$ROWS" name="$name" broker="$broker" kind="$kind" flush="$flush" acks="$acks" partitions="$parts" \
        rate="${rate:-0}" json="$json" rc="$rc" cpu0="$RES/$name/cpu0.json" cpu1="$RES/$name/cpu1.json" \
        broker_cmd="$broker_cmd" pre_cmd="$pre_cmd" cmd="${cmd[*]}" sinkkey="$sinkkey"
}

e2e_rate() { # e2e_rate FLUSH PARTITIONS -> half the measured max rate
    local r=${PRODUCE_RATE["$1/$2"]:-${PRODUCE_RATE["$1/8"]:-${PRODUCE_RATE["never/8"]:-}}}
    [[ -n $r ]] || r=20000
    awk -v r="$r" 'BEGIN{ v = int(r / 2); if (v < 100) v = 100; print v }'
}

# ------------------------------------------------------------------------------------------------
# The matrix

if [[ -n $BOOTSTRAP ]]; then
    FLUSHES=(external); E2E_FLUSHES=(external)
else
    FLUSHES=(never interval always); E2E_FLUSHES=(never always)
fi
if [[ $QUICK == 1 ]]; then
    PARTS=(8)
    SWEEP_PARTS=(1 100)
    CONSUME_PARTS=(8)
    E2E_PARTS=(8)
else
    PARTS=(8)
    SWEEP_PARTS=(1 100)
    CONSUME_PARTS=(1 8 100)
    E2E_PARTS=(1 8 100)
fi

t0=$(date +%s)
# Produce only: every flush policy x acks at 8 partitions ...
for f in "${FLUSHES[@]}"; do
    for a in 1 all; do
        for p in "${PARTS[@]}"; do
            [[ $QUICK == 1 && $f == interval && $a == 1 ]] && continue
            [[ $QUICK == 1 && $f == always && $a == 1 ]] && continue
            run_row "produce-$f-acks$a-${p}p" produce "$f" "$a" "$p"
        done
    done
done
# ... and the cost of idempotence (same row as produce-never-acksall-8p, idempotent producer).
if [[ -z $BOOTSTRAP ]]; then
    run_row "produce-never-acksall-8p-idempotent" produce never all 8 "" "enable.idempotence=true"
else
    run_row "produce-external-acksall-8p-idempotent" produce external all 8 "" "enable.idempotence=true"
fi
# ... and the partition sweep (acks=all) for the policies the e2e rows use.
for f in "${E2E_FLUSHES[@]}"; do
    [[ $QUICK == 1 && $f == always ]] && continue
    for p in "${SWEEP_PARTS[@]}"; do
        run_row "produce-$f-acksall-${p}p" produce "$f" all "$p"
    done
done
# Acknowledgement latency at a light fixed rate (linger.ms=0: one message a request).
for f in "${E2E_FLUSHES[@]}"; do
    [[ $QUICK == 1 && $f == always ]] && continue
    run_row "latency-$f-acksall-4p-5k" latency "$f" all 4 5000
done
# Consume from a backlog.
for p in "${CONSUME_PARTS[@]}"; do
    run_row "consume-${FLUSHES[0]}-${p}p" consume "${FLUSHES[0]}" 1 "$p"
done
# End to end at half the max rate.
for f in "${E2E_FLUSHES[@]}"; do
    for p in "${E2E_PARTS[@]}"; do
        run_row "e2e-$f-acksall-${p}p" e2e "$f" all "$p" "$(e2e_rate "$f" "$p")"
    done
done
log "matrix done in $(( $(date +%s) - t0 )) s"

# ------------------------------------------------------------------------------------------------
# Criterion storage benchmarks (same session)

STORAGE_SINCE=$(date +%s)
STORAGE_CMD="cargo bench --bench storage -- --noplot"
[[ $QUICK == 1 ]] && STORAGE_CMD="$STORAGE_CMD --quick"
if [[ $STORAGE_BENCH == 1 ]]; then
    log "running $STORAGE_CMD"
    (cd "$ROOT" && SLUICE_BENCH_DIR=$RES/storage-bench timeout 1200 $STORAGE_CMD) > "$RES/storage-bench.out" 2>&1 ||
        log "storage bench failed; see $RES/storage-bench.out"
    rm -rf "$RES/storage-bench"
fi

# ------------------------------------------------------------------------------------------------
# Report

fs_desc=$(df -hT "$RES" | awk 'NR==2{print $2 " on " $1 ", " $4 " free"}')
cpu_model=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)
mem=$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)
commit=$(cd "$ROOT" && git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then commit="$commit (+ uncommitted changes)"; fi
export META_KAFKA_WARM META_KAFKA_VERSION META_ROOT META_DATE META_COMMIT META_MACHINE META_FS META_WORK META_BOOT META_BROKER META_LOAD META_TARGET META_QUICK META_SB META_SB_SINCE META_SB_CMD META_LIMIT_CMDS META_BENCHES
META_ROOT=$ROOT
META_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
META_COMMIT=$commit
META_MACHINE="$(nproc) vCPU ($cpu_model), $mem RAM, $(uname -sr)"
META_FS=$fs_desc
META_WORK=$WORK
META_BOOT=$BOOTSTRAP
META_BROKER="sluice --listen 127.0.0.1:PORT --data-dir DIR --flush FLUSH --flush-interval-ms $FLUSH_INTERVAL_MS --io-mode direct"
META_LOAD="1 KiB messages (random ratio 0.5), $PRODUCERS producer(s), $CONSUMERS consumer(s), ${WARMUP} warmup + ${DURATION} measured per row, consume backlog $BACKLOG_MSGS msgs; flush interval ${FLUSH_INTERVAL_MS} ms"
META_TARGET=$TARGET_DIR
META_BENCHES=$ROOT/benches
META_KAFKA_VERSION=""
META_KAFKA_WARM=$KAFKA_WARM
if [[ $KAFKA == 1 ]]; then
    for jar in "$ROOT"/.test-deps/kafka/lib/kafka_2.13-*.jar; do
        [[ -f $jar ]] && META_KAFKA_VERSION=${jar##*/kafka_2.13-} && META_KAFKA_VERSION=${META_KAFKA_VERSION%.jar}
    done
fi
META_QUICK=$QUICK
META_SB=$STORAGE_BENCH
META_SB_SINCE=$STORAGE_SINCE
META_SB_CMD="SLUICE_BENCH_DIR=<work>/storage-bench $STORAGE_CMD"
META_LIMIT_CMDS=$(printf '%s\n' "${LIMIT_CMDS[@]}")
timeout 30 python3 - "$RES/meta.json" <<'EOF'
import json, os, sys
e = os.environ
json.dump({"date": e["META_DATE"], "commit": e["META_COMMIT"], "machine": e["META_MACHINE"],
           "fs": e["META_FS"], "work": e["META_WORK"], "bootstrap": e["META_BOOT"],
           "broker_cmd": e["META_BROKER"], "load_desc": e["META_LOAD"], "target_dir": e["META_TARGET"],
           "quick": e["META_QUICK"] == "1", "storage_bench": e["META_SB"] == "1",
           "storage_bench_since": float(e["META_SB_SINCE"]), "storage_bench_cmd": e["META_SB_CMD"],
           "benches_dir": e["META_BENCHES"], "kafka_version": e["META_KAFKA_VERSION"],
           "kafka_warm": e["META_KAFKA_WARM"],
           "limit_cmds": [l for l in e["META_LIMIT_CMDS"].split("\n") if l]},
          open(sys.argv[1], "w"), indent=1)
EOF
py report "$RES" "$OUT" "$RES/meta.json"
log "wrote $OUT (raw results in $RES)"
