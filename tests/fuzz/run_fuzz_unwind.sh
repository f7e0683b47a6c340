#!/usr/bin/env bash
# Runs the unwinder fuzz target (libFuzzer + ASan + UBSan, built by tests/fuzz/CMakeLists.txt) for a
# bounded time.
#
#   run_fuzz_unwind.sh [seconds]     (default 30; see fuzz_common.sh)
source "$(dirname "$0")/fuzz_common.sh"
seconds=${1:-30}
fuzz_setup fuzz_unwind

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

fuzz_run "$seconds" 16384 -timeout=10
