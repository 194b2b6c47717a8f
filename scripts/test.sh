#!/usr/bin/env bash
# The whole test suite: installs test dependencies (idempotent), checks formatting and lints,
# then runs every test (unit, integration against the real broker, client matrix).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
