#!/usr/bin/env bash
# Three Sluice nodes on loopback ports, every node a broker and a controller voter (combined
# mode), one shard each. Data and logs under ${CLUSTER_DIR:-./cluster}.
#
#   scripts/cluster.sh start    build (release) if needed, start nodes 0, 1, 2
#   scripts/cluster.sh status   which nodes run, and `sluice cluster info`
#   scripts/cluster.sh stop     SIGTERM (controlled shutdown) to the nodes this script started
#
# Node i: Kafka on 127.0.0.1:$((BASE_PORT + 2*i)), controller endpoint on the next port.
# Clients bootstrap from any node, e.g. kcat -b 127.0.0.1:19092 -L.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${CLUSTER_DIR:-$here/cluster}"
base="${BASE_PORT:-19092}"
bin="${SLUICE_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/sluice}"
nodes=3

voters() {
    local v=() i
    for ((i = 0; i < nodes; i++)); do v+=("$i@127.0.0.1:$((base + 2 * i + 1))"); done
    local IFS=,
    echo "${v[*]}"
}

running() { [[ -f "$dir/n$1.pid" ]] && kill -0 "$(cat "$dir/n$1.pid")" 2>/dev/null; }

start() {
    if [[ ! -x "$bin" ]]; then
        (cd "$here" && cargo build --release --bin sluice)
    fi
    mkdir -p "$dir"
    local i
    for ((i = 0; i < nodes; i++)); do
        if running "$i"; then
            echo "node $i already running (pid $(cat "$dir/n$i.pid"))"
            continue
        fi
        "$bin" --node-id "$i" \
            --listen "127.0.0.1:$((base + 2 * i))" \
            --controller-listen "127.0.0.1:$((base + 2 * i + 1))" \
            --controller-quorum-voters "$(voters)" \
            --data-dir "$dir/n$i" --cores 1 --metrics-listen "127.0.0.1:$((base + 100 + i))" \
            "$@" >>"$dir/n$i.log" 2>&1 &
        echo $! >"$dir/n$i.pid"
        echo "node $i: kafka 127.0.0.1:$((base + 2 * i)), controller 127.0.0.1:$((base + 2 * i + 1)), pid $!, log $dir/n$i.log"
    done
    # Wait (bounded) until a controller is active and all brokers are registered.
    for _ in $(seq 1 100); do
        if "$bin" cluster info --bootstrap "127.0.0.1:$base" 2>/dev/null | grep -q "Brokers: $nodes"; then
            "$bin" cluster info --bootstrap "127.0.0.1:$base"
            return 0
        fi
        sleep 0.1
    done
    echo "the cluster did not form within 10 s; see $dir/n*.log" >&2
    return 1
}

stop() {
    local i pid
    for ((i = 0; i < nodes; i++)); do
        if running "$i"; then
            pid="$(cat "$dir/n$i.pid")"
            kill -TERM "$pid"
            for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && echo "node $i (pid $pid) still running after 15 s" >&2
            echo "node $i stopped"
        fi
        rm -f "$dir/n$i.pid"
    done
}

status() {
    local i
    for ((i = 0; i < nodes; i++)); do
        if running "$i"; then echo "node $i: running (pid $(cat "$dir/n$i.pid"))"; else echo "node $i: stopped"; fi
    done
    "$bin" cluster info --bootstrap "127.0.0.1:$base" || true
}

cmd="${1:-}"
shift || true
case "$cmd" in
start) start "$@" ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start [extra sluice flags]|stop|status" >&2
    exit 2
    ;;
esac
