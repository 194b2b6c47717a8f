#!/usr/bin/env bash
# Start-up time and idle memory with a data dir full of data: one release broker (default
# flags: --flush never, 2 shards), sluice-load, data under target/bench-startup (deleted at the
# end).
#
#   benches/startup.sh [GIB] [PARTITIONS...]     (default: 10 GiB, 1000 and 1 partitions)
#
# For each partition count: a fresh broker is filled with GIB GiB of 1 KiB messages (acks=1)
# on one topic; then
#   - idle RSS 15 s after the load (shard 0 returns free heap memory after 10 s idle);
#   - SIGTERM, and the time to start again until /ready answers 200 (every shard has opened
#     its partitions): "after a clean stop", and the idle RSS of that fresh process;
#   - a producer writes for 4 s more and the broker is killed (SIGKILL) while it writes: the
#     time to /ready again is "after kill -9" (recovery scans each active segment past what
#     its boot checkpoint covers), with the bytes the scans read (the broker's
#     sluice_log_recovery_scanned_bytes) and those written since the clean start;
#   - the same again, but before the restart the boot checkpoints are removed and the page
#     cache dropped: what a restart after a reboot finds (the recovery point and the durable
#     index files alone; recovery then scans everything written since the clean start).
# Targets (issue 21): 1,000 partitions idle RSS <= 256 MB; start-up < 1 s after a clean stop
# and < 2 s after kill -9, with 10 GiB. Writes the startup section of BENCHMARKS.md (between
# its startup markers). Stops only the brokers it started (by PID).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
GIB=${1:-10}
shift || true
PARTS=("$@")
[[ ${#PARTS[@]} -gt 0 ]] || PARTS=(1000 1)
DIR=$TARGET_DIR/bench-startup
PORT=${PORT:-19800}
MPORT=$((PORT + 1))
BIN=$TARGET_DIR/release/sluice
LOAD=$TARGET_DIR/release/sluice-load
BOOT=127.0.0.1:$PORT

cargo build --release -p sluice -p sluice-tools >/dev/null
if curl -s -o /dev/null "127.0.0.1:$MPORT/live"; then
    echo "something already answers on 127.0.0.1:$MPORT; set PORT" >&2
    exit 1
fi
rm -rf "$DIR"
mkdir -p "$DIR"
PID=
LOADPID=
stop() {
    for p in $LOADPID $PID; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PID=
    LOADPID=
}
trap 'stop; rm -rf "$DIR"' EXIT

now() { date +%s.%N; }
# Starts the broker on $1 and sets READY to the seconds from exec to /ready (at most 60 s).
# Not in a subshell: PID must stay set for stop().
READY=
start_timed() {
    local t0 t1
    t0=$(now)
    "$BIN" --data-dir "$1" --listen "$BOOT" --metrics-listen "127.0.0.1:$MPORT" >>"$DIR/broker.log" 2>&1 &
    PID=$!
    for _ in $(seq 6000); do
        if curl -sf "127.0.0.1:$MPORT/ready" >/dev/null 2>&1; then
            t1=$(now)
            READY=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
            return 0
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.005
    done
    echo "broker did not become ready; see $DIR/broker.log" >&2
    return 1
}
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$PID/status"; }
# Each partition's active (last) segment file and its size, one "path size" a line.
active_segments() {
    local d last
    for d in "$1"/bench-*; do
        last=$(ls "$d"/*.log 2>/dev/null | sort | tail -n 1)
        [[ -n $last ]] && echo "$last $(stat -c %s "$last")"
    done
}
# What recovery scans after the kill: each active segment past its size at the clean start
# (`$1`: active_segments then), a segment created since then whole.
scanned_bytes() {
    python3 - "$1" <(active_segments "$2") <<'PYEOF'
import sys
before = dict(l.split() for l in open(sys.argv[1]) if l.strip())
total = 0
for line in open(sys.argv[2]):
    if line.strip():
        path, size = line.split()
        total += int(size) - int(before.get(path, 0))
print(total)
PYEOF
}

# Sum of a metric over the shards of the running broker.
metric_sum() {
    curl -s "127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%.0f", s}'
}
# Produces for 4 s, kills the broker while it writes, and restarts it; with "reboot" the boot
# checkpoints go and the page cache is dropped first. Sets CRASH, SCANNED and WRITTEN.
crash_round() {
    local data=$1 p=$2
    active_segments "$data" >"$DIR/active-$p.txt"
    "$LOAD" produce --bootstrap "$BOOT" --topic bench --partitions "$p" --message-size 1024 -q \
        --acks 1 --duration 8s --warmup 0s >"$DIR/crash-$p.out" 2>&1 &
    LOADPID=$!
    sleep 4
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
    kill "$LOADPID" 2>/dev/null || true
    wait "$LOADPID" 2>/dev/null || true
    LOADPID=
    WRITTEN=$(scanned_bytes "$DIR/active-$p.txt" "$data")
    if [[ $3 == reboot ]]; then
        find "$data" -name boot.checkpoint -delete
        sync
        echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "(page cache not dropped)" >&2
    fi
    start_timed "$data"
    CRASH=$READY
    SCANNED=$(metric_sum sluice_log_recovery_scanned_bytes)
}

ROWS=$DIR/rows.txt
: >"$ROWS"
MSGS=$((GIB * 1024 * 1024))
for p in "${PARTS[@]}"; do
    data=$DIR/data-$p
    echo "== $p partitions: writing $GIB GiB" >&2
    start_timed "$data"
    "$LOAD" produce --bootstrap "$BOOT" --topic bench --partitions "$p" --message-size 1024 -q \
        --acks 1 --messages "$MSGS" >"$DIR/fill-$p.out" 2>&1
    disk=$(du -sb "$data" | cut -f1)
    sleep 15
    rss_loaded=$(rss_mb)
    kill -TERM "$PID"
    wait "$PID" || true
    start_timed "$data"
    clean=$READY
    sleep 15
    rss_fresh=$(rss_mb)
    echo "== $p partitions: producing, then kill -9" >&2
    crash_round "$data" "$p" same
    same="$CRASH $SCANNED $WRITTEN"
    echo "== $p partitions: producing, then kill -9 and a reboot's view" >&2
    crash_round "$data" "$p" reboot
    reboot="$CRASH $SCANNED $WRITTEN"
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
    echo "$p $disk $rss_loaded $clean $rss_fresh $same $reboot" | tee -a "$ROWS" >&2
    rm -rf "$data"
done

PYTHONPATH="$ROOT/benches" python3 - "$ROWS" "$ROOT/BENCHMARKS.md" "$GIB" "$(git -C "$ROOT" rev-parse --short=12 HEAD)" <<'PY'
import sys, datetime
from section import write_section
rows, out, gib, commit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
L = ["<!-- startup:begin -->", "## Start-up and idle memory (`benches/startup.sh`)", "",
     f"- date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; git commit: `{commit}`; release build, "
     "default flags (`--flush never`, 2 shards)",
     f"- {gib} GiB of 1 KiB messages written with acks=1 to one topic; **ready** = from exec to "
     "`/ready` answering 200 (every shard has opened its partitions); **after kill -9** = "
     "SIGKILL while a producer writes for 4 s, then the same; **scanned** = the bytes the "
     "recovery scans read and checked (`sluice_log_recovery_scanned_bytes`) of those written "
     "to the active segments since the last clean start or recovery (preallocated zeros at "
     "their ends included). With `--flush never` the recovery point moves at segment rolls "
     "and clean stops only (as Kafka's does at flushes); a restart in the same boot trusts "
     "each partition's boot checkpoint (`--boot-checkpoint-interval-ms`, 1 s), written "
     "without fsync; **after a reboot** = the same with the boot checkpoints removed and the "
     "page cache dropped before the restart, as a restart after a machine crash finds them.",
     "- targets (issue 21): 1,000 partitions idle RSS ≤ 256 MB; ready < 1 s after a clean stop and "
     "< 2 s after kill -9", "",
     "| partitions | data on disk | idle RSS after the load | ready after a clean stop | idle RSS, fresh process | ready after kill -9 | scanned / written | ready after kill -9 and a reboot | scanned / written |",
     "|---|---|---|---|---|---|---|---|---|"]
mb = lambda b: f"{int(b) / 1e6:,.0f}"
for line in open(rows):
    p, disk, rss1, clean, rss2, crash, scanned, written, crash2, scanned2, written2 = line.split()
    L.append(f"| {int(p):,} | {int(disk) / 1e9:.1f} GB | {rss1} MB | {float(clean):.3f} s | "
             f"{rss2} MB | {float(crash):.3f} s | {mb(scanned)} / {mb(written)} MB | "
             f"{float(crash2):.3f} s | {mb(scanned2)} / {mb(written2)} MB |")
L += ["<!-- startup:end -->", ""]
write_section(out, "startup", "\n".join(L))
PY
echo "wrote the startup section of $ROOT/BENCHMARKS.md" >&2
