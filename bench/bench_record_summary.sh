#!/bin/sh
# The record summary reader in the tree against an earlier one from git, on a store of N records.
# usage: bench/bench_record_summary.sh [BUILD_DIR] [N] [RUNS]
#        (defaults: build, 100000, 5; OLD_REV=<commit> picks the baseline, COLD=1 adds cold runs)
#
# Both readers are compiled here the same way (g++ -O2 -g, as RelWithDebInfo) with
# record_summary_bench.cpp, each with its own record_summary{,_view}.{hpp,cpp}, and linked
# against BUILD_DIR's pc_store and pc_base for the rest. The baseline's files are taken from git
# into a temporary directory: by default from the parent of the commit that replaced the
# hand-written JSON lexer. The two binaries run in turn (new, old, new, old ...) and the script
# prints the median of RUNS runs of each and their ratio. COLD=1 (root; machine-wide) also runs
# both with the page cache dropped before every run.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
n=${2:-100000}
runs=${3:-5}
for lib in common/store/libpc_store.a common/base/libpc_base.a; do
  if [ ! -f "$build/$lib" ]; then
    echo "$build/$lib is missing: build the pc_store target first" >&2
    exit 1
  fi
done
if [ -z "${OLD_REV:-}" ]; then
  # The newest commit that changed how often 'class Reader' (the lexer's cursor) occurs is the
  # one that removed it.
  removed=$(git -C "$src" log -1 --format=%H -S'class Reader' -- common/store/record_summary.cpp)
  OLD_REV=$removed^
fi
work=$(mktemp -d /var/tmp/pc-bench-summary.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

# compile NAME ROOT: the bench binary $work/bench-NAME with ROOT's summary reader.
compile() {
  nice g++ -std=c++23 -O2 -g -DNDEBUG -I"$2" -I"$src" -I"$build" -o "$work/bench-$1" \
    "$here/record_summary_bench.cpp" "$2/common/store/record_summary.cpp" \
    "$2/common/store/record_summary_view.cpp" \
    "$build/common/store/libpc_store.a" "$build/common/base/libpc_base.a" \
    -lspdlog -lfmt -lsystemd
}
mkdir -p "$work/old/common/store"
for f in record_summary.hpp record_summary.cpp record_summary_view.hpp record_summary_view.cpp; do
  git -C "$src" show "$OLD_REV:common/store/$f" > "$work/old/common/store/$f"
done
echo "baseline: $(git -C "$src" log -1 --format='%h %s' "$OLD_REV")"
compile new "$src"
compile old "$work/old"

echo "generating $n records in $work/store ..."
/usr/bin/python3 "$here/gen_corectl_store.py" "$work/store" "$n"
du -sh "$work/store"
sync

# run KIND: RUNS pairs, new then old; a line per run, then the medians and ratios.
run() {
  : > "$work/$1.new"
  : > "$work/$1.old"
  i=0
  while [ "$i" -lt "$runs" ]; do
    for which in new old; do
      if [ "$1" = cold ]; then
        echo 3 > /proc/sys/vm/drop_caches
      fi
      line=$("$work/bench-$which" "$work/store" 5)
      echo "$1 $which: $line"
      echo "$line" >> "$work/$1.$which"
    done
    i=$((i + 1))
  done
  # Fields 6 and 9 of a line: read+parse and parse-only seconds.
  med() { cut -d' ' -f"$2" "$1" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
  for field in 6 9; do
    new=$(med "$work/$1.new" $field)
    old=$(med "$work/$1.old" $field)
    label=$([ $field = 6 ] && echo "read+parse" || echo "parse-only")
    printf '%-5s %-10s median of %s: new %6.3f s  old %6.3f s  new/old %.2f\n' \
      "$1" "$label" "$runs" "$new" "$old" "$(echo "$new / $old" | bc -l)"
  done
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$work/bench-new" "$work/store" 1 > /dev/null # the page cache holds the store after this
run warm
if [ "${COLD:-0}" = 1 ]; then
  run cold
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
