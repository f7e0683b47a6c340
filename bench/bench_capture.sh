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
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

# A core written by the kernel itself (notes first, as the handler sees it) when we may set
# core_pattern: under the test suite's lock, always restoring the previous pattern. Otherwise
# gcore (gdb writes the notes last, so build-ids and stack frames are not scanned).
lock=/run/lock/process-core-tests.lock
if [ "$(id -u)" = 0 ] && [ -w /proc/sys/kernel/core_pattern ]; then
  source=kernel
  exec 9>"$lock"
  flock 9
  previous=$(cat /proc/sys/kernel/core_pattern)
  trap 'echo "$previous" > /proc/sys/kernel/core_pattern; rm -rf "$work"' EXIT
  trap 'exit 1' INT TERM
  echo "|/usr/bin/dd of=$work/core.kernel bs=1M status=none" > /proc/sys/kernel/core_pattern
  (ulimit -c unlimited; "$crasher" segv-after $((heap / 200 + 1)) --heap "$heap" 2>/dev/null) || true
  for _ in $(seq 100); do [ -s "$work/core.kernel" ] && ! pgrep -x dd >/dev/null && break; sleep 0.1; done
  echo "$previous" > /proc/sys/kernel/core_pattern
  flock -u 9
  core="$work/core.kernel"
else
  source=gcore
  "$crasher" sleep 120 --heap "$heap" &
  pid=$!
  sleep $((heap / 200 + 1))
  gcore -o "$work/core" "$pid" >/dev/null 2>&1
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  core="$work/core.$pid"
fi
size=$(stat -c %s "$core")
cat "$core" >/dev/null # into the page cache: both tools read the same cached bytes

# The handler drops root to a store user as it does in production (an empty user is refused):
# nobody, owning the store. Its own capture slots, so the installed handler's never count.
printf 'store = %s/store\nuser = nobody\nruntime_dir = %s/run\nrate_limit_burst = 0\nkeep_free = 0\nmax_use = 100%%\n' \
  "$work" "$work" >"$work/pc.conf"
mkdir -p "$work/store"
chown nobody "$work/store"

# Runs "$@" with the core on a pipe; prints "wall_seconds max_rss_kib".
measure() {
  local out=$work/time.txt
  /usr/bin/time -f '%e %M' -o "$out" bash -c 'cat "$0" | "${@:1}"' "$core" "$@"
  cat "$out"
}

best() { sort -n | head -1; }

pc_times=() drain_times=() zstd_times=() pc_rss=0 zstd_rss=0
for i in $(seq "$runs"); do
  rm -rf "$work/store"/*
  read -r t m < <(measure "$handler" --config "$work/pc.conf" -P1 -u0 -g0 -d1 -- bench 11 '!usr!bin!bench')
  pc_times+=("$t"); pc_rss=$(( m > pc_rss ? m : pc_rss ))
  drain_times+=("$(sed -n 's/.*"drained_ms": \([0-9.]*\).*/\1/p' "$work"/store/*/*/*.json)")
  read -r t m < <(measure sh -c "zstd -q -1 -T1 -c > '$work/core.zst'")
  zstd_times+=("$t"); zstd_rss=$(( m > zstd_rss ? m : zstd_rss ))
done
pc_out=$(stat -c %s "$work"/store/*/*/*.core.zst)
zstd_out=$(stat -c %s "$work/core.zst")
pc_t=$(printf '%s\n' "${pc_times[@]}" | best)
drain_t=$(printf '%s\n' "${drain_times[@]}" | best)
# The scanner alone on the same bytes, against plain reading of them.
scan_t=$( { /usr/bin/time -f '%e' "$build/tests/scan_core" <"$core" >/dev/null; } 2>&1 | tail -1)
read_t=$( { /usr/bin/time -f '%e' cat "$core" >/dev/null; } 2>&1 | tail -1)
zstd_t=$(printf '%s\n' "${zstd_times[@]}" | best)
zstd -dc "$work"/store/*/*/*.core.zst | cmp -s - "$core" || { echo "bench: stored core differs" >&2; exit 1; }

awk -v size="$size" -v pt="$pc_t" -v zt="$zstd_t" -v po="$pc_out" -v zo="$zstd_out" \
    -v pr="$pc_rss" -v zr="$zstd_rss" -v runs="$runs" -v dt="$drain_t" -v st="$scan_t" \
    -v rt="$read_t" -v src="$source" 'BEGIN {
  printf "core: %.1f MiB (heap %s, written by %s), best of %d runs, from the page cache through a pipe\n", size/1048576, "'"$heap"' MiB", src, runs
  printf "%-22s %10s %12s %10s %12s\n", "", "wall (s)", "output (MiB)", "ratio", "peak RSS (MiB)"
  printf "%-22s %10.2f %12.1f %10.2f %12.1f\n", "process-core", pt, po/1048576, size/po, pr/1024
  printf "%-22s %10.2f %12.1f %10.2f %12.1f\n", "zstd -1 -T1", zt, zo/1048576, size/zo, zr/1024
  printf "process-core stream drained after %.2f s; the rest is fsync of core and record, and analysis\n", dt/1000
  printf "time ratio process-core / zstd, whole run (durable on disk vs page cache): %.2f\n", pt/zt
  printf "time ratio process-core / zstd, until the stream is drained: %.2f   (target <= 1.00)\n", dt/1000/zt
  printf "scanner alone: %.2f s vs %.2f s to read the core (%.1f%% of the handler run)\n", st, rt, (st>rt ? (st-rt)/pt*100 : 0)
  printf "compression ratio process-core / zstd: %.3f   (target >= 1.000)\n", (size/po)/(size/zo)
  printf "peak RSS process-core: %.1f MiB   (target <= 32)\n", pr/1024
}'
