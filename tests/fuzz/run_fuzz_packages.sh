#!/usr/bin/env bash
# Runs the package lookup's fuzz target (libFuzzer + ASan + UBSan, built by
# tests/fuzz/CMakeLists.txt) for a bounded time on seeds of each database it reads.
#
#   run_fuzz_packages.sh [seconds]   (default 20; see fuzz_common.sh)
source "$(dirname "$0")/fuzz_common.sh"
seconds=${1:-20}
fuzz_setup fuzz_packages

printf 'Package: pkg\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:2.0~rc1-1\n\n\n--\n/.\n/lib/x86_64-linux-gnu/libc.so.6\n/usr/bin/sh\n\n--\nx/y.so,sha256=abc,10\n"x/z,1.py",,\n\n--\n{"name": "p", "version": "1.0.0"}' \
  > "$work/corpus/seed0"
printf '1.0-1~bpo2.0+b1' > "$work/corpus/seed1"
printf '{"packages":{"owners":[{"package":"a","version":"1"}]},"mappings":[{"path":"/x","build_id":"aa"}]}{"packages":{"owners":[{"package":"a","version":"2"}]},"mappings":[{"path":"/x","build_id":"bb"}]}' \
  > "$work/corpus/seed2"
printf '2026-12-02 11:00:00 upgrade pkg:amd64 1.0-1 2.0-1\nStart-Date: 2026-12-02  11:00:00\nUpgrade: pkg:amd64 (1.0-1, 2.0-1)\n' \
  > "$work/corpus/seed3"
# A dpkg index of one package and one path (the target fixes its checksum up).
printf 'PCDPKGX1\0\0\0\0\0\0\0\0\x04\x03\x02\x01\x01\0\0\0\x01\0\0\0\x01\0\0\0s\x01\0a\x01\x001\x05\0amd64\x01\x02\x03\x04\x05\x06\x07\x08\0\0\0\0' \
  > "$work/corpus/seed4"

printf '{"version": 1, "marks": [{"group": "0123456789abcdef", "time": 1, "uid": 0, "package": "libcrashy1", "version": "2.0-1"}, {"group": "x:6:/usr/bin/a", "time": 2, "uid": 0, "build_id": "cc", "builds_before": ["aa"]}]}' \
  > "$work/corpus/seed4"
printf '{"version": 1, "groups": [{"group": "0123456789abcdef", "first": 1, "hostname": "h", "executable": "/e", "signal": "SEGV", "parent": "p"}], "new": [{"hostname": "h", "executable": "/e", "signal": "SEGV", "count": 1}], "regressions": [], "regressed": ["g@1"]}' \
  > "$work/corpus/seed5"

fuzz_run "$seconds" 4096 -timeout=10
rm -rf /tmp/pc-fuzz-packages-*
