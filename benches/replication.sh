#!/usr/bin/env bash
# Replication's cost on this machine: three release nodes on loopback (scripts/cluster.sh, one
# shard each, default flags), sluice-load against them.
#
#   benches/replication.sh [SECONDS]      (default 8 s per run; each topic is deleted after
#                                          its row, the cluster's data dir at the end)
#
# Rows, each on a fresh topic of 6 partitions spread over the three brokers:
#   1. RF=1, acks=1, maximum rate                  (the limit: no replication)
#   2. RF=3, acks=all, min.insync.replicas=2, maximum rate
#   3. RF=1, acks=1, e2e at half of row 2's rate   (p99 end-to-end latency)
#   4. RF=3, acks=all, e2e at half of row 2's rate
# Prints one line per row and the ratios the issue asks for: row 2 / row 1 throughput (target
# ≥ 0.5) and row 4 / row 3 p99 (target ≤ 2), and writes them as the replication section of
# BENCHMARKS.md (between its replication markers; benches/run-matrix.sh keeps that section).
# Three brokers and the load generator share the machine's cores. Stops only the nodes it
# started (scripts/cluster.sh stop, by PID).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SECS=${1:-8}
export CLUSTER_DIR=${CLUSTER_DIR:-$TARGET_DIR/bench-replication}
export BASE_PORT=${BASE_PORT:-19600}
export SLUICE_BIN=$TARGET_DIR/release/sluice
LOAD=$TARGET_DIR/release/sluice-load
BOOT=127.0.0.1:$BASE_PORT,127.0.0.1:$((BASE_PORT + 2)),127.0.0.1:$((BASE_PORT + 4))

cargo build --release -p sluice -p sluice-tools >/dev/null
"$ROOT/scripts/cluster.sh" stop >/dev/null 2>&1 || true
rm -rf "$CLUSTER_DIR"
trap '"$ROOT/scripts/cluster.sh" stop >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
"$ROOT/scripts/cluster.sh" start >/dev/null

topic() { # name rf
    local extra=()
    [[ $2 == 3 ]] && extra=(--config min.insync.replicas=2)
    timeout 30 "$SLUICE_BIN" topic create "$1" --bootstrap "127.0.0.1:$BASE_PORT" \
        --partitions 6 --replication-factor "$2" "${extra[@]}" >/dev/null
}

run() { # label mode topic acks [rate]
    local rate=()
    [[ -n ${5:-} ]] && rate=(--rate "$5")
    local json
    json=$(mktemp)
    if ! timeout $((SECS + 120)) "$LOAD" "$2" --bootstrap "$BOOT" --topic "$3" --acks "$4" \
        --message-size 1024 --producers 2 --consumers 2 --duration "${SECS}s" --warmup 3s \
        "${rate[@]}" --json "$json" >"$CLUSTER_DIR/$3.out" 2>&1; then
        echo "$1: sluice-load failed; see $CLUSTER_DIR/$3.out" >&2
        return 1
    fi
    python3 - "$1" "$json" "$CLUSTER_DIR/rows.tsv" <<'EOF'
import json, sys
label, path, rows = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(path))["results"]
lat = r["latency_ms"]
line = f"{label}\t{r['throughput_msgs_per_sec']:.0f} msg/s\tp50 {lat['p50']:.1f} ms p99 {lat['p99']:.1f} ms ({r['latency_kind']}), errors {r.get('errors')}"
print(line)
with open(rows, "a") as f:
    f.write(f"{label}\t{r['throughput_msgs_per_sec']:.0f}\t{lat['p50']:.1f}\t{lat['p99']:.1f}\t{r['latency_kind']}\t{r.get('errors')}\n")
EOF
    rm -f "$json"
    timeout 30 "$SLUICE_BIN" topic delete "$3" --bootstrap "127.0.0.1:$BASE_PORT" >/dev/null
}

topic rf1-max 1
topic rf3-max 3
topic rf1-e2e 1
topic rf3-e2e 3
run "RF=1 acks=1 max" produce rf1-max 1 | tee /dev/stderr | awk -F'\t' '{print $2}' | awk '{print $1}' >"$CLUSTER_DIR/rf1.rate"
run "RF=3 acks=all max" produce rf3-max all | tee /dev/stderr | awk -F'\t' '{print $2}' | awk '{print $1}' >"$CLUSTER_DIR/rf3.rate"
rf1=$(cat "$CLUSTER_DIR/rf1.rate")
rf3=$(cat "$CLUSTER_DIR/rf3.rate")
echo "RF=3 acks=all / RF=1 acks=1 throughput: $(python3 -c "print(round($rf3 / $rf1, 2))") (target >= 0.5)"
half=$((rf3 / 2))
run "RF=1 acks=1 e2e @ $half/s" e2e rf1-e2e 1 "$half"
run "RF=3 acks=all e2e @ $half/s" e2e rf3-e2e all "$half"

PYTHONPATH="$ROOT/benches" python3 - "$CLUSTER_DIR/rows.tsv" "$ROOT/BENCHMARKS.md" "$SECS" "$(git -C "$ROOT" rev-parse --short=12 HEAD)" <<'EOF'
import datetime, sys
from section import write_section
rows_path, out, secs, commit = sys.argv[1:5]
rows = [l.rstrip("\n").split("\t") for l in open(rows_path)]
rate = {r[0]: float(r[1]) for r in rows}
p99 = {r[0]: float(r[3]) for r in rows}
names = [r[0] for r in rows]
ratio_tp = rate[names[1]] / rate[names[0]]
ratio_p99 = p99[names[3]] / p99[names[2]]
L = ["<!-- replication:begin -->", "## Replication (three nodes)", "",
     f"`benches/replication.sh {secs}`, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit `{commit}`: three release",
     "nodes from `scripts/cluster.sh` (one shard each, default flags, `--flush never`) and `sluice-load`",
     "(2 producers, 2 consumers, 1 KiB messages) on this one 2-core machine; each topic has 6 partitions.", "",
     "| row | msg/s | p50 ms | p99 ms | latency |", "|---|---|---|---|---|"]
for r in rows:
    L.append(f"| {r[0]} | {float(r[1]):,.0f} | {r[2]} | {r[3]} | {r[4]} |")
L += ["", f"- RF=3 acks=all throughput / RF=1 acks=1: **{ratio_tp:.2f}** (target ≥ 0.5)",
      f"- e2e p99 at half of RF=3's maximum, RF=3 acks=all / RF=1 acks=1: **{ratio_p99:.2f}** (target ≤ 2)",
      f"- record copies the three brokers wrote per second: RF=1 {rate[names[0]]:,.0f}, RF=3 {3 * rate[names[1]]:,.0f}"
      " (three per message): the brokers' write rate is the limit in both rows on this machine, so RF=3 acks=all"
      " reaching 0.5 of RF=1 would need a follower's copy to cost less than a leader's append.",
      "<!-- replication:end -->", ""]
block = "\n".join(L)
write_section(out, "replication", block)
print(f"wrote the replication section of {out}")
EOF
