#!/usr/bin/env bash
# Runs the Python stack walker's fuzz target (libFuzzer + ASan + UBSan, built by
# tests/fuzz/CMakeLists.txt) for a bounded time, from seeds of each layout.
#
#   run_fuzz_python.sh [seconds]   (default 20; see fuzz_common.sh)
source "$(dirname "$0")/fuzz_common.sh"
seconds=${1:-20}
fuzz_setup fuzz_python_walker

# One seed per layout: zeros (an empty interpreter list) and a runtime pointing into itself.
for minor in 0 1 2; do
  printf "\\x$(printf %02x $minor)" > "$work/corpus/zero$minor"
  head -c 4096 /dev/zero >> "$work/corpus/zero$minor"
  printf "\\x$(printf %02x $minor)" > "$work/corpus/self$minor"
  for _ in $(seq 64); do printf '\x00\x01\x00\x00\x00\x7f\x00\x00'; done >> "$work/corpus/self$minor"
done

fuzz_run "$seconds" 8192 -timeout=10
