#!/usr/bin/env bash
# librdkafka's own integration tests (tests/NNNN-*.c of librdkafka 2.12.1) against a real Sluice.
#
#   scripts/librdkafka-suite.sh [TEST...]        default: 0103 0129 (transactions)
#
# The brokers form a three-node cluster by default: 0103 creates its topics with replication
# factor 3, which a single node refuses (INVALID_REPLICATION_FACTOR), as Kafka does. CI runs this
# script through tests/librdkafka_suite.rs.
#
# The first run copies librdkafka's source, tests/ included, from the rdkafka-sys crate in the
# cargo registry to .test-deps/librdkafka-src and builds the library and tests/test-runner
# (no downloads; Debian's zlib only); later runs reuse it (remove that directory to rebuild).
# Each run builds target/debug/sluice if it is missing, starts NODES brokers on free 127.0.0.1
# ports with temporary data dirs, writes the run's test.conf, runs each TEST alone under
# `timeout`, stops the brokers it started (by PID, also on Ctrl-C or error), prints PASS/FAIL
# per test with the subtests' PASS/SKIP lines, and exits 1 if a test failed.
#
# Env: SLUICE_BIN (target/debug/sluice), NODES (3), TEST_TIMEOUT_S (600, per test),
# TEST_KAFKA_VERSION (3.9.0: the broker version the tests assume; below 2.5 they expect no
# KIP-360), SUBTESTS (substring of the subtests to run), TEST_DEBUG (client debug contexts,
# e.g. eos,protocol), SLUICE_LOG_LEVEL (info), LOG_DIR (a new temp dir: broker and test logs,
# kept and printed at the end).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/.test-deps/librdkafka-src"
runner="$src/tests/test-runner"
bin="${SLUICE_BIN:-$root/target/debug/sluice}"
nodes="${NODES:-3}"
tests=("$@")
[[ ${#tests[@]} -gt 0 ]] || tests=(0103 0129)
logs="${LOG_DIR:-$(mktemp -d /tmp/librdkafka-suite.XXXXXX)}"
mkdir -p "$logs"

# --- librdkafka and its test runner (built once) ---------------------------------------------
if [[ ! -x "$runner" ]]; then
    if [[ ! -d "$src" ]]; then
        reg=$(ls -d "$HOME"/.cargo/registry/src/*/rdkafka-sys-4.10.0+2.12.1/librdkafka 2>/dev/null | head -1 || true)
        if [[ -z "$reg" ]]; then
            (cd "$root" && cargo fetch >/dev/null)
            reg=$(ls -d "$HOME"/.cargo/registry/src/*/rdkafka-sys-4.10.0+2.12.1/librdkafka | head -1)
        fi
        mkdir -p "$root/.test-deps"
        rm -rf "$src.tmp"
        cp -a "$reg" "$src.tmp" && mv "$src.tmp" "$src"
    fi
    echo "building librdkafka and its test runner in $src (log: $logs/build.log)"
    (
        cd "$src"
        [[ -f Makefile.config ]] || nice -n 19 ./configure --no-download --disable-gssapi \
            --disable-curl --disable-zstd --disable-ssl
        nice -n 19 make -j2 libs
        nice -n 19 make -j2 -C tests build
    ) >"$logs/build.log" 2>&1 || { tail -30 "$logs/build.log"; exit 1; }
fi
if [[ ! -x "$bin" && -z "${SLUICE_BIN:-}" ]]; then
    (cd "$root" && nice -n 19 cargo build --bin sluice)
fi

# --- brokers ----------------------------------------------------------------------------------
pids=()
data=$(mktemp -d /tmp/librdkafka-suite-data.XXXXXX)
stop() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$data"
}
trap stop EXIT
trap 'exit 130' INT TERM

# 2*NODES free loopback ports (a Kafka and a controller port per node).
read -r -a ports <<<"$(python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(2 * int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$nodes")"
voters=""
for ((i = 0; i < nodes; i++)); do voters+="${voters:+,}$i@127.0.0.1:${ports[2 * i + 1]}"; done
bootstrap=""
for ((i = 0; i < nodes; i++)); do
    args=(--data-dir "$data/n$i" --listen "127.0.0.1:${ports[2 * i]}" --metrics-listen none
        --log-level "${SLUICE_LOG_LEVEL:-info}")
    if ((nodes > 1)); then
        args+=(--node-id "$i" --cores 1 --controller-listen "127.0.0.1:${ports[2 * i + 1]}"
            --controller-quorum-voters "$voters")
    fi
    "$bin" "${args[@]}" >"$logs/sluice-n$i.log" 2>&1 &
    pids+=($!)
    bootstrap+="${bootstrap:+,}127.0.0.1:${ports[2 * i]}"
done
for _ in $(seq 1 300); do
    "$bin" cluster info --bootstrap "127.0.0.1:${ports[0]}" 2>/dev/null | grep -q "Brokers: $nodes" && break
    sleep 0.1
done
"$bin" cluster info --bootstrap "127.0.0.1:${ports[0]}" | grep -q "Brokers: $nodes" ||
    { echo "Sluice did not start; see $logs/sluice-n*.log" >&2; exit 1; }
echo "sluice: $nodes node(s) at $bootstrap ($bin), logs in $logs"

cat >"$logs/test.conf" <<EOF
bootstrap.servers=$bootstrap
broker.address.family=v4
EOF

# --- tests ------------------------------------------------------------------------------------
export RDKAFKA_TEST_CONF="$logs/test.conf"
export TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-3.9.0}"
export LD_LIBRARY_PATH="$src/src:$src/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
tmo="${TEST_TIMEOUT_S:-600}"
declare -A result
failed=0
for t in "${tests[@]}"; do
    echo "=== $t"
    rc=0
    # (the braces keep bash's "Aborted" notice out when test-runner aborts after a failure)
    { (cd "$src/tests" && TESTS="$t" timeout -k 10 "$tmo" ./test-runner -p1) \
        >"$logs/$t.log" 2>&1; } 2>/dev/null || rc=$?
    case $rc in
        0) result[$t]=PASS ;;
        124 | 137) result[$t]="FAIL (timeout after $tmo s)" ;;
        *) result[$t]="FAIL (exit $rc)" ;;
    esac
    grep -q "Running test" "$logs/$t.log" || { rc=1; result[$t]="FAIL (no test matched $t)"; }
    [[ $rc -eq 0 ]] || failed=1
    # Subtests passed and skipped, tests passed, skipped and failed, and why (no colour codes).
    sed 's/\x1b\[[0-9;]*m//g' "$logs/$t.log" |
        grep -E '\[ .*: (PASS|SKIP).*\]$|=+ Test .* (PASSED|SKIPPED)|### Test .* failed|assertion failed' |
        sed 's/^/    /' || true
done
for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null || { echo "sluice node $i died: see $logs/sluice-n$i.log"; failed=1; }
done

echo
echo "summary (logs: $logs)"
for t in "${tests[@]}"; do printf '  %-6s %s\n' "$t" "${result[$t]}"; done
exit $failed
