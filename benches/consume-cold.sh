#!/usr/bin/env bash
# A consumer reading a backlog the broker wrote moments ago, twice: the first read finds the
# data on the disk only (Sluice writes with O_DIRECT), the second whatever the first left in
# memory. Prints msg/s and the broker's CPU seconds for each read, and the disk's read bytes and
# busy time during the first one (/proc/diskstats of DISK).
#
#   benches/consume-cold.sh [BINARY|sink] [PARTITIONS] [extra broker flags...]
#
# BINARY defaults to target/release/sluice; `sink` runs target/release/sluice-sink (the client's
# ceiling). Backlog: 1,000,000 x 1 KiB (acks=1), one sluice-load consumer. Work dir
# target/consume-cold (removed first), broker on 127.0.0.1:19321, stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/sluice}; P=${2:-1}; shift $(( $# > 2 ? 2 : $# ))
if [[ -z ${DISK:-} ]]; then  # the whole disk holding the work dir (vda for /dev/vda1 or /dev/vda)
    src=$(df --output=source . | tail -1)
    DISK=$(lsblk -no PKNAME "$src" 2>/dev/null | head -1)
    [[ -n $DISK ]] || DISK=$(basename "$src")
fi
D=target/consume-cold; rm -rf "$D"; mkdir -p "$D"
PORT=19321
if [[ $BIN == sink ]]; then
    target/release/sluice-sink --listen 127.0.0.1:$PORT --memory-bytes 3221225472 > "$D/broker.log" 2>&1 &
else
    "$BIN" --listen 127.0.0.1:$PORT --data-dir "$D/data" --flush never --io-mode direct \
        --log-level warn "$@" > "$D/broker.log" 2>&1 &
fi
PID=$!
trap 'kill $PID 2>/dev/null && wait $PID 2>/dev/null || true' EXIT
sleep 1.5
common=(--bootstrap 127.0.0.1:$PORT --topic c --partitions "$P" --message-size 1024 -q)
timeout 300 target/release/sluice-load produce "${common[@]}" --acks 1 --messages 1000000 > "$D/backlog.out" 2>&1
sleep 1
cpu() { awk '{print $14+$15}' "/proc/$PID/stat"; }
disk() { awk -v d="$DISK" '$3 == d {print $6, $13; found = 1} END {if (!found) print 0, 0}' /proc/diskstats; }
for i in 1 2; do
    read -r s0 b0 < <(disk); c0=$(cpu)
    timeout 120 target/release/sluice-load consume "${common[@]}" --from-beginning --idle-timeout 5s \
        --json "$D/c$i.json" > "$D/c$i.out" 2>&1
    c1=$(cpu); read -r s1 b1 < <(disk)
    python3 -c "
import json
r = json.load(open('$D/c$i.json'))['results']
print('read $i: %.0f msg/s, broker CPU %.2f s, disk read %.0f MB, disk busy %d ms'
      % (r['throughput_msgs_per_sec'], ($c1 - $c0) / 100.0, ($s1 - $s0) * 512 / 1e6, $b1 - $b0))"
done
