#!/usr/bin/env bash
# What transactions cost on this machine: idempotent against transactional produce, and
# read_committed against read_uncommitted consume, in the same run, against one release Sluice
# broker and (unless --no-kafka) one Apache Kafka broker (scripts/kafka-ref.sh).
#
#   benches/transactions.sh [--no-kafka] [SECONDS]     (default 10 s per produce row)
#
# Produce rows (sluice-load, 1 KiB messages, 8 partitions, acks=all, linger.ms=0 for every row so
# that the rows differ only in transactions; 2 s warm-up):
#   1. idempotent, 1 producer        2. transactions of 100 records, 1 producer
#   3. idempotent, 4 producers       4. transactions of 100 records, 4 producers
#   5. transactions of 1,000 records, 1 producer
# Consume rows: a backlog of BACKLOG records written in transactions of 1,000 records (4
# producers), then read from the beginning by one consumer: read_uncommitted, read_committed,
# read_uncommitted, read_committed (the ratio divides the better of each pair, so that the cold
# first read does not decide it).
# Targets (issue 17): transactional ≥ 0.7 × idempotent; read_committed ≥ 0.9 × read_uncommitted.
# Each row also gives the broker's CPU seconds and the device writes (/proc/diskstats, the disk
# under the data dir) per transaction. Writes the transactions section of BENCHMARKS.md (between
# its txn markers; benches/run-matrix.sh keeps it). Stops only the brokers it started, by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KAFKA=1
if [[ ${1:-} == --no-kafka ]]; then
    KAFKA=0
    shift
fi
SECS=${1:-10}
BACKLOG=${BACKLOG:-1000000}
WORK=${TXN_BENCH_DIR:-$TARGET_DIR/bench-txn}
PORT=${PORT:-19740}
SLUICE=$TARGET_DIR/release/sluice
LOAD=$TARGET_DIR/release/sluice-load
KAFKA_REF=$ROOT/scripts/kafka-ref.sh
SLUICE_ADDR=127.0.0.1:$PORT
KAFKA_ADDR=127.0.0.1:$((PORT + 1))

cargo build --release -p sluice -p sluice-tools >/dev/null
rm -rf "$WORK"
mkdir -p "$WORK"
: >"$WORK/rows.tsv"
# shellcheck source=benches/brokers.sh
source "$ROOT/benches/brokers.sh"

# The block device under the work dir, for its write count in /proc/diskstats.
DEV=$(basename "$(df --output=source "$WORK" | tail -1)")
disk_writes() { awk -v d="$DEV" '$3 == d {print $8}' /proc/diskstats; }

kafka_warmed() { # Apache Kafka, its JVM warmed up by 15 s of load (not measured)
    start_kafka 1 || return 1
    timeout 120 "$LOAD" produce --bootstrap "$KAFKA_ADDR" --topic warm --partitions 8 -q --acks all \
        --duration 15s --transaction-size 100 --producers 2 >"$WORK/kafka-warm.out" 2>&1 || true
}

broker_ticks() { # the broker's user + system CPU time, in clock ticks
    local pid=$PID
    [[ $KAFKA_UP == 1 ]] && pid=$(cat "$ROOT/.test-deps/kafka/run/pid")
    awk '{print $14 + $15}' "/proc/$pid/stat"
}

run() { # broker label mode topic [sluice-load args...]
    local broker=$1 label=$2 mode=$3 topic=$4
    shift 4
    local boot=$SLUICE_ADDR
    [[ $broker == kafka ]] && boot=$KAFKA_ADDR
    local json=$WORK/$broker-$topic-$mode-$(wc -l <"$WORK/rows.tsv").json
    local bound=(--duration "${SECS}s" --warmup 2s --acks all -X linger.ms=0)
    [[ $mode == consume ]] && bound=(--from-beginning --idle-timeout 15s --consumers 1)
    local ticks0 writes0
    ticks0=$(broker_ticks)
    writes0=$(disk_writes)
    if ! timeout $((SECS + 300)) "$LOAD" "$mode" --bootstrap "$boot" --topic "$topic" \
        --partitions 8 --message-size 1024 -q "${bound[@]}" "$@" \
        --json "$json" >"$WORK/$broker-$topic-$mode.out" 2>&1; then
        echo "$broker $label: sluice-load failed; see $WORK/$broker-$topic-$mode.out" >&2
        return 1
    fi
    python3 - "$broker" "$label" "$json" "$WORK/rows.tsv" "$mode" "$(($(broker_ticks) - ticks0))" \
        "$(getconf CLK_TCK)" "$(($(disk_writes) - writes0))" <<'EOF'
import json, sys
broker, label, path, rows, mode, ticks, hz, writes = sys.argv[1:9]
r = json.load(open(path))["results"]
side = r["produced" if mode == "produce" else "consumed"]
# CPU and device writes over the whole row (warm-up included) per GB of all the payload it moved.
gb = side["bytes"] / 1e9
line = (f"{broker}\t{label}\t{side['throughput_msgs_per_sec']:.0f}\t{side['throughput_mb_per_sec']:.1f}"
        f"\t{side['messages']}\t{int(ticks) / int(hz):.2f}\t{int(ticks) / int(hz) / gb:.2f}\t{int(writes)}"
        f"\t{r.get('errors', 0)}")
print(line.replace("\t", "  "))
open(rows, "a").write(line + "\n")
EOF
}

rows_for() { # broker
    local b=$1
    run "$b" "idempotent, 1 producer" produce idem1 -X enable.idempotence=true
    run "$b" "transactions of 100, 1 producer" produce txn1 --transaction-size 100
    run "$b" "idempotent, 4 producers" produce idem4 --producers 4 -X enable.idempotence=true
    run "$b" "transactions of 100, 4 producers" produce txn4 --producers 4 --transaction-size 100
    run "$b" "transactions of 1000, 1 producer" produce txn1k --transaction-size 1000
    timeout 600 "$LOAD" produce --bootstrap "$([[ $b == kafka ]] && echo "$KAFKA_ADDR" || echo "$SLUICE_ADDR")" \
        --topic backlog --partitions 8 --message-size 1024 -q --acks all --producers 4 \
        --transaction-size 1000 --messages "$BACKLOG" >"$WORK/$b-backlog.out" 2>&1
    for i in 1 2; do
        run "$b" "consume, read_uncommitted ($i)" consume backlog -X isolation.level=read_uncommitted
        run "$b" "consume, read_committed ($i)" consume backlog -X isolation.level=read_committed
    done
}

start_sluice
rows_for sluice
stop_all
if [[ $KAFKA == 1 ]]; then
    if kafka_warmed; then
        rows_for kafka
    else
        echo "Apache Kafka did not start; see $WORK/kafka.log (rows skipped)" >&2
    fi
    stop_all
fi

PYTHONPATH="$ROOT/benches" python3 - "$WORK/rows.tsv" "$ROOT/BENCHMARKS.md" "$SECS" "$BACKLOG" "$(git -C "$ROOT" rev-parse --short=12 HEAD)" <<'EOF'
import datetime, re, sys
from section import write_section
rows_path, out, secs, backlog, commit = sys.argv[1:6]
rows = [l.rstrip("\n").split("\t") for l in open(rows_path)]
rate = {(r[0], r[1]): float(r[2]) for r in rows}
brokers = [b for b in ("sluice", "kafka") if any(r[0] == b for r in rows)]
name = {"sluice": "Sluice", "kafka": "Apache Kafka"}

def txns(r):
    """Transactions in the row (all its payload, warm-up included), from the label."""
    m = re.search(r"transactions of (\d+)", r[1])
    return int(r[4]) / int(m.group(1)) if m and r[1].startswith("transactions") else None

L = ["<!-- txn:begin -->", "## Transactions", "",
     f"`benches/transactions.sh {secs}`, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit `{commit}`: one release",
     "Sluice broker (`--flush never --io-mode direct`, 2 shards)" + (" and one Apache Kafka broker "
     "(`scripts/kafka-ref.sh`, default flush, warmed up for 15 s)" if "kafka" in brokers else "") + ", `sluice-load`",
     f"with 1 KiB messages, 8 partitions, acks=all and `linger.ms=0` in every produce row ({secs} s after a 2 s",
     "warm-up), so that the rows differ only in transactions. The consume rows read a backlog of",
     f"{int(backlog):,} records written in transactions of 1,000 (4 producers). **per txn** columns divide the",
     "row's broker CPU time and the device's completed writes (`/proc/diskstats`; Kafka writes to the page",
     "cache, so its count is what the kernel wrote back meanwhile) by the transactions the row committed.", "",
     "| broker | row | msg/s | MB/s | messages | broker CPU s/GB | device writes | per txn: CPU ms / writes | errors |",
     "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    n = txns(r)
    per = f"{float(r[5]) / n * 1e3:.2f} / {int(r[7]) / n:.1f}" if n else "–"
    L.append(f"| {name[r[0]]} | {r[1]} | {float(r[2]):,.0f} | {r[3]} | {int(r[4]):,} | {r[6]} | {int(r[7]):,} | {per} | {r[8]} |")
L.append("")
for b in brokers:
    def g(label):
        return rate.get((b, label))
    parts = []
    for n in ("1", "4"):
        i, t = g(f"idempotent, {n} producer" + ("s" if n == "4" else "")), g(f"transactions of 100, {n} producer" + ("s" if n == "4" else ""))
        if i and t:
            parts.append(f"{n} producer{'s' if n == '4' else ''} **{t / i:.3f}**")
    i1, t1k = g("idempotent, 1 producer"), g("transactions of 1000, 1 producer")
    if i1 and t1k:
        parts.append(f"transactions of 1,000 with 1 producer {t1k / i1:.2f}")
    ru = max([v for (bb, l), v in rate.items() if bb == b and "read_uncommitted" in l] or [0])
    rc = max([v for (bb, l), v in rate.items() if bb == b and "read_committed" in l] or [0])
    L.append(f"- {name[b]}: transactions of 100 / idempotent: " + ", ".join(parts) + " (target ≥ 0.7);"
             + (f" read_committed / read_uncommitted (best of two each): **{rc / ru:.2f}** (target ≥ 0.9)" if ru and rc else ""))
L += ["<!-- txn:end -->", ""]
block = "\n".join(L)
write_section(out, "txn", block)
print(f"wrote the transactions section of {out}")
EOF
