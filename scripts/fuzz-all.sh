#!/usr/bin/env bash
# Usage: fuzz-all.sh [SECONDS [TARGET...]]
# Runs every cargo-fuzz target (or the TARGETs named) for SECONDS each (default 600), one after
# another, on one core.
# Seeds: net/fuzz/corpus (request frames captured from real clients with capture-corpus.py) and
# storage/fuzz/corpus (batches and segments those clients wrote through the broker).
# Installs cargo-fuzz from crates.io when it is missing; uses the nightly toolchain when rustup
# has one, else the stable one with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly-only flags).
# Logs to target/fuzz-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-600}"
shift || true
ONLY=" $* "
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
FUZZ=(cargo fuzz)
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    FUZZ=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
fi
mkdir -p target/fuzz-logs
run() {
    local crate_dir="$1" target="$2" corpus="$3"
    [ "$ONLY" = "  " ] || [[ $ONLY == *" $target "* ]] || return 0
    echo "== $crate_dir $target (${SECONDS_EACH}s)"
    # New inputs go to target/ (first corpus dir); the committed seeds stay as captured.
    local work="$PWD/target/fuzz-corpus/$target"
    mkdir -p "$work" "$crate_dir/fuzz/corpus/$corpus"
    (cd "$crate_dir" && "${FUZZ[@]}" run "$target" "$work" "fuzz/corpus/$corpus" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=262144) \
        > "target/fuzz-logs/$target.log" 2>&1
    tail -n 3 "target/fuzz-logs/$target.log"
}
run net frames_and_requests request
run net request_by_api request_by_api
run storage validate_batches validate_batches
run storage scan_segment scan_segment
run storage reader reader
run storage parse_records validate_batches
run . raft_journal raft_journal
run . controller_request controller_request
run . replica_fetch_answer replica_fetch_answer
run . coordinator_records coordinator_records
run . sasl_exchange sasl_exchange
run . tls_server tls_server
run . sasl_client sasl_client
