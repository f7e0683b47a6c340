#!/bin/sh
# corectl list / groups over a store of 100,000 records (target: <= 1 s each).
# usage: bench/bench_corectl.sh [BUILD_DIR] [N]     (default build dir: build, N 100000)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
n=${2:-100000}
corectl=$build/cli/corectl
work=$(mktemp -d /var/tmp/pc-bench-corectl.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
# The summary cache goes into the work directory, never the user's ~/.cache.
export XDG_CACHE_HOME="$work/cache"
mkdir -p "$XDG_CACHE_HOME"
echo "generating $n records in $work/store ..."
/usr/bin/python3 "$here/gen_corectl_store.py" "$work/store" "$n"
du -sh "$work/store"
sleep 3 # directories modified in the last 2 s are never cached
echo "nproc: $(nproc)"
run() {
  label=$1; shift
  best=""
  for i in 1 2 3 4 5; do
    s=$(date +%s.%N)
    "$@" > /dev/null
    e=$(date +%s.%N)
    t=$(echo "$e - $s" | bc)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
    [ "$i" = 1 ] && first=$t
  done
  printf '%-40s first %6.3f s   best of 5 %6.3f s\n' "$label" "$first" "$best"
}
# COLD=1 drops the page cache first (root; machine-wide, so opt-in) to time a cold first run.
if [ "${COLD:-0}" = 1 ]; then
  sync
  echo 3 > /proc/sys/vm/drop_caches && echo "page cache dropped before the first run"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# "first" is without a summary cache (it writes one); "best" uses it.
run "corectl list" "$corectl" --store "$work/store" list
rm -rf "$XDG_CACHE_HOME/process-core"
run "corectl groups" "$corectl" --store "$work/store" groups
run "corectl list (CORECTL_CACHE=0)" env CORECTL_CACHE=0 "$corectl" --store "$work/store" list
run "corectl groups (CORECTL_CACHE=0)" env CORECTL_CACHE=0 "$corectl" --store "$work/store" groups
run "corectl list --exe daemon07 -n 20" "$corectl" --store "$work/store" list --exe daemon07 -n 20
run "corectl list --host host03.example.net" "$corectl" --store "$work/store" list --host host03.example.net
run "corectl list --json | wc" sh -c "\"$corectl\" --store \"$work/store\" list --json | wc -l"
