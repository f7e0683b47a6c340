#!/usr/bin/env bash
# Runs the --since/--until parser's fuzz target (libFuzzer + ASan + UBSan, built by
# tests/fuzz/CMakeLists.txt) for a bounded time on seeds of every form it reads.
#
#   run_fuzz_when.sh [seconds]   (default 20; see fuzz_common.sh)
source "$(dirname "$0")/fuzz_common.sh"
seconds=${1:-20}
fuzz_setup fuzz_when

i=0
for seed in "-2h" "2 hours ago" "1h30min" "+10min" "3 weeks left" "08:00" "yesterday 14:00" \
            "today" "tomorrow 23:59:59" "2026-11-22" "2026-11-22 10:30" "2026-11-22T10:30:00Z" \
            "2026-11-22T10:30:00+02:00" "2026-11-22 10:30 UTC" "@1763780000" "now" \
            "4294967296y 4294967296y"; do
  printf '\x80\x1d\x21\x69%s' "$seed" > "$work/corpus/seed$((i++))"
done

# TZ fixed: local times go through mktime.
TZ=Europe/Berlin fuzz_run "$seconds" 128 -timeout=10
