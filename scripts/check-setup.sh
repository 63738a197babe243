#!/usr/bin/env bash
# Proves scripts/lib/detect.sh: first on fake file trees that reproduce real Debian layouts (including the
# one that once fooled it: libclang-cpp14 without libclang-dev), then against this machine's package state
# as dpkg reports it. Prints one line per check and "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/detect.sh

passed=0 failed=0
check() { # check NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok   $1";
  else failed=$((failed + 1)); echo "FAIL $1: expected '$2', got '$3'"; fi
}
fake_tree() { # fake_tree FILE... : a root holding these (empty) files
  local root; root=$(mktemp -d); local f
  for f in "$@"; do mkdir -p "$root$(dirname "$f")"; : >"$root$f"; case "$f" in */bin/*) chmod +x "$root$f" ;; esac; done
  echo "$root"
}
missing_in() { DETECT_ROOT="$1" missing_packages "${2:-}" | tr '\n' ' ' | sed 's/ $//'; }

headers=/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h
# Debian 12 with only libclang-cpp14 (the C++ API library): not libclang.
r=$(fake_tree /usr/lib/x86_64-linux-gnu/libclang-cpp.so.14 /usr/lib/llvm-14/lib/libclang-cpp.so.14 /usr/bin/c++)
check "libclang-cpp14 alone is not libclang" "libclang-dev" "$(missing_in "$r")"
# libclang1-14 without -dev: versioned file only, which clang-sys refuses outside its runtime mode.
r=$(fake_tree /usr/lib/llvm-14/lib/libclang.so.1 /usr/lib/x86_64-linux-gnu/libclang-14.so.1 $headers /usr/bin/c++)
check "libclang.so.1 alone is not linkable" "libclang-dev" "$(missing_in "$r")"
# libclang-14-dev: the unversioned symlink, and the headers from libclang-common-14-dev.
r=$(fake_tree /usr/lib/llvm-14/lib/libclang.so $headers /usr/bin/c++)
check "libclang-14-dev layout is complete" "" "$(missing_in "$r")"
r=$(fake_tree /usr/lib/llvm-14/lib/libclang.so /usr/bin/c++)
check "libclang without clang's headers is incomplete" "libclang-dev" "$(missing_in "$r")"
r=$(fake_tree /usr/lib/x86_64-linux-gnu/libclang-14.so $headers /usr/bin/g++)
check "libclang-<version>.so is accepted" "" "$(missing_in "$r")"
r=$(fake_tree /usr/lib/llvm-14/lib/libclang.so $headers)
check "no C++ compiler" "g++" "$(missing_in "$r")"
r=$(fake_tree /usr/lib/llvm-14/lib/libclang.so $headers /usr/bin/c++ /usr/bin/redis-cli)
check "redis-server missing for the tests" "redis-server" "$(missing_in "$r" redis)"

# This machine, against dpkg.
if command -v dpkg-query >/dev/null; then
  installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
  lib=$(find_libclang || true)
  if [ -n "$lib" ]; then
    owner=$(dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null | head -n1 | cut -d: -f1)
    check "found $lib belongs to an installed package" "yes" "$( [ -n "$owner" ] && installed "$owner" && echo yes || echo "no ($owner)")"
  else
    check "no libclang found, so libclang-dev is not installed" "no" "$(installed libclang-dev && echo yes || echo no)"
  fi
  if installed libclang-dev; then check "libclang-dev installed, so libclang is found" "found" "$( [ -n "$lib" ] && echo found || echo missing)"; fi
  if installed redis-server; then check "redis-server installed, so it is found" "" "$(missing_packages redis | grep -x redis-server || true)"; fi
fi
echo "setup-detection: $passed passed, $failed failed"
[ "$failed" = 0 ]
