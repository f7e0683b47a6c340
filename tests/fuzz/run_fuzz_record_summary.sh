#!/usr/bin/env bash
# Runs the record summary fuzz target (libFuzzer + ASan + UBSan, built by tests/fuzz/CMakeLists.txt)
# for a bounded time on a seed corpus of record-shaped JSON.
#
#   run_fuzz_record_summary.sh [seconds]   (default 30; see fuzz_common.sh)
source "$(dirname "$0")/fuzz_common.sh"
seconds=${1:-30}
fuzz_setup fuzz_record_summary

# Seeds: a record as the handler writes it (abridged), and the corners of the grammar.
cat > "$work/corpus/record" <<'JSON'
{
  "comm": "ruby",
  "core": {"access": "owner", "compression": "zstd", "expected_size": null, "path": "h/e/0123456789abcdef.core.zst",
           "present": true, "reason": "truncated", "removed": "2026-11-22T00:00:00Z", "size": 18446744073709551615,
           "stored_size": 4096, "truncated": true},
  "crash": {"fault_address": "0x0", "frames": [{"address": "0x1", "best_effort": true, "module": "/lib/x.so", "offset": null}],
            "module": "/usr/bin/ruby", "module_offset": "0x1234", "si_code": 1, "si_code_name": "SEGV_MAPERR",
            "signature": "0011223344556677", "symbol": {"name": "rb_vm_exec", "offset": "0x42", "verified": true}},
  "executable": "/usr/bin/r\u00fcby \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t",
  "executable_deleted": false, "handler": {"drained_ms": 1.5e-3, "duration_ms": 12.25, "version": "1", "warnings": []},
  "hostname": "web01", "id": "0123456789abcdef", "mappings": [{"build_id": null, "path": "/usr/bin/ruby"}],
  "pid": -9223372036854775808, "schema": 1, "signal": 11, "signal_name": "SEGV",
  "store": {"executable": "usr!bin!ruby", "host": "web01"}, "time": "2026-11-22T02:55:15Z", "uid": 1000
}
JSON
printf '{"crash":{"symbol":"f"},"core":null,"store":[1,-0,1E+2,0.5e-400]}' > "$work/corpus/small"
printf '\xef\xbb\xbf{"id":"\\u0000\xf4\x8f\xbf\xbf"}' > "$work/corpus/bom"

fuzz_run "$seconds" 16384 -timeout=10
