#!/usr/bin/env bash
# Builds the --since/--until parser's fuzz target with clang (libFuzzer + ASan + UBSan) and runs
# it for a bounded time on seeds of every form it reads.
#
#   run_fuzz_when.sh [seconds]   (default 20; PC_FUZZ_DIR to keep the build and corpus)
#
# Built directly with clang++ like run_fuzz.sh; cli/when.cpp needs no <expected>, which clang 14
# with libstdc++ 12 lacks. Exit 77 without clang++.
set -euo pipefail

seconds=${1:-20}
src=$(cd "$(dirname "$0")/../.." && pwd)
command -v clang++ >/dev/null || { echo "skipped: no clang++" >&2; exit 77; }
work=${PC_FUZZ_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pc-fuzz-when-XXXXXX")}
mkdir -p "$work/corpus" "$work/artifacts"

flags=(-std=c++2b -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$src")
clang++ "${flags[@]}" -o "$work/fuzz_when" "$src/tests/fuzz/fuzz_when.cpp" "$src/cli/when.cpp" \
  "$src/common/units.cpp"

i=0
for seed in "-2h" "2 hours ago" "1h30min" "+10min" "3 weeks left" "08:00" "yesterday 14:00" \
            "today" "tomorrow 23:59:59" "2026-11-22" "2026-11-22 10:30" "2026-11-22T10:30:00Z" \
            "2026-11-22T10:30:00+02:00" "2026-11-22 10:30 UTC" "@1763780000" "now" \
            "4294967296y 4294967296y"; do
  printf '\x80\x1d\x21\x69%s' "$seed" > "$work/corpus/seed$((i++))"
done

# TZ fixed: local times go through mktime. -error_exitcode: libFuzzer's 77 reads as "skipped".
TZ=Europe/Berlin "$work/fuzz_when" -max_total_time="$seconds" -timeout=10 -error_exitcode=1 \
  -rss_limit_mb=2048 -max_len=128 -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
  "$work/corpus"
echo "fuzzing finished without findings ($work)"
[ -n "${PC_FUZZ_DIR:-}" ] || rm -rf "$work"
