#!/usr/bin/env bash
# Builds the ELF core scanner fuzz target with clang (libFuzzer + ASan + UBSan) and runs it for a
# bounded time on a seed corpus of real core prefixes.
#
#   run_fuzz.sh [seconds]          (default 60; PC_FUZZ_DIR to keep the build and corpus)
#
# Compiled directly with clang++ rather than through CMake: the main build uses g++. clang 14
# with libstdc++ 12 has no <expected>, so only sources free of std::expected are linked here
# (the scanner, note decoders, symbolizer, unwinder, JSON, names, sha256, fd). Exit 77 (skipped) without clang++.
set -euo pipefail

seconds=${1:-60}
src=$(cd "$(dirname "$0")/../.." && pwd)
command -v clang++ >/dev/null || { echo "skipped: no clang++" >&2; exit 77; }
work=${PC_FUZZ_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pc-fuzz-XXXXXX")}
mkdir -p "$work/corpus" "$work/artifacts"

flags=(-std=c++2b -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$src")
clang++ "${flags[@]}" -o "$work/fuzz_elf_core" \
  "$src/tests/fuzz/fuzz_elf_core.cpp" "$src/common/crash/elf_core.cpp" "$src/common/crash/elf_notes.cpp" \
  "$src/common/crash/crash_json.cpp" "$src/common/crash/symbolize.cpp" "$src/common/base/fd.cpp" \
  "$src/common/store/names.cpp" "$src/common/base/escape.cpp" "$src/common/base/sha256.cpp" \
  "$src/common/crash/unwind.cpp" "$src/common/crash/analysis.cpp" "$src/common/crash/signature.cpp" -ldw -lelf -llzma

# Seeds: the first 64 KiB of real cores (kernel file cores when core_pattern is a plain file
# name, else gdb's), plus a few small hand-made prefixes.
seed_dir="$work/seed-run"
mkdir -p "$seed_dir"
printf 'int main(void){ volatile int *p = 0; return *p; }\n' > "$seed_dir/c.c"
if cc -O0 -g -o "$seed_dir/c" "$seed_dir/c.c" 2>/dev/null; then
  pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo "|")
  if [[ "$pattern" != \|* && "$pattern" != /* && -n "$pattern" ]]; then
    (cd "$seed_dir" && ulimit -c unlimited && exec ./c) 2>/dev/null || true
  fi
  core=$(find "$seed_dir" -maxdepth 1 -type f -name 'core*' | head -n 1)
  if [ -z "$core" ] && command -v gdb >/dev/null; then
    gdb -nx -batch -ex run -ex "generate-core-file $seed_dir/core" --args "$seed_dir/c" \
      >/dev/null 2>&1 || true
    core="$seed_dir/core"
  fi
  if [ -f "$core" ]; then
    head -c 65536 "$core" > "$work/corpus/real-64k"
    head -c 4096 "$core" > "$work/corpus/real-4k"
    head -c 1024 "$core" > "$work/corpus/real-1k"
  fi
fi
rm -rf "$seed_dir"
printf '\x7fELF\x02\x01\x01' > "$work/corpus/magic"

# -error_exitcode: libFuzzer's default (77) would read as "skipped" to CTest.
"$work/fuzz_elf_core" -max_total_time="$seconds" -timeout=10 -error_exitcode=1 -rss_limit_mb=2048 \
  -max_len=131072 -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$work/corpus"
echo "fuzzing finished without findings ($work)"
[ -n "${PC_FUZZ_DIR:-}" ] || rm -rf "$work"
