// Step 7 (and the lean path): the crashed interpreter's Python stacks, read from the live
// process while the kernel still waits on the core pipe. With core_pipe_limit = 0 the process
// exists until the handler has drained the pipe; the walk runs once the core's notes have passed
// (or, on the lean path, before the pipe is closed), in the sandboxed analysis child, over the
// /proc/<pid>/mem descriptor the handle took as root, under the walker's fixed budgets.
#include "handler/python_walk.hpp"

#include "common/base/io.hpp"
#include "common/crash/python/memory.hpp"
#include "common/crash/python/stacks.hpp"
#include "common/crash/python/stored.hpp"
#include "common/crash/python/walker.hpp"
#include "common/sandbox/analysis_child.hpp"
#include "common/store/record.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

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
using sandbox::StartedChild;

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

std::optional<PythonWalk> PythonWalk::start(const CrashedProcess& crashed, int launcher) {
  if (!crashed.valid()) {
    return std::nullopt;
  }
  const std::vector<PythonModule> modules = python_modules(crashed.maps());
  if (modules.empty()) {
    return std::nullopt;
  }
  PythonWalk walk(crashed);
  walk.m_module = modules.front().path;
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
  if (mem < 0 || files.empty()) {
    walk.m_failure = mem < 0 ? "the process's memory could not be opened"
                             : "the interpreter's file could not be opened";
    return walk;
  }
  int go[2] = {-1, -1};
  if (::pipe2(go, O_CLOEXEC) != 0) {
    walk.m_failure = "could not create a pipe for the walk";
    return walk;
  }
  const common::UniqueFd go_in(go[0]);
  walk.m_go.reset(go[1]);
  keep.push_back(mem);
  keep.push_back(go_in.get());
  ChildLimits limits;
  limits.memory = 128ULL << 20;
  limits.cpu_seconds = 1;
  limits.files = 64;
  limits.max_output = common::k_record_max;
  const std::string maps = crashed.maps();
  const int go_fd = go_in.get();
  walk.m_child.emplace(
      [&]() -> std::string {
        // Everything that needs no crash data yet is done before the word to go: the symbols.
        const auto in_sandbox = std::chrono::steady_clock::now();
        std::vector<std::pair<const PythonModule*, crash::python::PythonSymbols>> found;
        for (const auto& [m, fd] : files) {
          if (auto symbols = crash::python::read_python_symbols(fd)) {
            found.emplace_back(&m, *symbols);
          }
        }
        const auto ready = std::chrono::steady_clock::now();
        // When the child was in its sandbox and ready (CLOCK_MONOTONIC is the machine's).
        const auto stamps = [&](nlohmann::json j) {
          j["in_sandbox_ns"] = in_sandbox.time_since_epoch().count();
          j["ready_ns"] = ready.time_since_epoch().count();
          return j.dump();
        };
        int64_t crashed_tid = -1;
        const auto got =
            common::read_full(go_fd, std::as_writable_bytes(std::span(&crashed_tid, 1)));
        if (!got || *got != sizeof crashed_tid) {
          return {}; // the handler went on without the walk
        }
        crash::python::WalkLimits walk_limits;
        walk_limits.budget.max_time = k_walk_time;
        for (const auto& [m, symbols] : found) {
          const uint64_t bias = symbols.pie ? m->start - symbols.first_load_vaddr : 0;
          crash::python::ProcMemReader reader(mem, crash::python::parse_proc_maps(maps));
          // Cut to the record's share here already: the whole walk may not fit the pipe's bound.
          PythonStacks walked =
              crash::python::walk_python(reader, symbols, bias, m->path, walk_limits);
          crash::python::fit_stacks(walked, crashed_tid, k_python_share);
          return stamps(crash::python::to_json(walked));
        }
        // A Python 2, or a 3 before 3.7: no _PyRuntime. Recorded as such, never guessed.
        PythonStacks old;
        old.status = PyStatus::unsupported;
        old.module = files.front().first.path;
        old.detail = "no _PyRuntime: a Python before 3.7";
        return stamps(crash::python::to_json(old));
      },
      keep, limits, launcher);
  return walk;
}

nlohmann::json PythonWalk::finish(std::optional<int64_t> crashed_tid) {
  const auto started = std::chrono::steady_clock::now();
  PythonStacks stacks;
  stacks.module = m_module;
  // Not still_the_same(): after the drop of privileges a signal, even 0, is refused. The
  // pidfd's pid is -1 once the process is gone; while the kernel dumps it, it is there.
  const bool there = m_crashed->pidfd() >= 0 && pidfd_pid(m_crashed->pidfd()) == m_crashed->pid();
  if (m_failure.empty() && !there) {
    m_failure = "the process was gone before its memory was read";
  }
  const int64_t tid = crashed_tid.value_or(-1);
  if (m_failure.empty() && !common::write_all(m_go.get(), std::as_bytes(std::span(&tid, 1)))) {
    m_failure = "the walk's child did not take the word to go";
  }
  m_go.reset();
  if (!m_failure.empty() || !m_child) {
    m_child.reset(); // killed and reaped
    stacks.status = PyStatus::failed;
    stacks.detail = m_failure;
    return crash::python::to_json(stacks);
  }
  const ChildResult child = m_child->finish(started + k_walk_kill);
  m_child.reset();
  std::optional<double> in_sandbox_ms;
  std::optional<double> ready_ms;
  if (child.output) {
    try {
      const nlohmann::json out = nlohmann::json::parse(*child.output);
      const auto since_start = [&](const char* key) -> std::optional<double> {
        const auto it = out.find(key);
        if (it == out.end() || !it->is_number_integer()) {
          return std::nullopt;
        }
        const std::chrono::steady_clock::time_point at{
            std::chrono::steady_clock::duration(it->get<int64_t>())};
        return std::chrono::duration<double, std::milli>(at - m_started).count();
      };
      in_sandbox_ms = since_start("in_sandbox_ns");
      ready_ms = since_start("ready_ns");
      stacks = crash::python::python_stacks_from_json(out);
    } catch (const nlohmann::json::exception&) {
      stacks.status = PyStatus::failed;
      stacks.detail = "the walker's result is not JSON";
    }
  } else {
    stacks.status = PyStatus::failed;
    stacks.detail = "the walk did not finish: " + child.failure;
  }
  crash::python::fit_stacks(stacks, tid, k_python_share);
  nlohmann::json j = crash::python::to_json(stacks);
  // What the stream waited for: from the word to go to the result (the child's start and its
  // symbol reading came before, while the core streamed).
  j["walk_ms"] =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  j["start_ms"] = std::chrono::duration<double, std::milli>(started - m_started).count();
  // The child's own stamps: how long its fork and sandbox took, and the symbols after them.
  if (in_sandbox_ms && ready_ms) {
    j["child_ms"] = {{"sandbox", *in_sandbox_ms}, {"ready", *ready_ms}};
  }
  return j;
}

std::optional<nlohmann::json> walk_python_stacks(const CrashedProcess& crashed, int launcher,
                                                 std::optional<int64_t> crashed_tid) {
  auto walk = PythonWalk::start(crashed, launcher);
  if (!walk) {
    return std::nullopt;
  }
  return walk->finish(crashed_tid);
}

} // namespace handler
