#!/usr/bin/env bash
# Runs the perf map parser's fuzz target (libFuzzer + ASan + UBSan, built by
# tests/fuzz/CMakeLists.txt) for a bounded time on seeds of the forms V8 and CPython write.
#
#   run_fuzz_perf_map.sh [seconds]   (default 20; see fuzz_common.sh)
source "$(dirname "$0")/fuzz_common.sh"
seconds=${1:-20}
fuzz_setup fuzz_perf_map

# One address (0x7f7684023b90), then a map.
printf '\x01\x90\x3b\x02\x84\x76\x7f\x00\x00%s' \
  $'7f7684023b80 378 JS:~parse /srv/app.js:2:15\n24d763e4fe26 23 JS:~parse /srv/app.js:2:15\n' \
  > "$work/corpus/v8"
printf '\x01\x90\x3b\x02\x84\x76\x7f\x00\x00%s' \
  $'7f7684023b80 b py::handle_request:/srv/app/service.py\n0x7f7684023b80 0x20 new\n' \
  > "$work/corpus/cpython"
printf '\x02\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff%s' \
  $'0 ffffffffffffffff all\nffffffffffffff00 100 top\n\r\n \n' > "$work/corpus/edges"

fuzz_run "$seconds" 4096 -timeout=10
