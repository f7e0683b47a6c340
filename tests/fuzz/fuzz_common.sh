# Sourced by the run_fuzz*.sh scripts: finds the target built by tests/fuzz/CMakeLists.txt,
# makes the work directory, and runs libFuzzer with the limits every target shares.
#
#   source fuzz_common.sh; fuzz_setup NAME; <write seeds to $work/corpus>; fuzz_run SECONDS ...
#
# PC_FUZZ_BIN is the directory of the built targets (CTest sets it); PC_FUZZ_DIR keeps the corpus
# and artifacts. Exit 77 (skipped) when the target was not built: the build found no clang++.
set -euo pipefail

# fuzz_setup NAME: $target (the binary), $work with corpus/ and artifacts/ in it.
fuzz_setup() {
  local name=$1
  target=${PC_FUZZ_BIN:-}/$name
  if [ -z "${PC_FUZZ_BIN:-}" ] || [ ! -x "$target" ]; then
    echo "skipped: $name is not built (PC_FUZZ=ON and clang++ build it)" >&2
    exit 77
  fi
  work=${PC_FUZZ_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pc-$name-XXXXXX")}
  mkdir -p "$work/corpus" "$work/artifacts"
}

# fuzz_run SECONDS MAX_LEN [libFuzzer options…]: fuzzes for SECONDS on $work/corpus; any finding
# fails the test.
fuzz_run() {
  local seconds=$1 max_len=$2
  shift 2
  # -error_exitcode: libFuzzer's default (77) would read as "skipped" to CTest.
  "$target" -max_total_time="$seconds" -error_exitcode=1 -rss_limit_mb=2048 -max_len="$max_len" \
    -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$@" "$work/corpus"
  echo "fuzzing $(basename "$target") finished without findings ($work)"
  [ -n "${PC_FUZZ_DIR:-}" ] || rm -rf "$work"
}
