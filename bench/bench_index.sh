#!/bin/sh
# corectl list / groups from the store's index against today's file scan, 100,000 records,
# page cache dropped before each cold run (root; machine-wide). Targets: cold <= 1 s, warm
# <= 0.3 s. Prints the index's size and each run's peak RSS; the median of 3 cold and 5 warm
# runs, each index run beside the file scan's in the same run.
# usage: bench/bench_index.sh [BUILD_DIR] [N]     (default build dir: build, N 100000)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
n=${2:-100000}
corectl=$build/cli/corectl
work=$(mktemp -d /var/tmp/pc-bench-index.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
echo "generating $n records in $work/store ..."
/usr/bin/python3 "$here/gen_corectl_store.py" "$work/store" "$n"
du -sh "$work/store"
sleep 3 # directories modified in the last 2 s are never indexed
# The per-user cache is off for both: the file scan is what a cold start does today.
export CORECTL_CACHE=0
# The first run as the store's owner writes the index.
"$corectl" --store "$work/store" list > /dev/null
du -sh "$work/store/.index"
cold() {
  label=$1; shift
  for i in 1 2 3; do
    sync
    echo 3 > /proc/sys/vm/drop_caches
    /usr/bin/time -f "$label cold: %e s (user %U s, sys %S s), peak RSS %M KiB" "$@" > /dev/null
  done 2>&1 | sort -t: -k2 -n | sed -n 2p # the median of 3
}
warm() {
  label=$1; shift
  "$@" > /dev/null
  for i in 1 2 3 4 5; do
    /usr/bin/time -f "$label warm: %e s (user %U s, sys %S s), peak RSS %M KiB" "$@" > /dev/null
  done 2>&1 | sort -t: -k2 -n | sed -n 3p # the median of 5
}
for verb in list groups; do
  cold "index  $verb" "$corectl" --store "$work/store" "$verb"
  cold "files  $verb" env CORECTL_INDEX=0 "$corectl" --store "$work/store" "$verb"
  warm "index  $verb" "$corectl" --store "$work/store" "$verb"
  warm "files  $verb" env CORECTL_INDEX=0 "$corectl" --store "$work/store" "$verb"
done
