#!/usr/bin/env bash
# Builds the record summary fuzz target with clang (libFuzzer + ASan + UBSan) and runs it for a
# bounded time on a seed corpus of record-shaped JSON.
#
#   run_fuzz_record_summary.sh [seconds]   (default 30; PC_FUZZ_DIR to keep the build and corpus)
#
# Built like run_fuzz.sh, directly with clang++: clang 14 with libstdc++ 12 has no <expected>,
# and record_summary.{hpp,cpp} and the nlohmann oracle do not need it. Exit 77 without clang++.
set -euo pipefail

seconds=${1:-30}
src=$(cd "$(dirname "$0")/../.." && pwd)
command -v clang++ >/dev/null || { echo "skipped: no clang++" >&2; exit 77; }
work=${PC_FUZZ_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pc-fuzz-summary-XXXXXX")}
mkdir -p "$work/corpus" "$work/artifacts"

flags=(-std=c++2b -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$src")
clang++ "${flags[@]}" -o "$work/fuzz_record_summary" \
  "$src/tests/fuzz/fuzz_record_summary.cpp" "$src/common/store/record_summary.cpp"

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

# -error_exitcode: libFuzzer's default (77) would read as "skipped" to CTest.
"$work/fuzz_record_summary" -max_total_time="$seconds" -timeout=10 -error_exitcode=1 \
  -rss_limit_mb=2048 -max_len=16384 -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
  "$work/corpus"
echo "fuzzing finished without findings ($work)"
[ -n "${PC_FUZZ_DIR:-}" ] || rm -rf "$work"
