#!/usr/bin/env bash
# The whole test suite: installs prerequisites when missing, starts Redis when needed, then runs formatting,
# lint and every test (unit, integration with real .so plugins, real RocksDB, real Redis, real HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --redis
scripts/check-setup.sh
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  # A target dir that survives between CI runs on the same machine; a cold one works too (just slower).
  export CARGO_TARGET_DIR="$HOME/.cache/damocles-rs/target"
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
