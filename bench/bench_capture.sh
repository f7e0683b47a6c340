#!/usr/bin/env bash
# Capture benchmark: process-core against the zstd CLI on the same core, in one run.
#
#   bench/bench_capture.sh [BUILD_DIR] [HEAP_MIB]
#
# Makes a realistic core (pc_crasher with a heap of HEAP_MIB MiB, half compressible text and
# half random bytes, dumped with gcore), then pipes it from the page cache into
#   - process-core (the handler, as the kernel would run it, minus the kernel), and
#   - zstd -1 -T1 (the peer baseline: the same level, one worker),
# several times each, and prints wall time, output size and peak RSS of both, and the ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
heap=${2:-400}
runs=${RUNS:-3}
handler=$build/handler/process-core
crasher=$build/tests/pc_crasher
for tool in gcore zstd /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
[ -x "$handler" ] && [ -x "$crasher" ] || { echo "bench: build first ($handler)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/pc-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$crasher" sleep 120 --heap "$heap" &
pid=$!
sleep $((heap / 200 + 1))
gcore -o "$work/core" "$pid" >/dev/null 2>&1
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
core="$work/core.$pid"
size=$(stat -c %s "$core")
cat "$core" >/dev/null # into the page cache: both tools read the same cached bytes

printf 'store = %s/store\nuser =\nrate_limit_burst = 0\nkeep_free = 0\nmax_use = 100%%\n' "$work" >"$work/pc.conf"
mkdir -p "$work/store"

# Runs "$@" with the core on a pipe; prints "wall_seconds max_rss_kib".
measure() {
  local out=$work/time.txt
  /usr/bin/time -f '%e %M' -o "$out" bash -c 'cat "$0" | "${@:1}"' "$core" "$@"
  cat "$out"
}

best() { sort -n | head -1; }

pc_times=() zstd_times=() pc_rss=0 zstd_rss=0
for i in $(seq "$runs"); do
  rm -rf "$work/store"/*
  read -r t m < <(measure "$handler" --config "$work/pc.conf" -P1 -u0 -g0 -d1 -- bench 11 '!usr!bin!bench')
  pc_times+=("$t"); pc_rss=$(( m > pc_rss ? m : pc_rss ))
  read -r t m < <(measure sh -c "zstd -q -1 -T1 -c > '$work/core.zst'")
  zstd_times+=("$t"); zstd_rss=$(( m > zstd_rss ? m : zstd_rss ))
done
pc_out=$(stat -c %s "$work"/store/*/*/*.core.zst)
zstd_out=$(stat -c %s "$work/core.zst")
pc_t=$(printf '%s\n' "${pc_times[@]}" | best)
zstd_t=$(printf '%s\n' "${zstd_times[@]}" | best)
zstd -dc "$work"/store/*/*/*.core.zst | cmp -s - "$core" || { echo "bench: stored core differs" >&2; exit 1; }

awk -v size="$size" -v pt="$pc_t" -v zt="$zstd_t" -v po="$pc_out" -v zo="$zstd_out" \
    -v pr="$pc_rss" -v zr="$zstd_rss" -v runs="$runs" 'BEGIN {
  printf "core: %.1f MiB (heap %s), best of %d runs, input from the page cache through a pipe\n", size/1048576, "'"$heap"' MiB", runs
  printf "%-22s %10s %12s %10s %12s\n", "", "wall (s)", "output (MiB)", "ratio", "peak RSS (MiB)"
  printf "%-22s %10.2f %12.1f %10.2f %12.1f\n", "process-core", pt, po/1048576, size/po, pr/1024
  printf "%-22s %10.2f %12.1f %10.2f %12.1f\n", "zstd -1 -T1", zt, zo/1048576, size/zo, zr/1024
  printf "time ratio process-core / zstd: %.2f   (target <= 1.00)\n", pt/zt
  printf "compression ratio process-core / zstd: %.3f   (target >= 1.000)\n", (size/po)/(size/zo)
  printf "peak RSS process-core: %.1f MiB   (target <= 32)\n", pr/1024
}'
