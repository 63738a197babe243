#!/usr/bin/env bash
# Runs the daemon on its embedded defaults (RocksDB, local file stores) in ~/.damocles-manager.
# Extra arguments go to `damocles-manager daemon run` (e.g. --listen 127.0.0.1:1789).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release -p manager -- daemon run "$@"
