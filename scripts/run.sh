#!/usr/bin/env bash
# Runs the daemon (the release build, target/release/damocles-manager) on its embedded defaults (RocksDB, local
# file stores) in ~/.damocles-manager, or in another home.
#
#   scripts/run.sh [--no-build] [--home DIR [--init]] [daemon run args, e.g. --listen 127.0.0.1:1789]
#
#   (default)    builds the release manager with cargo first (waits on cargo's build lock if a build is running)
#   --no-build   runs the already built binary directly, no cargo: a restart is immediate. The same as running
#                target/release/damocles-manager [--home DIR] daemon run yourself (the path is printed on start).
#   --home DIR   a non-default home (also $DAMOCLES_HOME). It must hold a config: the daemon never creates one in
#                an explicit home by itself (an empty directory may be a volume that is not mounted).
#   --init       creates what is missing in that home first (`daemon init`: config, API token, plugins/; an
#                existing config and token are kept byte for byte).
# $DAMOCLES_MANAGER_BIN runs that binary instead of target/release/damocles-manager (implies --no-build).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${DAMOCLES_MANAGER_BIN:-}"
build=1
[ -n "$bin" ] && build=0
init=0
home="${DAMOCLES_HOME:-}"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --init) init=1 ;;
    --home)
      [ $# -ge 2 ] || { echo "run.sh: --home needs a directory" >&2; exit 2; }
      home="$2"
      shift
      ;;
    --home=*) home="${1#--home=}" ;;
    *) args+=("$1") ;;
  esac
  shift
done
[ -n "$bin" ] || bin="${CARGO_TARGET_DIR:-target}/release/damocles-manager"

if [ "$build" = 1 ]; then
  scripts/setup.sh
  cargo build --release -p manager
elif [ ! -x "$bin" ]; then
  echo "run.sh: $bin is not built; run scripts/run.sh once without --no-build (or: cargo build --release -p manager)" >&2
  exit 1
fi

home_args=()
if [ -n "$home" ]; then
  home_args=(--home "$home")
  if [ "$init" = 1 ]; then
    "$bin" --home "$home" daemon init
  elif [ ! -f "$home/sector-manager.cfg" ]; then
    echo "run.sh: home $home has no sector-manager.cfg; create it once with: scripts/run.sh --home $home --init" >&2
    exit 1
  fi
fi
# Unset, so the binary sees the home only through --home (one source of truth, printed below).
unset DAMOCLES_HOME
echo "run.sh: running $bin ${home_args[*]} daemon run ${args[*]}" >&2
echo "run.sh: to restart without cargo: scripts/run.sh --no-build ${home_args[*]} ${args[*]}" >&2
exec "$bin" "${home_args[@]}" daemon run "${args[@]}"
