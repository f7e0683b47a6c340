#!/usr/bin/env bash
# Runs one store-reader fuzz target (libFuzzer + ASan + UBSan, built by tests/fuzz/CMakeLists.txt)
# for a bounded time on seeds of the file it reads.
#
#   run_fuzz_store.sh record|ledger|cache|usage|view [seconds]   (default 30; see fuzz_common.sh)
source "$(dirname "$0")/fuzz_common.sh"
reader=${1:?record, ledger, cache, usage or view}
seconds=${2:-30}
case $reader in
  record | ledger | cache | usage | view) ;;
  *) echo "unknown reader '$reader'" >&2; exit 2 ;;
esac
fuzz_setup fuzz_store_"$reader"

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
  view)
    printf '\x00\x00\x000123456789abcdef\n../../web01/usr!bin!ruby/0123456789abcdef.json' \
      > "$work/corpus/view"
    printf '\x00\x00\x000123456789abcdef\n../../../etc/0123456789abcdef.json' > "$work/corpus/up"
    ;;
esac

fuzz_run "$seconds" 65536 -timeout=20
