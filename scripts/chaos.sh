#!/usr/bin/env bash
# The replication chaos test, longer than CI runs it: three sluice processes, a topic with
# replication factor 3 and min.insync.replicas 2, an idempotent acks=all producer and a
# consumer group running, while the leader of a partition is killed (-9), paused (SIGSTOP) or
# cut off from the controllers, round after round. The checker then compares everything
# acknowledged and read with what the partitions hold (tests/replication.rs).
#
#   scripts/chaos.sh [ROUNDS]            default 30 rounds (kill, pause, cut-off in turn), ~5 min
#   scripts/chaos.sh 12 kill             kill -9 only
#   DEFAULT_TIMEOUTS=1 scripts/chaos.sh 12 kill
#                                        brokers on their default heartbeat/session timeouts:
#                                        prints failover p50/max as users get it
#   FLUSH=always scripts/chaos.sh 12     brokers with --flush always (default: never)
#
# CI runs the same test with 3 rounds. Tests stop only the processes they started.
set -euo pipefail
cd "$(dirname "$0")/.."
export SLUICE_CHAOS_ROUNDS="${1:-30}"
if [[ "${2:-}" == kill ]]; then
    export SLUICE_CHAOS_FAULTS=kill
fi
if [[ -n "${FLUSH:-}" ]]; then
    export SLUICE_CHAOS_FLUSH="$FLUSH"
fi
if [[ -n "${DEFAULT_TIMEOUTS:-}" ]]; then
    export SLUICE_CLUSTER_DEFAULT_TIMEOUTS=1
fi
exec timeout 3600 cargo test --test replication acknowledged_writes_survive -- --nocapture
