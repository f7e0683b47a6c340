// The crashed interpreter's Python stacks, read from the live process during the stream
// (handler/python_walk.cpp), for the record's `python` section.
#pragma once

#include "common/base/fd.hpp"
#include "common/sandbox/analysis_child.hpp"
#include "handler/crashed_process.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace handler {

// The Python stacks' share of the record (k_record_max): what does not fit is cut, and the
// section's `cut` says what.
inline constexpr size_t k_python_share = 64 << 10;

// A mapped file that is a CPython by its name (python3.N, libpython3.N.so…, python2.7), mapped
// from offset 0 at `start`.
struct PythonModule {
  uint64_t start = 0;
  std::string path;
};

// The CPython modules in /proc/<pid>/maps text, in map order (at most a few).
std::vector<PythonModule> python_modules(std::string_view maps);

// The walk's sandboxed child, started before the stream reaches the notes: it forks, takes its
// ids, enters the sandbox and reads the interpreter's symbols while the core streams, then waits
// for the word to go, so that the stream (and the kernel) waits for the walk itself only.
class PythonWalk {
public:
  // nullopt when the process maps no CPython; otherwise a walk, its child started when it could
  // be (the ids `launcher` gives, when not -1).
  static std::optional<PythonWalk> start(const CrashedProcess& crashed, int launcher);
  // Lets the child walk, within a fixed time: the `python` section, or why there are none.
  // `walk_ms` is what the caller waited for, `start_ms` the time from start() to this call.
  nlohmann::json finish(std::optional<int64_t> crashed_tid);

private:
  explicit PythonWalk(const CrashedProcess& crashed)
      : m_crashed(&crashed), m_started(std::chrono::steady_clock::now()) {}
  const CrashedProcess* m_crashed;
  std::chrono::steady_clock::time_point m_started;
  std::string m_module;
  std::string m_failure; // why there is no walk, when known before it
  common::UniqueFd m_go; // one word: the crashing tid
  std::optional<sandbox::StartedChild> m_child;
};

// Walks the Python stacks of the process `crashed` holds, in the sandboxed child (as the ids
// `launcher` gives, when not -1), within a fixed time. The `python` section: the stacks, or why
// there are none; nullopt when the process maps no CPython.
std::optional<nlohmann::json> walk_python_stacks(const CrashedProcess& crashed, int launcher,
                                                 std::optional<int64_t> crashed_tid);

} // namespace handler
