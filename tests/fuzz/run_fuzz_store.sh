#!/usr/bin/env bash
# Builds one store-reader fuzz target with clang (libFuzzer + ASan + UBSan) and runs it for a
# bounded time on seeds of the file it reads.
#
#   run_fuzz_store.sh record|ledger|cache|usage [seconds]   (default 30; PC_FUZZ_DIR keeps the work)
#
# clang 14 with libstdc++ 12 has no std::expected, which the readers return: expected_shim.hpp
# (force-included) stands in for it in this build only. Exit 77 without clang++.
set -euo pipefail

reader=${1:?record, ledger, cache or usage}
seconds=${2:-30}
src=$(cd "$(dirname "$0")/../.." && pwd)
command -v clang++ >/dev/null || { echo "skipped: no clang++" >&2; exit 77; }
work=${PC_FUZZ_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pc-fuzz-$reader-XXXXXX")}
mkdir -p "$work/corpus" "$work/artifacts"

case $reader in
  record) id=1 ;;
  ledger) id=2 ;;
  cache) id=3 ;;
  usage) id=4 ;;
  *) echo "unknown reader '$reader'" >&2; exit 2 ;;
esac

flags=(-std=c++2b -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -include "$src/tests/fuzz/expected_shim.hpp" -DPC_FUZZ_READER=$id -I"$src" -w)
sources=()
for unit in base/fd base/io base/json_bounds base/escape store/names base/sha256 store/record \
            store/record_summary store/ledger store/store base/atomic_file base/signals; do
  sources+=("$src/common/$unit.cpp")
done
clang++ "${flags[@]}" -o "$work/fuzz_$reader" "$src/tests/fuzz/fuzz_store_readers.cpp" \
  "${sources[@]}" "$src/cli/cache.cpp"

# Seeds (first byte: the shape, then two bytes of depth or repeat count; see the target).
seed() { printf "$1" > "$work/corpus/$2"; cat >> "$work/corpus/$2"; }
case $reader in
  record)
    seed '\x00\x00\x00' record <<'JSON'
{"schema": 1, "id": "0123456789abcdef", "time": "2026-11-22T02:55:15Z", "hostname": "web01",
 "executable": "/usr/bin/ruby", "executable_raw": "!usr!bin!ruby", "executable_deleted": false,
 "signal": 11, "signal_name": "SEGV", "pid": 42, "tid": 42, "uid": 1000, "gid": 1000,
 "comm": "ruby", "cmdline": "ruby x.rb", "dump_mode": 1, "rlimit_core": null,
 "core": {"present": true, "reason": "stored", "path": "web01/usr!bin!ruby/0123456789abcdef.core.zst",
          "size": 4096, "stored_size": 100, "truncated": false, "access": "owner", "compression": "zstd"},
 "crash": {"symbol": {"name": "f", "offset": "0x1", "verified": true}, "frames": [{"address": "0x1"}]},
 "mappings": [{"path": "/usr/bin/ruby", "findings": [{"kind": "replaced", "detail": "x"}]}],
 "container": {"unit": "a.service"}, "store": {"host": "web01", "executable": "usr!bin!ruby"},
 "handler": {"version": "1", "duration_ms": 1.5, "drained_ms": 1, "warnings": ["w"]}}
JSON
    seed '\x01\x00\x40' deep <<< '1'
    seed '\x02\xff\xff' deeper <<< '"x"'
    ;;
  ledger)
    seed '\x00\x00\x00' ledger <<'JSON'
{"schema": 1, "series": [{"hostname": "h", "executable": "/bin/a", "signal": "SEGV",
 "core_present": true, "count": 3, "first": 100, "last": 200}], "pending": ["0123456789abcdef"]}
JSON
    seed '\x01\x10\x00' deep <<< '{}'
    seed '\x03\x00\x10' repeated <<< '{"schema":1,"series":[],"pending":[]}'
    ;;
  cache)
    printf '\x00\x00\x00corectl-summary-cache 1\t/var/lib/process-core\nD\th\te\t1\t2\t3\t0\t0\n' \
      > "$work/corpus/cache"
    seed '\x03\x01\x00' repeated <<< 'D	h	e	1	2	3	0	0'
    ;;
  usage)
    printf '\x00\x00\x00123 456\n' > "$work/corpus/usage"
    printf '\x00\x00\x00-1 0\n' > "$work/corpus/negative"
    ;;
esac

# -error_exitcode: libFuzzer's default (77) would read as "skipped" to CTest.
"$work/fuzz_$reader" -max_total_time="$seconds" -timeout=20 -error_exitcode=1 \
  -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
  "$work/corpus"
echo "fuzzing the $reader reader finished without findings ($work)"
[ -n "${PC_FUZZ_DIR:-}" ] || rm -rf "$work"
