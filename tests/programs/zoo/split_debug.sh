#!/bin/sh
# split_debug.sh <binary> <debug-dir>: moves the binary's DWARF and symbols to
# <debug-dir>/.build-id/xx/rest.debug (the layout Debian's -dbgsym packages use) and strips it.
set -eu
bin=$1
dir=$2
id=$(readelf -n "$bin" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p' | head -n 1)
[ -n "$id" ] || { echo "split_debug.sh: $bin has no build-id" >&2; exit 1; }
sub=$(printf %s "$id" | cut -c1-2)
rest=$(printf %s "$id" | cut -c3-)
rm -rf "$dir/.build-id" # debug files of earlier builds
mkdir -p "$dir/.build-id/$sub"
objcopy --only-keep-debug "$bin" "$dir/.build-id/$sub/$rest.debug"
objcopy --strip-all --add-gnu-debuglink="$dir/.build-id/$sub/$rest.debug" "$bin"
