#!/usr/bin/env bash
# Alternating A/B of two release builds (each dir holds sluice and sluice-load): produce 8p acks=all,
# produce 1p acks=1, consume a 500k backlog from 8 partitions, and creating 500 topics.
# FOCUS=1 runs only the 8-partition produce and the consume rows. Results print one line per side.
# Example: benches/ab-release.sh /work/before /work/after 4
# usage: benches/ab-release.sh OLD_DIR NEW_DIR [PAIRS]
set -u
OLD=$1; NEW=$2; PAIRS=${3:-3}
W=$(cd "$(dirname "$0")/.." && pwd)/target/ab13; mkdir -p $W
run_broker() { # bin port
  rm -rf $W/data; $1/sluice --data-dir $W/data --listen 127.0.0.1:$2 --metrics-listen none --log-level warn > $W/broker.log 2>&1 &
  echo $! > $W/pid
  for i in $(seq 1 100); do grep -q 'listening' $W/broker.log && break; sleep 0.05; done
}
stop_broker() { kill $(cat $W/pid); wait $(cat $W/pid) 2>/dev/null; }
rate() { python3 - "$1" <<'PY' 2>/dev/null || echo "?"
import json,sys
def find(d):
    if isinstance(d,dict):
        if 'throughput_msgs_per_sec' in d: return d['throughput_msgs_per_sec']
        for v in d.values():
            r=find(v)
            if r is not None: return r
    return None
print(round(find(json.load(open(sys.argv[1]))) or 0))
PY
}
for pair in $(seq 1 $PAIRS); do
  for side in old new; do
    B=$OLD; [ $side = new ] && B=$NEW
    rm -f $W/p8.json $W/p1.json $W/c8.json
    # produce acks=all 8p
    run_broker $B 19193
    $B/sluice-load produce --bootstrap 127.0.0.1:19193 --topic ab --partitions 8 --message-size 1024 -q --acks all --producers 1 --duration 10s --warmup 2s --json $W/p8.json >/dev/null 2>&1
    stop_broker
    if [ -z "${FOCUS:-}" ]; then
    # produce acks=1 1p
    run_broker $B 19193
    $B/sluice-load produce --bootstrap 127.0.0.1:19193 --topic ab --partitions 1 --message-size 1024 -q --acks 1 --producers 1 --duration 10s --warmup 2s --json $W/p1.json >/dev/null 2>&1
    stop_broker
    fi
    # consume 8p backlog 500k
    run_broker $B 19193
    $B/sluice-load produce --bootstrap 127.0.0.1:19193 --topic cb --partitions 8 --message-size 1024 -q --acks 1 --producers 1 --messages 500000 >/dev/null 2>&1
    $B/sluice-load consume --bootstrap 127.0.0.1:19193 --topic cb --partitions 8 --message-size 1024 -q --consumers 1 --from-beginning --idle-timeout 10s --json $W/c8.json >/dev/null 2>&1
    stop_broker
    t0=0; t1=0
    if [ -z "${FOCUS:-}" ]; then
    # create 500 topics of 1 partition, one request each (admin CLI of the same build)
    run_broker $B 19193
    t0=$(date +%s.%N)
    for i in $(seq 1 500); do $B/sluice topic create --bootstrap 127.0.0.1:19193 t$i -p 1 >/dev/null; done
    t1=$(date +%s.%N)
    stop_broker
    fi
    echo "$side pair=$pair produce_all_8p=$(rate $W/p8.json) produce_1_1p=$(rate $W/p1.json) consume_8p=$(rate $W/c8.json) create500_s=$(echo "$t1 - $t0" | bc)"
  done
done
