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
# ≥ 0.5) and row 4 / row 3 p99 (target ≤ 2). Three brokers and the load generator share the
# machine's cores. Stops only the nodes it started (scripts/cluster.sh stop, by PID).
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
    python3 - "$1" "$json" <<'EOF'
import json, sys
label, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))["results"]
lat = r["latency_ms"]
print(f"{label}\t{r['throughput_msgs_per_sec']:.0f} msg/s\tp50 {lat['p50']:.1f} ms p99 {lat['p99']:.1f} ms ({r['latency_kind']}), errors {r.get('errors')}")
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
