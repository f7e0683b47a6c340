#!/bin/sh
# bench_ownership.sh [BUILD] [N]: the handler's package lookup for N mapped paths (60 by default:
# shared objects dpkg lists, named as a merged-/usr map names them) against one `dpkg -S` call
# with the same paths. Builds ownership_bench.cpp against BUILD's pc_packages and pc_base.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
n=${2:-60}
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
printf 'process-core: '
"$tmp/bench" 10 <"$tmp/paths"
best=
for i in 1 2 3; do
  s=$(date +%s%N)
  # dpkg -S with the names dpkg lists (it does not know the /usr aliases of merged-/usr files).
  xargs dpkg -S <"$tmp/listed" >/dev/null 2>&1 || true
  e=$(( ($(date +%s%N) - s) / 1000000 ))
  if [ -z "$best" ] || [ "$e" -lt "$best" ]; then best=$e; fi
done
echo "dpkg -S, one call, best of 3: $best ms"
