# Detection of what building and testing damocles-rs needs. Sourced by scripts/setup.sh and by
# scripts/check-setup.sh (which proves it against the package state). Every function looks below
# "${DETECT_ROOT:-}" so a test can point it at a fake file tree.

# The directories clang-sys 1.9 (build/common.rs, DIRECTORIES_LINUX) searches for libclang.
libclang_search_dirs() {
  local root="${DETECT_ROOT:-}"
  if [ -n "${LIBCLANG_PATH:-}" ]; then echo "${root}${LIBCLANG_PATH}"; fi
  local pattern
  for pattern in /usr/local/llvm*/lib* /usr/local/lib*/*/* /usr/local/lib*/* /usr/local/lib* \
                 /usr/lib*/*/* /usr/lib*/* /usr/lib*; do
    # shellcheck disable=SC2086 # the pattern is meant to glob
    for d in ${root}${pattern}; do [ -d "$d" ] && echo "$d"; done
  done
}

# Prints the first libclang that bindgen can link (rust-librocksdb-sys builds bindgen without its `runtime`
# feature, so clang-sys accepts only `libclang.so` or `libclang-<version>.so`, never `libclang.so.1`
# and never `libclang-cpp.so.14`, which is the C++ API library and not libclang). Fails when none.
find_libclang() {
  local d f
  while read -r d; do
    for f in "$d"/libclang.so "$d"/libclang-*.so; do
      [ -e "$f" ] || continue
      case "$(basename "$f")" in
        libclang.so) echo "$f"; return 0 ;;
        libclang-*.so)
          # Only a version may follow the dash: libclang-14.so, libclang-14.0.6.so.
          if [[ "$(basename "$f")" =~ ^libclang-[0-9][0-9.]*\.so$ ]]; then echo "$f"; return 0; fi ;;
      esac
    done
  done < <(libclang_search_dirs)
  return 1
}

# Clang's own headers (stddef.h …), which bindgen needs beside libclang; Debian ships them in
# libclang-common-<N>-dev, which libclang-dev pulls in.
find_clang_headers() {
  local f
  for f in "${DETECT_ROOT:-}"/usr/lib/llvm-*/lib/clang/*/include/stddef.h \
           "${DETECT_ROOT:-}"/usr/lib/clang/*/include/stddef.h \
           "${DETECT_ROOT:-}"/usr/local/lib/clang/*/include/stddef.h; do
    [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

# Prints the path of command $1: on PATH, or (with DETECT_ROOT) only under that root's bin directories.
find_command() {
  if [ -n "${DETECT_ROOT:-}" ]; then
    local d
    for d in /usr/local/bin /usr/bin /bin; do
      [ -x "$DETECT_ROOT$d/$1" ] && { echo "$DETECT_ROOT$d/$1"; return 0; }
    done
    return 1
  fi
  command -v "$1" 2>/dev/null
}

# A C++ compiler for RocksDB (the cc crate tries $CXX, then c++).
find_cxx() {
  local c
  for c in ${CXX:-} c++ g++ clang++; do find_command "$c" && return 0; done
  return 1
}

# Prints the Debian packages missing for a build (one per line); with "redis" also those for the tests.
missing_packages() {
  if ! find_libclang >/dev/null || ! find_clang_headers >/dev/null; then echo libclang-dev; fi
  find_cxx >/dev/null || echo g++
  if [ "${1:-}" = redis ]; then
    find_command redis-server >/dev/null || echo redis-server
    find_command redis-cli >/dev/null || echo redis-tools
  fi
  return 0
}
