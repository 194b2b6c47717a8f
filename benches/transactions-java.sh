#!/usr/bin/env bash
# Transactions with the Java client (Apache Kafka's kafka-clients 4.3.1, which uses KIP-890's
# transaction version 2 where the broker finalizes it, as Sluice and Kafka 4.3 do): Kafka's own
# ProducerPerformance (kafka-producer-perf-test) with idempotence against transactions of a
# fixed duration, against one release Sluice broker and (unless --no-kafka) one Apache Kafka broker
# (scripts/kafka-ref.sh), in the same run.
#
#   benches/transactions-java.sh [--no-kafka] [RECORDS]     (default 1,000,000 per row)
#
# Rows (1 KiB records, 8 partitions, acks=all, linger.ms=0, one producer): idempotent;
# transactions of 2, 10 and 100 ms (`--transaction-duration-ms`: the tool commits when that much
# time passed since the transaction began, so the records per transaction follow from the rate;
# the table shows them). Target (issue 17): transactions of about 100 records ≥ 0.7 ×
# idempotent. Writes the txn-java section of BENCHMARKS.md. Stops only the brokers it started,
# by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KAFKA=1
if [[ ${1:-} == --no-kafka ]]; then
    KAFKA=0
    shift
fi
RECORDS=${1:-1000000}
WORK=${TXN_BENCH_DIR:-$TARGET_DIR/bench-txn-java}
PORT=${PORT:-19750}
SLUICE=$TARGET_DIR/release/sluice
KAFKA_REF=$ROOT/scripts/kafka-ref.sh
LIB=$ROOT/.test-deps/kafka/lib
SLUICE_ADDR=127.0.0.1:$PORT
KAFKA_ADDR=127.0.0.1:$((PORT + 1))

cargo build --release -p sluice -p sluice-tools >/dev/null
"$KAFKA_REF" install >/dev/null
rm -rf "$WORK"
mkdir -p "$WORK"
: >"$WORK/rows.tsv"
# shellcheck source=benches/brokers.sh
source "$ROOT/benches/brokers.sh"

perf() { # broker label topic "extra producer properties" [tool args...]: one row
    local broker=$1 label=$2 topic=$3
    local -a props
    read -r -a props <<<"$4"
    shift 4
    local boot=$SLUICE_ADDR
    [[ $broker == kafka ]] && boot=$KAFKA_ADDR
    local out=$WORK/$broker-$topic.out
    # The first 20 % of the records warm the JVMs up (the tool leaves them out of its figures).
    if ! timeout 600 java -Xmx1g -cp "$LIB/*" org.apache.kafka.tools.ProducerPerformance \
        --bootstrap-server "$boot" --topic "$topic" --num-records "$RECORDS" \
        --warmup-records $((RECORDS / 5)) --record-size 1024 --throughput -1 \
        --command-property acks=all linger.ms=0 "${props[@]}" "$@" >"$out" 2>&1; then
        echo "$broker $label: ProducerPerformance failed; see $out" >&2
        return 1
    fi
    python3 - "$broker" "$label" "$out" "$WORK/rows.tsv" <<'EOF'
import re, sys
broker, label, out, rows = sys.argv[1:5]
text = open(out).read()
# "N steady state records sent, R records/sec (M MB/sec), A ms avg latency, ..." once the
# warm-up records are done (printed after the whole run's summary); the whole run's otherwise.
summary = r"(\d+) {}records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency"
steady = re.findall(summary.format("steady state "), text)
sent, rate, mb, avg = (steady or re.findall(summary.format(""), text))[-1]
line = f"{broker}\t{label}\t{float(rate):.0f}\t{mb}\t{sent}\t{avg}"
print(line.replace("\t", "  "))
open(rows, "a").write(line + "\n")
EOF
}

rows_for() { # broker
    local b=$1
    perf "$b" "idempotent" idem "enable.idempotence=true"
    for ms in 2 10 100; do
        perf "$b" "transactions of $ms ms" "txn$ms" "" --transactional-id "bench-$b-$ms" \
            --transaction-duration-ms "$ms"
    done
}

start_sluice --num-partitions 8
rows_for sluice
stop_all
if [[ $KAFKA == 1 ]]; then
    if start_kafka 8; then
        # Kafka's JVM compiles its hot paths under the first load: one unmeasured row.
        perf kafka "warm-up" warm "" --transactional-id bench-warm --transaction-duration-ms 10 ||
            true
        sed -i '/\twarm-up\t/d' "$WORK/rows.tsv"
        rows_for kafka
    else
        echo "Apache Kafka did not start; see $WORK/kafka.log (rows skipped)" >&2
    fi
    stop_all
fi

PYTHONPATH="$ROOT/benches" python3 - "$WORK/rows.tsv" "$ROOT/BENCHMARKS.md" "$RECORDS" "$(git -C "$ROOT" rev-parse --short=12 HEAD)" <<'EOF'
import datetime, re, sys
from section import write_section
rows_path, out, records, commit = sys.argv[1:5]
rows = [l.rstrip("\n").split("\t") for l in open(rows_path)]
rate = {(r[0], r[1]): float(r[2]) for r in rows}
brokers = [b for b in ("sluice", "kafka") if any(r[0] == b for r in rows)]
name = {"sluice": "Sluice", "kafka": "Apache Kafka"}
L = ["<!-- txn-java:begin -->", "## Transactions with the Java client (transaction version 2)", "",
     f"`benches/transactions-java.sh {records}`, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit `{commit}`:",
     "Apache Kafka's `ProducerPerformance` (kafka-clients 4.3.1, one producer, 1 KiB records, 8 partitions,",
     f"acks=all, `linger.ms=0`, {int(records):,} records a row; the figures are the tool's steady state, after the first",
     "20 % of the records) against one release Sluice",
     "broker (`--flush never --io-mode direct`, 2 shards)" + (" and one Apache Kafka 4.3.1 broker "
     "(`scripts/kafka-ref.sh`, after an unmeasured warm-up row)" if "kafka" in brokers else "") + ". Both finalize",
     "`transaction.version` 2, so the client sends no AddPartitionsToTxn (the partition leader adds the",
     "partition) and every EndTxn bumps the epoch. Transactions are by time (`--transaction-duration-ms`);",
     "**records/txn** is the row's rate times that duration.", "",
     "| broker | row | msg/s | MB/s | records/txn | avg latency ms | / idempotent |", "|---|---|---|---|---|---|---|"]
for r in rows:
    m = re.search(r"transactions of (\d+) ms", r[1])
    per = f"{float(r[2]) * int(m.group(1)) / 1000:,.0f}" if m else "–"
    base = rate.get((r[0], "idempotent"))
    ratio = f"{float(r[2]) / base:.2f}" if base and m else "–"
    L.append(f"| {name[r[0]]} | {r[1]} | {float(r[2]):,.0f} | {r[3]} | {per} | {r[5]} | {ratio} |")
L.append("")
L.append("Target (issue 17): transactions of about 100 records ≥ 0.7 × idempotent.")
L += ["<!-- txn-java:end -->", ""]
write_section(out, "txn-java", "\n".join(L))
print(f"wrote the txn-java section of {out}")
EOF
