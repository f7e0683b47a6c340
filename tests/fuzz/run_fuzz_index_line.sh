#!/usr/bin/env bash
# Runs the index line reader's fuzz target (libFuzzer + ASan + UBSan, built by
# tests/fuzz/CMakeLists.txt) for a bounded time on seeds of both index formats.
#
#   run_fuzz_index_line.sh [seconds]   (default 20; see fuzz_common.sh)
source "$(dirname "$0")/fuzz_common.sh"
seconds=${1:-20}
fuzz_setup fuzz_index_line

base='"id":"0123456789abcdef","time":"2026-12-04T01:02:03Z","node":"node-x","host":"web-2","exe":"!usr!bin!worker","hostname":"web-2","executable":"/usr/bin/worker","signal":"SEGV","signature":"","core_size":100'
keys='"record":"fleet/node-x/web-2/!usr!bin!worker/0123456789abcdef.json","core":"fleet/node-x/web-2/!usr!bin!worker/0123456789abcdef.core.zst"'
summary='"signo":11,"pid":42,"uid":1000,"comm":"worker","executable_deleted":false,"core_present":true,"core_reason":"stored","core_removed":false,"core_dump_size":4096,"site":"f"'
printf '\x01{%s,%s}' "$base" "$keys" > "$work/corpus/first-format"
printf '\x01{%s,%s,%s}' "$base" "$keys" "$summary" > "$work/corpus/summary"
printf '\x01{%s,%s,%s}' "$base" "$keys" "${summary/4096/\"big\"}" > "$work/corpus/typed"
printf '\x00{%s,"record":"node-x/web-2/!usr!bin!worker/0123456789abcdef.json","core":""}' \
  "$base" > "$work/corpus/no-prefix"

fuzz_run "$seconds" 70000 -timeout=10
