// The runtime's own crash report (hs_err_pid<pid>.log, Ruby's RUBY_CRASH_REPORT, Node's
// diagnostic report), kept beside the record when the crashed process's environment or
// arguments name it.
//
// The crasher names the path, so the file is read with the crashing user's rights: a child
// forked as root before the handler drops its privileges takes the crashing uid and gid (no
// supplementary groups, not dumpable), and opens the path with openat2 relative to the
// process's own root or working directory (descriptors of the crashed-process handle), with
// RESOLVE_IN_ROOT (absolute) or RESOLVE_BENEATH (relative), RESOLVE_NO_SYMLINKS and
// RESOLVE_NO_MAGICLINKS, O_NONBLOCK. Only a regular file owned by the crashing uid and modified
// no earlier than the process started is read, at most k_report_max bytes, within
// k_report_seconds. The child runs while the core streams; the handler collects its answer
// at the end of the capture, stores <id>.report (the core's mode, and its access) and fills the
// record's `runtime_report` section.
//
// The same child, in the same way, reads the process's perf map (/tmp/perf-<pid>.map, <pid> in
// the process's own pid namespace: what V8 and CPython write the names of their JIT code to),
// the last k_perf_map_max bytes of it; the handler takes it before the analysis, which parses
// it in the sandboxed child (common/crash/perf_map).
#pragma once

#include "common/base/fd.hpp"
#include "common/store/store.hpp"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace handler {

struct Context;

inline constexpr size_t k_report_max = common::k_max_report_bytes;
inline constexpr unsigned k_report_seconds = 2;

// One file a runtime may have written.
struct ReportCandidate {
  std::string runtime; // "jvm", "ruby", "node"
  std::string named;   // the path as the process named it (before %p was expanded)
  std::string path;    // what is opened ("" with `node_dir`: the directory is searched)
  // Node without --report-filename: the newest report.<date>.<time>.<pid>.<seq>.json in the
  // directory `path` ("" for the working directory).
  bool node_dir = false;
  // The JVM's default name: the record says nothing when it is not there.
  bool implicit = false;
};

// The files named by an environment block and an argv block (both NUL-separated, as in
// /proc/<pid>/environ and cmdline) of the process `exe`, whose pid in its own namespace is
// `pid`, in the order they are tried. Exposed for tests.
std::vector<ReportCandidate> report_candidates(std::string_view environ, std::string_view argv,
                                               std::string_view exe, int64_t pid);

// The reader child started by start_runtime_report_reader().
struct ReportReader {
  pid_t pid = -1;
  common::UniqueFd pidfd;
  common::UniqueFd out; // memfd the child writes its answer into
  std::chrono::steady_clock::time_point deadline;
  std::string runtime; // the first candidate's, for the record when the reader says nothing
  std::string named;
  std::vector<ReportCandidate> candidates; // 4. from the environment and argv
  std::string perf_map_path;               // 6. the perf map, as the process names it
  common::UniqueFd perf_out;               // memfd the child writes the perf map into
  bool finished = false;                   // the child was waited for (or killed)
  bool timed_out = false;                  // it was killed at its deadline
  int status = 0;                          // its wait status, when it finished
};

// Step 4, once the process facts are verified and while the process still exists (its
// environment and argv go with its memory, which the kernel may free as soon as the core is
// written): the report files the process names.
void note_runtime_report_names(Context& ctx);

// As root, in step 6 before the drop: forks the reader when the process names a report.
void start_runtime_report_reader(Context& ctx);
// Step 8, before the analysis, when the core has JIT code: waits for the reader (until its
// deadline) and leaves the perf map's bytes in ctx.perf_map; why it was not read, in the
// warnings.
void take_perf_map(Context& ctx);
// At the end of step 7, before the analysis: waits for the reader (until its deadline), stores
// the report, fills record.runtime_report.
void keep_runtime_report(Context& ctx);

} // namespace handler
