#!/usr/bin/env bash
# The compaction tests at full size (CI runs them smaller): 10,000 keys × 100 updates plus
# tombstones for a tenth of them through librdkafka, and 30 kill -9s during cleans.
#
#   scripts/compaction.sh              SLUICE_COMPACTION_SEED=N picks the kill timings
set -euo pipefail
cd "$(dirname "$0")/.."
export SLUICE_COMPACTION_KEYS="${SLUICE_COMPACTION_KEYS:-10000}"
export SLUICE_COMPACTION_UPDATES="${SLUICE_COMPACTION_UPDATES:-100}"
export SLUICE_COMPACTION_KILLS="${SLUICE_COMPACTION_KILLS:-30}"
exec timeout 3600 cargo test --release --test compaction -- --nocapture --test-threads 1
