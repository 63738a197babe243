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
target_dir="${CARGO_TARGET_DIR:-target}"
cargo fmt --all -- --check
# Build every test first: this compiles RocksDB's C++ once.
cargo test --workspace --locked --no-run
# clippy checks in another build mode, for which cargo would run rust-librocksdb-sys's build script (the whole C++
# compile, 15+ minutes cold) a second time. Checking never links, so hand it the library just built instead, with
# the headers that build used (its build script prints their directory as `cargo::metadata=include=`).
rocksdb_lib=$(ls -t "$target_dir"/debug/build/rust-librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n1 || true)
rocksdb_include=""
if [ -n "$rocksdb_lib" ]; then
  rocksdb_include=$(sed -n 's/^cargo::metadata=include=//p' "$(dirname "$(dirname "$rocksdb_lib")")/output" | head -n1)
fi
if [ -n "$rocksdb_lib" ] && [ -n "$rocksdb_include" ]; then
  ROCKSDB_LIB_DIR=$(dirname "$rocksdb_lib") ROCKSDB_INCLUDE_DIR="$rocksdb_include" ROCKSDB_STATIC=1 \
    cargo clippy --workspace --all-targets --locked -- -D warnings
else
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi
cargo test --workspace --locked
