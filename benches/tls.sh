#!/usr/bin/env bash
# TLS's cost on this machine: one release broker with PLAINTEXT, SSL and SASL_SSL listeners
# (a CA and a server certificate made with openssl for the run), sluice-load against each, in
# the same run.
#
#   benches/tls.sh [SECONDS]      (default 10 s per produce row)
#
# Rows (1 KiB messages, 8 partitions, 1 producer / 1 consumer, acks=1, --flush never):
#   1. produce over PLAINTEXT          2. produce over SSL       3. produce over SASL_SSL
#                                                                   (SCRAM-SHA-512)
#   3b. produce over PLAINTEXT at row 2's rate (--rate): the broker's CPU per GB at the same
#       request sizes, so that row 2 / row 3b is what TLS itself costs the broker
#   4. consume row 1's backlog over PLAINTEXT  5. the same over SSL  6. over PLAINTEXT again
#      (the consume ratio divides by the mean of rows 4 and 6: the first read of the topic
#      may find less of it cached)
# Each row also gives the broker's and the load generator's CPU time per GB of payload: the
# two share the machine's two cores, and with TLS the client's encryption is the larger cost.
# Then the same with the Java client (kafka-clients 4.3.1's ProducerPerformance and
# ConsumerPerformance from scripts/kafka-ref.sh's jars; skipped without java): produce over
# PLAINTEXT, SSL, PLAINTEXT again (acks=1, linger.ms=5, 256 KiB batches, the first 20 % of the
# records left out as warm-up), and consume the librdkafka PLAINTEXT row's topic over
# PLAINTEXT, SSL, PLAINTEXT again; each ratio divides by the mean of its two PLAINTEXT rows.
# Prints one line per row and the ratios the issue asks for (SSL / PLAINTEXT, target ≥ 0.7),
# and writes them as the TLS section of BENCHMARKS.md (between its tls markers;
# benches/run-matrix.sh keeps that section). The load generator and the broker share the
# machine's cores: the TLS rows pay for the client's encryption too. Stops only the broker it
# started, by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SECS=${1:-10}
WORK=${TLS_BENCH_DIR:-$TARGET_DIR/bench-tls}
BASE_PORT=${BASE_PORT:-19700}
SLUICE=$TARGET_DIR/release/sluice
LOAD=$TARGET_DIR/release/sluice-load
PLAIN=127.0.0.1:$BASE_PORT
SSL=127.0.0.1:$((BASE_PORT + 1))
SASL_SSL=127.0.0.1:$((BASE_PORT + 2))
JAVA_RECORDS=${JAVA_RECORDS:-1500000}
LIB=$ROOT/.test-deps/kafka/lib

cargo build --release -p sluice -p sluice-tools >/dev/null
JAVA=
if command -v java >/dev/null && "$ROOT/scripts/kafka-ref.sh" install >/dev/null; then
    JAVA=1
fi
rm -rf "$WORK"
mkdir -p "$WORK"
PID=
trap '[[ -n $PID ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK/data"' EXIT

# A CA and a server certificate for 127.0.0.1 (ECDSA P-256, v3).
(
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -subj "/CN=sluice bench CA" -days 2 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
        -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile server.ext -out server.crt 2>/dev/null
    cat server.key server.crt >server.pem
)

"$SLUICE" --listeners "PLAINTEXT://$PLAIN,SSL://$SSL,SASL_SSL://$SASL_SSL" \
    --ssl-keystore-location "$WORK/server.pem" --data-dir "$WORK/data" --flush never \
    --io-mode direct --log-level warn --metrics-listen none \
    --add-scram 'SCRAM-SHA-512=[name=bench,password=bench-secret]' >"$WORK/broker.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    grep -q "listening on" "$WORK/broker.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "listening on" "$WORK/broker.log" || { echo "broker did not start" >&2; cat "$WORK/broker.log" >&2; exit 1; }

TLS_X=(-X security.protocol=SSL -X "ssl.ca.location=$WORK/ca.pem")
SASL_X=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$WORK/ca.pem" -X sasl.mechanism=SCRAM-SHA-512
    -X sasl.username=bench -X sasl.password=bench-secret)

run() { # label mode bootstrap topic [sluice-load args...]
    local label=$1 mode=$2 boot=$3 topic=$4
    shift 4
    local json=$WORK/$topic-$mode-$(cat "$WORK/rows.tsv" 2>/dev/null | wc -l).json
    local bound=(--duration "${SECS}s" --warmup 2s)
    [[ $mode == consume ]] && bound=(--from-beginning --idle-timeout 15s --consumers 1)
    local before
    before=$(broker_ticks)
    if ! /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" timeout $((SECS + 180)) "$LOAD" "$mode" --bootstrap "$boot" --topic "$topic" \
        --partitions 8 --message-size 1024 -q --acks 1 --producers 1 "${bound[@]}" "$@" \
        --json "$json" >"$WORK/$topic-$mode.out" 2>&1; then
        echo "$label: sluice-load failed; see $WORK/$topic-$mode.out" >&2
        return 1
    fi
    python3 - "$label" "$json" "$WORK/rows.tsv" "$mode" "$(($(broker_ticks) - before))" "$(getconf CLK_TCK)" "$WORK/client.cpu" <<'EOF'
import json, sys
label, path, rows, mode, ticks, hz, client_cpu = sys.argv[1:8]
r = json.load(open(path))["results"]["produced" if mode == "produce" else "consumed"]
# CPU over the whole row (warm-up included) per GB of all the payload it moved.
gb = r["bytes"] / 1e9
broker_s = int(ticks) / int(hz)
client_s = sum(float(x) for x in open(client_cpu).read().split()[-2:])
line = (f"{label}\t{r['throughput_msgs_per_sec']:.0f}\t{r['throughput_mb_per_sec']:.1f}\t{r['measured_messages']}"
        f"\t{broker_s / gb:.2f}\t{client_s / gb:.2f}")
print(line.replace("\t", "  "))
open(rows, "a").write(line + "\n")
EOF
}

broker_ticks() { # the broker's user + system CPU time, in clock ticks
    awk '{print $14 + $15}' "/proc/$PID/stat"
}

java_row() { # label mode bootstrap topic [client properties...]: one Java client row
    local label=$1 mode=$2 boot=$3 topic=$4
    shift 4
    local out=$WORK/java-$mode-$(wc -l <"$WORK/java.tsv").out
    printf '%s\n' "$@" >"$WORK/java.properties"
    local before
    before=$(broker_ticks)
    if [[ $mode == produce ]]; then
        "$SLUICE" topic create "$topic" --partitions 8 --bootstrap "$PLAIN" >/dev/null
        /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" timeout 600 java -Xmx1g -cp "$LIB/*" \
            org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$boot" --topic "$topic" \
            --num-records "$JAVA_RECORDS" --warmup-records $((JAVA_RECORDS / 5)) --record-size 1024 \
            --throughput -1 --command-config "$WORK/java.properties" \
            --command-property acks=1 linger.ms=5 batch.size=262144 >"$out" 2>&1
    else
        /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" timeout 600 java -Xmx1g -cp "$LIB/*" \
            org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$boot" --topic "$topic" \
            --messages "$JAVA_RECORDS" --timeout 30000 --group "java-$RANDOM$RANDOM" \
            --command-config "$WORK/java.properties" >"$out" 2>&1
    fi || { echo "$label: the Java client failed; see $out" >&2; return 1; }
    python3 - "$label" "$out" "$WORK/java.tsv" "$mode" "$(($(broker_ticks) - before))" "$(getconf CLK_TCK)" "$WORK/client.cpu" "$JAVA_RECORDS" <<'EOF'
import re, sys
label, out, rows, mode, ticks, hz, client_cpu, records = sys.argv[1:9]
text = open(out).read()
if mode == "produce":
    m = re.search(r"steady state records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)", text)
    msgs, mb = float(m.group(1)), float(m.group(2))
else:
    last = [l for l in text.splitlines() if l[:4].isdigit()][-1].split(", ")
    msgs, mb = float(last[5]), float(last[3])
# CPU over the whole row (warm-up included) per GB of all the records it moved.
gb = int(records) * 1024 / 1e9
client_s = sum(float(x) for x in open(client_cpu).read().split()[-2:])
line = f"{label}\t{msgs:.0f}\t{mb:.1f}\t{int(ticks) / int(hz) / gb:.2f}\t{client_s / gb:.2f}"
print(line.replace("\t", "  "))
open(rows, "a").write(line + "\n")
EOF
}

run "produce, PLAINTEXT" produce "$PLAIN" plain
run "produce, SSL" produce "$SSL" ssl "${TLS_X[@]}"
run "produce, SASL_SSL SCRAM-SHA-512" produce "$SASL_SSL" sasl-ssl "${SASL_X[@]}"
ssl_rate=$(awk -F'\t' 'NR == 2 {print $2}' "$WORK/rows.tsv")
run "produce, PLAINTEXT at the SSL row's rate" produce "$PLAIN" plain-paced --rate "$ssl_rate"
run "consume a backlog, PLAINTEXT" consume "$PLAIN" plain
run "consume a backlog, SSL" consume "$SSL" plain "${TLS_X[@]}"
run "consume a backlog, PLAINTEXT again" consume "$PLAIN" plain
: >"$WORK/java.tsv"
if [[ -n $JAVA ]]; then
    JAVA_SSL=(security.protocol=SSL ssl.truststore.type=PEM "ssl.truststore.location=$WORK/ca.pem")
    java_row "Java produce, PLAINTEXT" produce "$PLAIN" java-plain-1
    java_row "Java produce, SSL" produce "$SSL" java-ssl "${JAVA_SSL[@]}"
    java_row "Java produce, PLAINTEXT again" produce "$PLAIN" java-plain-2
    java_row "Java consume a backlog, PLAINTEXT" consume "$PLAIN" plain
    java_row "Java consume a backlog, SSL" consume "$SSL" plain "${JAVA_SSL[@]}"
    java_row "Java consume a backlog, PLAINTEXT again" consume "$PLAIN" plain
else
    echo "no java: the Java client rows are left out" >&2
fi

PYTHONPATH="$ROOT/benches" python3 - "$WORK/rows.tsv" "$ROOT/BENCHMARKS.md" "$SECS" "$(git -C "$ROOT" rev-parse --short=12 HEAD)" "$WORK/java.tsv" "$JAVA_RECORDS" <<'EOF'
import datetime, sys
from section import write_section
rows_path, out, secs, commit, java_path, java_records = sys.argv[1:7]
rows = [l.rstrip("\n").split("\t") for l in open(rows_path)]
rate = {r[0]: float(r[1]) for r in rows}
names = [r[0] for r in rows]
prod = rate[names[1]] / rate[names[0]]
sasl = rate[names[2]] / rate[names[0]]
paced = names.pop(3)  # the PLAINTEXT row at the SSL row's rate
cons = rate[names[4]] / ((rate[names[3]] + rate[names[5]]) / 2)
cpu = {r[0]: (float(r[4]), float(r[5])) for r in rows}
L = ["<!-- tls:begin -->", "## TLS beside plaintext (one broker)", "",
     f"`benches/tls.sh {secs}`, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit `{commit}`: one release",
     "broker (`--flush never --io-mode direct`, listeners PLAINTEXT, SSL and SASL_SSL; rustls with ring,",
     "an ECDSA P-256 certificate, TLS 1.3 as negotiated with librdkafka/OpenSSL) and `sluice-load`",
     f"(1 producer or 1 consumer, 1 KiB messages, 8 partitions, acks=1, {secs} s after a 2 s warm-up; the",
     "consume rows read the PLAINTEXT produce row's whole topic) on this 2-core machine, in the same run.", "",
     "| row | msg/s | MB/s | messages measured | broker CPU s/GB | client CPU s/GB |",
     "|---|---|---|---|---|---|"]
for r in rows:
    L.append(f"| {r[0]} | {float(r[1]):,.0f} | {r[2]} | {int(r[3]):,} | {r[4]} | {r[5]} |")
L += ["", f"- produce over SSL / over PLAINTEXT: **{prod:.2f}** (target ≥ 0.7)",
      f"- produce over SASL_SSL (SCRAM-SHA-512) / over PLAINTEXT: **{sasl:.2f}**",
      f"- consume over SSL / over PLAINTEXT (mean of the two): **{cons:.2f}** (target ≥ 0.7)",
      f"- broker CPU per GB, SSL / PLAINTEXT at the same rate: produce {cpu[names[1]][0] / cpu[paced][0]:.2f};"
      f" SSL / PLAINTEXT at full rate: produce {cpu[names[1]][0] / cpu[names[0]][0]:.2f}, consume"
      f" {cpu[names[4]][0] / ((cpu[names[3]][0] + cpu[names[5]][0]) / 2):.2f}; the client's, produce"
      f" {cpu[names[1]][1] / cpu[names[0]][1]:.2f}, consume {cpu[names[4]][1] / ((cpu[names[3]][1] + cpu[names[5]][1]) / 2):.2f}."
      " Broker and client share the machine's two cores: where the client's cost grows more, the",
      "  rate is the client's."]
java = [l.rstrip("\n").split("\t") for l in open(java_path)]
if len(java) == 6:
    jr = [float(r[1]) for r in java]
    L += ["", f"The Java client (kafka-clients 4.3.1: `ProducerPerformance`, {int(java_records):,} records of 1 KiB,",
          "acks=1, linger.ms=5, 256 KiB batches, the first 20 % left out; `ConsumerPerformance` reading",
          f"{int(java_records):,} records of the PLAINTEXT produce row's topic), same broker, same run:", "",
          "| row | msg/s | MB/s | broker CPU s/GB | client CPU s/GB |", "|---|---|---|---|---|"]
    for r in java:
        L.append(f"| {r[0]} | {float(r[1]):,.0f} | {r[2]} | {r[3]} | {r[4]} |")
    L += ["", f"- Java produce over SSL / over PLAINTEXT (mean of the two): **{jr[1] / ((jr[0] + jr[2]) / 2):.2f}** (target ≥ 0.7)",
          f"- Java consume over SSL / over PLAINTEXT (mean of the two): **{jr[4] / ((jr[3] + jr[5]) / 2):.2f}** (target ≥ 0.7)",
          "- Both clients' rates are their own limits, not the broker's: the Java producer spends several",
          "  times the broker's CPU per GB on either protocol, so TLS adds little to it; librdkafka's",
          "  producer encrypts in its one thread per broker connection (its SSL row's client CPU is about",
          "  one core), and on two shared cores its TLS cost alone bounds the SSL row below 0.7 of its",
          "  PLAINTEXT rate even if the broker's TLS cost nothing."]
L += ["<!-- tls:end -->", ""]
block = "\n".join(L)
write_section(out, "tls", block)
print(f"wrote the TLS section of {out}")
EOF
