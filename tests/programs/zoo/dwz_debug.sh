#!/bin/sh
# dwz_debug.sh <binary> <twin> <debug-dir>: shares the DWARF of <binary> and of a copy of <twin>
# (built from the same source) through a DWZ alternate file, <debug-dir>/.dwz/zoo.debug, which
# the binary's .gnu_debugaltlink names by that absolute path (as Debian's dh_dwz does), then
# splits the binary's debug file into <debug-dir>/.build-id/xx/rest.debug and strips it.
set -eu
bin=$1
twin=$2
dir=$3
rm -rf "$dir"
mkdir -p "$dir/.dwz"
cp "$twin" "$dir/twin"
dwz -m "$dir/.dwz/zoo.debug" -M "$dir/.dwz/zoo.debug" "$bin" "$dir/twin"
rm -f "$dir/twin"
readelf -S "$bin" | grep -q gnu_debugaltlink || { echo "dwz_debug.sh: no alternate file" >&2; exit 1; }
sh "$(dirname "$0")/split_debug.sh" "$bin" "$dir"
