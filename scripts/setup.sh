#!/usr/bin/env bash
# Installs what building and testing damocles-rs needs on a fresh Debian machine, only when missing.
#   scripts/setup.sh          build prerequisites (libclang for RocksDB's bindings, a C++ compiler)
#   scripts/setup.sh --redis  also redis-server, started on 127.0.0.1:6379 (append-only, fsync always)
#                             when nothing answers there (port: DAMOCLES_REDIS_PORT, default 6379)
# What counts as "present" is decided by scripts/lib/detect.sh, proven by scripts/check-setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/detect.sh

mode=""
[ "${1:-}" = "--redis" ] && mode=redis
mapfile -t need_apt < <(missing_packages "$mode")
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  mapfile -t still < <(missing_packages "$mode")
  if [ ${#still[@]} -gt 0 ]; then
    echo "setup: still missing after apt-get install: ${still[*]}" >&2
    [ -z "$(find_libclang || true)" ] && echo "setup: no libclang.so or libclang-<version>.so found; set LIBCLANG_PATH to the directory that has one" >&2
    exit 1
  fi
fi
if [ "$mode" = redis ]; then
  port="${DAMOCLES_REDIS_PORT:-6379}"
  if ! redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
    echo "setup: starting redis-server on 127.0.0.1:$port (appendonly yes, appendfsync always)"
    data_dir="$HOME/.cache/damocles-rs/redis-$port"
    mkdir -p "$data_dir"
    redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --dir "$data_dir" \
      --save "" --appendonly yes --appendfsync always >/dev/null
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null || { echo "setup: redis-server did not answer on 127.0.0.1:$port" >&2; exit 1; }
  fi
fi
