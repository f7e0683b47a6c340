// Step 7 (and the lean path): the crashed interpreter's Python stacks, read from the live
// process while the kernel still waits on the core pipe. With core_pipe_limit = 0 the process
// exists until the handler has drained the pipe; the walk runs once the core's notes have passed
// (or, on the lean path, before the pipe is closed), in the sandboxed analysis child, over the
// /proc/<pid>/mem descriptor the handle took as root, under the walker's fixed budgets.
#include "handler/python_walk.hpp"

#include "common/crash/python/memory.hpp"
#include "common/crash/python/stacks.hpp"
#include "common/crash/python/stored.hpp"
#include "common/crash/python/walker.hpp"
#include "common/sandbox/analysis_child.hpp"
#include "common/store/record.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string_view>
#include <vector>

namespace handler {

namespace {

using crash::python::PyStatus;
using crash::python::PythonStacks;
using sandbox::ChildLimits;
using sandbox::ChildResult;
using sandbox::run_in_child;

// The walker's own time budget, and when its child is killed whatever it does: the kernel is
// held at most this long for the walk.
constexpr auto k_walk_time = std::chrono::milliseconds(150);
constexpr auto k_walk_kill = std::chrono::milliseconds(200);
// Modules tried for _PyRuntime, in map order.
constexpr size_t k_max_candidates = 4;

} // namespace

std::vector<PythonModule> python_modules(std::string_view maps) {
  std::vector<PythonModule> out;
  while (!maps.empty() && out.size() < k_max_candidates) {
    const size_t nl = maps.find('\n');
    const std::string_view line = maps.substr(0, nl);
    maps = nl == std::string_view::npos ? std::string_view() : maps.substr(nl + 1);
    unsigned long long start = 0;
    unsigned long long end = 0;
    unsigned long long offset = 0;
    int path_at = 0;
    const std::string text(line);
    if (std::sscanf(text.c_str(), "%llx-%llx %*s %llx %*s %*u %n", &start, &end, &offset,
                    &path_at) < 3 ||
        path_at <= 0 || offset != 0) {
      continue;
    }
    const std::string_view path = line.substr(static_cast<size_t>(path_at));
    if (path.empty() || path[0] != '/') {
      continue;
    }
    const std::string_view base = path.substr(path.rfind('/') + 1);
    if (!crash::python::cpython_file_name(base)) {
      continue;
    }
    const bool seen = std::ranges::any_of(out, [&](const auto& m) { return m.path == path; });
    if (!seen) {
      out.push_back({start, std::string(path)});
    }
  }
  return out;
}

std::optional<nlohmann::json> walk_python_stacks(const CrashedProcess& crashed, int launcher,
                                                 std::optional<int64_t> crashed_tid) {
  if (!crashed.valid()) {
    return std::nullopt;
  }
  const std::vector<PythonModule> modules = python_modules(crashed.maps());
  if (modules.empty()) {
    return std::nullopt;
  }
  const auto started = std::chrono::steady_clock::now();
  PythonStacks stacks;
  stacks.module = modules.front().path;
  // The descriptors are the handle's, taken as root with the pidfd check: the child reads the
  // process's memory and its own module files, and opens nothing.
  std::vector<int> keep;
  std::vector<std::pair<PythonModule, int>> files;
  for (const PythonModule& m : modules) {
    if (const int fd = crashed.mapped_file(m.start); fd >= 0) {
      keep.push_back(fd);
      files.emplace_back(m, fd);
    }
  }
  const int mem = crashed.mem();
  // Not still_the_same(): after the drop of privileges a signal, even 0, is refused. The
  // pidfd's pid is -1 once the process is gone; while the kernel dumps it, it is there.
  const bool there = crashed.pidfd() >= 0 && pidfd_pid(crashed.pidfd()) == crashed.pid();
  if (mem < 0 || files.empty() || !there) {
    stacks.status = PyStatus::failed;
    stacks.detail = mem < 0         ? "the process's memory could not be opened"
                    : files.empty() ? "the interpreter's file could not be opened"
                                    : "the process was gone before its memory was read";
    return crash::python::to_json(stacks);
  }
  keep.push_back(mem);
  ChildLimits limits;
  limits.memory = 128ULL << 20;
  limits.cpu_seconds = 1;
  limits.files = 64;
  limits.max_output = common::k_record_max;
  const std::string maps = crashed.maps();
  const ChildResult child = run_in_child(
      [&]() -> std::string {
        crash::python::WalkLimits walk;
        walk.budget.max_time = k_walk_time;
        std::string first_module;
        for (const auto& [m, fd] : files) {
          auto symbols = crash::python::read_python_symbols(fd);
          if (!symbols) {
            continue;
          }
          const uint64_t bias = symbols->pie ? m.start - symbols->first_load_vaddr : 0;
          crash::python::ProcMemReader reader(mem, crash::python::parse_proc_maps(maps));
          // Cut to the record's share here already: the whole walk may not fit the pipe's bound.
          PythonStacks walked = crash::python::walk_python(reader, *symbols, bias, m.path, walk);
          crash::python::fit_stacks(walked, crashed_tid.value_or(-1), k_python_share);
          return crash::python::to_json(walked).dump();
        }
        // A Python 2, or a 3 before 3.7: no _PyRuntime. Recorded as such, never guessed.
        PythonStacks old;
        old.status = PyStatus::unsupported;
        old.module = files.front().first.path;
        old.detail = "no _PyRuntime: a Python before 3.7";
        return crash::python::to_json(old).dump();
      },
      keep, limits, started + k_walk_kill, launcher);
  if (child.output) {
    try {
      stacks = crash::python::python_stacks_from_json(nlohmann::json::parse(*child.output));
    } catch (const nlohmann::json::exception&) {
      stacks.status = PyStatus::failed;
      stacks.detail = "the walker's result is not JSON";
    }
  } else {
    stacks.status = PyStatus::failed;
    stacks.detail = "the walk did not finish: " + child.failure;
  }
  crash::python::fit_stacks(stacks, crashed_tid.value_or(-1), k_python_share);
  nlohmann::json j = crash::python::to_json(stacks);
  j["walk_ms"] =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  return j;
}

} // namespace handler
