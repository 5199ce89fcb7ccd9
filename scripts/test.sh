#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests. Integration tests
# start their own ClickHouse servers (hospital-testkit) on free ports in temp dirs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
