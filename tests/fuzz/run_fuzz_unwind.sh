#!/usr/bin/env bash
# Builds the unwinder fuzz target with clang (libFuzzer + ASan + UBSan) and runs it for a bounded
# time. Built like run_fuzz.sh, directly with clang++ (the unwinder needs no std::expected).
#
#   run_fuzz_unwind.sh [seconds]     (default 30; PC_FUZZ_DIR to keep the build and corpus)
set -euo pipefail

seconds=${1:-30}
src=$(cd "$(dirname "$0")/../.." && pwd)
command -v clang++ >/dev/null || { echo "skipped: no clang++" >&2; exit 77; }
work=${PC_FUZZ_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pc-fuzz-unwind-XXXXXX")}
mkdir -p "$work/corpus" "$work/artifacts"

flags=(-std=c++2b -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$src")
clang++ "${flags[@]}" -o "$work/fuzz_unwind" \
  "$src/tests/fuzz/fuzz_unwind.cpp" "$src/common/crash/unwind.cpp" "$src/common/crash/elf_notes.cpp" \
  "$src/common/crash/symbolize.cpp" "$src/common/base/fd.cpp" -ldw -lelf -llzma

# Seeds: a zero stack (the walk ends at once), a stack of self-pointers (a frame-pointer cycle)
# and a stack of descending words (sp going down).
head -c 8192 /dev/zero > "$work/corpus/zeros"
python3 - "$work/corpus" <<'PY'
import struct, sys
d = sys.argv[1]
base = 0x7ffd00000000
regs = [0] * 27
regs[4] = 0x40; regs[19] = 0
open(f"{d}/cycle", "wb").write(struct.pack("<Q", 0) + struct.pack("<27Q", *regs)
                               + b"".join(struct.pack("<Q", base + 0x40) for _ in range(512)))
open(f"{d}/down", "wb").write(struct.pack("<Q", 1) + struct.pack("<27Q", *regs)
                              + b"".join(struct.pack("<Q", base - 8 * i) for i in range(512)))
PY

"$work/fuzz_unwind" -max_total_time="$seconds" -timeout=10 -error_exitcode=1 -rss_limit_mb=2048 \
  -max_len=16384 -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$work/corpus"
echo "fuzzing finished without findings ($work)"
[ -n "${PC_FUZZ_DIR:-}" ] || rm -rf "$work"
