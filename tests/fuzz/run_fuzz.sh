#!/usr/bin/env bash
# Runs the ELF core scanner fuzz target (libFuzzer + ASan + UBSan, built by tests/fuzz/CMakeLists.txt)
# for a bounded time on a seed corpus of real core prefixes.
#
#   run_fuzz.sh [seconds]          (default 60; see fuzz_common.sh for PC_FUZZ_BIN, PC_FUZZ_DIR)
source "$(dirname "$0")/fuzz_common.sh"
seconds=${1:-60}
fuzz_setup fuzz_elf_core

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

fuzz_run "$seconds" 131072 -timeout=10
