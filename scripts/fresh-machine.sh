#!/usr/bin/env bash
# Runs README commands in a clean Debian 12 (bookworm) chroot, to prove that set-up works from a fresh package
# state (nothing that was installed by hand on this machine leaks in).
#
#   scripts/fresh-machine.sh                 set-up only: scripts/setup.sh --redis, then scripts/check-setup.sh
#   scripts/fresh-machine.sh -- CMD...       any command, run in the repository inside the chroot
#                                            (e.g. `-- scripts/test.sh` for the whole README flow, 40+ min cold)
#
# Needs root. Installs debootstrap when missing, builds a pristine base once (~/.cache/damocles-rs/bookworm-base,
# minbase plus what a machine of this project's kind ships: gcc, g++, git, libclang-cpp14 — the package that once
# fooled the detection — but no libclang-dev and no redis), then copies it for every run. The chroot gets this
# repository at /src and the host's Rust toolchain (~/.rustup, ~/.cargo) bind-mounted. It shares the host's
# network (apt-get must reach the mirror), so its Redis is started on a port of its own (DAMOCLES_REDIS_PORT) and
# shut down afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
[ "$(id -u)" = 0 ] || { echo "fresh-machine: needs root (chroot, mount)" >&2; exit 1; }
cmd=(bash -c "scripts/setup.sh --redis && scripts/check-setup.sh && redis-cli -p \$DAMOCLES_REDIS_PORT ping")
if [ "${1:-}" = "--" ]; then shift; cmd=("$@"); fi

cache="$HOME/.cache/damocles-rs"
base="$cache/bookworm-base"
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}
if [ ! -e "$base/.complete" ]; then
  command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  rm -rf "$base"; mkdir -p "$cache"
  echo "fresh-machine: building the bookworm base in $base (once)"
  debootstrap --variant=minbase --include=gcc,g++,libc6-dev,git,ca-certificates,libclang-cpp14 bookworm "$base" "$mirror" >/dev/null
  touch "$base/.complete"
fi

root=$(mktemp -d /tmp/damocles-fresh.XXXXXX)
cleanup() {
  for m in src root/.rustup root/.cargo dev/pts dev proc sys; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
cp -a "$base/." "$root/"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/src" "$root/root/.rustup" "$root/root/.cargo"
mount --bind "$repo" "$root/src"
mount --bind "$HOME/.rustup" "$root/root/.rustup"
mount --bind "$HOME/.cargo" "$root/root/.cargo"
mount -t proc proc "$root/proc"; mount --rbind /sys "$root/sys"; mount --rbind /dev "$root/dev"
echo "fresh-machine: running in $root: ${cmd[*]}"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup_redis() { chroot "$root" redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; cleanup; }
trap cleanup_redis EXIT
chroot "$root" /usr/bin/env -i HOME=/root PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  CARGO_TARGET_DIR=/root/target DAMOCLES_REDIS_PORT="$port" DAMOCLES_TEST_REDIS="redis://127.0.0.1:$port" TERM=dumb \
  bash -c 'cd /src && exec "$@"' _ "${cmd[@]}"
