#!/usr/bin/env bash
# Installs what building and testing damocles-rs needs on a fresh Debian machine, only when missing.
#   scripts/setup.sh          build prerequisites (clang for RocksDB's bindings)
#   scripts/setup.sh --redis  also redis-server, started on 127.0.0.1:6379 if it is not answering
set -euo pipefail

need_apt=()
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v g++ >/dev/null || need_apt+=(g++)
if [ "${1:-}" = "--redis" ]; then
  command -v redis-server >/dev/null || need_apt+=(redis-server)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ "${1:-}" = "--redis" ]; then
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "setup: starting redis-server on 127.0.0.1:6379"
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
fi
