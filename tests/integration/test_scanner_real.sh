#!/usr/bin/env bash
# The ELF core scanner on real cores of a tiny C program: NULL dereference, a crash in a non-main
# thread, abort(), and a cut core. Checks against readelf and addr2line.
#
#   test_scanner_real.sh <scan_core binary>
#
# Cores come from the kernel when /proc/sys/kernel/core_pattern is a plain relative file name
# (we only *read* the pattern and raise our own RLIMIT_CORE; the pattern is never changed).
# Otherwise they come from gdb's generate-core-file: gdb writes the notes *after* the memory, so
# a single-pass scanner cannot see build-ids or the stack there, and those checks are skipped.
# Exit 77 (skipped) when neither is possible.
set -euo pipefail

scan_core=$(realpath "$1")
work=$(mktemp -d "${TMPDIR:-/tmp}/pc-scanner-XXXXXX")
failed=0
trap 'if [ "$failed" = 0 ]; then rm -rf "$work"; else echo "kept $work" >&2; fi' EXIT

fail() { echo "FAIL: $*" >&2; failed=1; }
check() { # check <description> <actual> <expected>
  if [ "$2" == "$3" ]; then echo "ok: $1"; else fail "$1: got '$2', expected '$3'"; fi
}

cat > "$work/crashy.c" <<'EOF'
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) int crash_here(volatile int* p) { return *p + 1; }

__attribute__((noinline)) void* thread_crash(void* arg) {
  (void)arg;
  *(volatile int*)0 = 1;
  return NULL;
}

static void* idle(void* arg) { (void)arg; pause(); return NULL; }

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "null";
  if (strcmp(mode, "abort") == 0) {
    abort();
  }
  if (strcmp(mode, "thread") == 0) {
    pthread_t a, b;
    pthread_create(&a, NULL, idle, NULL);
    pthread_create(&b, NULL, thread_crash, NULL);
    pthread_join(b, NULL);
    return 0;
  }
  return crash_here(NULL);
}
EOF
cc -g -O0 -pthread -o "$work/crashy" "$work/crashy.c"
exe=$(realpath "$work/crashy")

# Kernel file cores follow core_pattern, which the end-to-end tests change while they hold the
# machine lock (tests/lib/pctest.py): hold it too, so that the pattern read stays in force.
lock=/run/lock/process-core-tests.lock
[ -d /run/lock ] || lock=/tmp/process-core-tests.lock
exec 9>"$lock"
flock 9
pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo "|")
if [ -n "${PC_CORE_SOURCE:-}" ]; then # kernel or gdb, to exercise one path on purpose
  source=$PC_CORE_SOURCE
elif [[ "$pattern" != \|* && "$pattern" != /* && "$pattern" != @* && -n "$pattern" ]]; then
  source=kernel
elif command -v gdb >/dev/null; then
  source=gdb
else
  echo "skipped: no kernel file cores and no gdb" >&2
  exit 77
fi
echo "core source: $source"

# make_core <mode> <out>: a core of `crashy <mode>` at <out>; prints the crashed pid.
make_core() {
  local dir="$work/run-$1"
  mkdir -p "$dir"
  if [ "$source" = kernel ]; then
    (cd "$dir" && ulimit -c unlimited && exec "$exe" "$1") 2>/dev/null &
    local pid=$!
    wait "$pid" || true
    local core
    core=$(find "$dir" -maxdepth 1 -type f | head -n 1)
    [ -n "$core" ] || { echo "no core from the kernel" >&2; return 1; }
    mv "$core" "$2"
    echo "$pid"
  else
    gdb -nx -batch -ex 'set confirm off' -ex run -ex 'info inferiors' \
        -ex "generate-core-file $2" --args "$exe" "$1" > "$dir/gdb.log" 2>&1
    sed -n 's/.*process \([0-9]\+\).*/\1/p' "$dir/gdb.log" | head -n 1
  fi
}

field() { jq -r "$2" "$1"; }

# 1. NULL dereference in main().
pid=$(make_core null "$work/null.core")
"$scan_core" --resolve < "$work/null.core" > "$work/null.json"
j="$work/null.json"
check "signal" "$(field "$j" .crash.si_signo)" 11
check "si_code" "$(field "$j" .crash.si_code_name)" SEGV_MAPERR
check "fault address" "$(field "$j" .crash.fault_address)" 0x0
check "module" "$(field "$j" .crash.module)" "$exe"
check "symbol" "$(field "$j" .crash.symbol.name)" crash_here
check "tid is the main thread" "$(field "$j" .crash.tid)" "$pid"
check "pid" "$(field "$j" .facts.pid)" "$pid"
check "threads" "$(field "$j" .crash.threads)" 1
check "not truncated" "$(field "$j" .crash.truncated)" false
check "received = file size" "$(field "$j" .crash.received)" "$(stat -c %s "$work/null.core")"
check "signature length" "$(field "$j" .crash.signature | tr -d '\n' | wc -c)" 16
# module_offset is a file offset; for this GNU ld PIE it is what addr2line takes.
check "addr2line on module_offset" \
  "$(addr2line -f -e "$exe" "$(field "$j" .crash.module_offset)" | head -n 1)" crash_here
if [ "$source" = kernel ]; then
  check "symbol verified by build-id" "$(field "$j" .crash.symbol.verified)" true
  count=$(field "$j" '.facts.build_ids | length')
  [ "$count" -ge 2 ] || fail "expected build-ids of the exe and libc, got $count"
  while IFS=$'\t' read -r path id; do
    want=$(readelf -n "$path" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p')
    check "build-id of $path matches readelf -n" "$id" "$want"
  done < <(jq -r '.facts.build_ids | to_entries[] | "\(.key)\t\(.value)"' "$j")
  check "crash build-id" "$(field "$j" .crash.build_id)" \
    "$(readelf -n "$exe" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p')"
  check "mapping findings: none" "$(jq '[.mappings[].findings[]] | length' "$j")" 0
  frames=$(jq '[.crash.frames[] | select(.module != null)] | length' "$j")
  [ "$frames" -ge 1 ] || fail "expected best-effort frames in modules, got $frames"
fi

# The same facts whatever the read size (the scanner sees other chunk boundaries).
"$scan_core" --resolve --chunk 1 < "$work/null.core" > "$work/null-1.json"
"$scan_core" --resolve --chunk 4093 < "$work/null.core" > "$work/null-4093.json"
check "chunk size 1 gives the same JSON" "$(cmp -s "$j" "$work/null-1.json" && echo same)" same
check "chunk size 4093 gives the same JSON" "$(cmp -s "$j" "$work/null-4093.json" && echo same)" same

# 2. A crash in a non-main thread, with an idle thread besides.
pid=$(make_core thread "$work/thread.core")
"$scan_core" --resolve < "$work/thread.core" > "$work/thread.json"
j="$work/thread.json"
check "thread: si_code" "$(field "$j" .crash.si_code_name)" SEGV_MAPERR
check "thread: symbol" "$(field "$j" .crash.symbol.name)" thread_crash
check "thread: threads" "$(field "$j" .crash.threads)" 3
tid=$(field "$j" .crash.tid)
[ "$tid" != "$pid" ] && [ "$tid" != null ] || fail "thread: tid $tid should be the crashing thread, not $pid"

# 3. abort(): SIGABRT sent by the process itself via tgkill, pc inside libc.
pid=$(make_core abort "$work/abort.core")
"$scan_core" --resolve < "$work/abort.core" > "$work/abort.json"
j="$work/abort.json"
check "abort: signal" "$(field "$j" .crash.si_signo)" 6
check "abort: si_code" "$(field "$j" .crash.si_code_name)" SI_TKILL
check "abort: sender is itself" "$(field "$j" .crash.sender_pid)" "$pid"
check "abort: no fault address" "$(field "$j" .crash.fault_address)" null
case "$(field "$j" .crash.module)" in
  */libc.so.6) echo "ok: abort: module is libc" ;;
  *) fail "abort: module $(field "$j" .crash.module) is not libc" ;;
esac

# 4. A core cut short (a helper that died, a size cap upstream).
size=$(stat -c %s "$work/null.core")
cut=$((size / 2))
head -c "$cut" "$work/null.core" | "$scan_core" > "$work/cut.json"
j="$work/cut.json"
check "cut: truncated" "$(field "$j" .crash.truncated)" true
check "cut: received" "$(field "$j" .crash.received)" "$cut"
check "cut: expected_size" "$(field "$j" .crash.expected_size)" \
  "$(field "$work/null.json" .crash.expected_size)"
if [ "$source" = kernel ]; then # the notes come first: the crash site survives the cut
  check "cut: pc kept" "$(field "$j" .crash.pc)" "$(field "$work/null.json" .crash.pc)"
fi
head -c 100 "$work/null.core" | "$scan_core" > "$work/cut100.json"
check "cut in the program headers: truncated" "$(field "$work/cut100.json" .crash.truncated)" true

[ "$failed" = 0 ] && echo "all scanner checks passed ($source cores)"
exit "$failed"
