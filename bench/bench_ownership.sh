#!/bin/sh
# bench_ownership.sh [BUILD] [N] [RUNS]: the handler's package lookup for N mapped paths (60 by
# default: shared objects dpkg lists, named as a merged-/usr map names them) without an index,
# with the index built (cold) and with the index kept from the previous crash (warm), against
# one `dpkg -S` call with the same paths; medians of RUNS (11) runs each. Builds
# ownership_bench.cpp against BUILD's pc_packages and pc_base.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
n=${2:-60}
runs=${3:-11}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
c++ -std=c++23 -O2 -I"$here/.." -I"$build" "$here/ownership_bench.cpp" \
  "$build/common/packages/libpc_packages.a" "$build/common/base/libpc_base.a" \
  $(pkg-config --libs spdlog fmt 2>/dev/null || echo -lspdlog -lfmt) -o "$tmp/bench"
# Shared objects of installed packages, spelled with /usr as the loader's map shows them.
cat /var/lib/dpkg/info/*.list | grep -E '^/(usr/)?lib/.*\.so(\.[0-9]+)*$' | sort -u |
  while read -r p; do [ -f "$p" ] && echo "$p"; done | head -n "$n" >"$tmp/listed"
sed -E 's,^/lib/,/usr/lib/,' "$tmp/listed" >"$tmp/paths"
echo "paths: $(wc -l <"$tmp/paths"), dpkg .list files: $(ls /var/lib/dpkg/info/*.list | wc -l)"
"$tmp/bench" "$runs" <"$tmp/paths"
: >"$tmp/times"
i=0
while [ "$i" -lt "$runs" ]; do
  s=$(date +%s%N)
  # dpkg -S with the names dpkg lists (it does not know the /usr aliases of merged-/usr files).
  xargs dpkg -S <"$tmp/listed" >/dev/null 2>&1 || true
  echo $(( ($(date +%s%N) - s) / 100000 )) >>"$tmp/times"
  i=$((i + 1))
done
sort -n "$tmp/times" | awk -v runs="$runs" '{ t[NR] = $1 } END {
  m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
  printf "dpkg -S, one call: median of %d %.1f ms\n", runs, m / 10 }'
