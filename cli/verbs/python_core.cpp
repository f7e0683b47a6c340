// Python stacks read afterwards from a core, in the sandboxed child.
#include "cli/verbs/python_core.hpp"

#include "common/base/fd.hpp"
#include "common/crash/python/core_image.hpp"
#include "common/record/mapping.hpp"
#include "common/sandbox/analysis_child.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

namespace {

using crash::python::CandidateFile;
using crash::python::PyStatus;
using crash::python::PythonStacks;

// Files tried as the interpreter: a process maps one or two CPythons (the executable and its
// libpython); more is hostile or odd, and each costs a symbol table read.
constexpr size_t k_max_candidates = 4;
// The walk's own budgets, as at capture time but for the clock: nothing waits on this walk.
constexpr auto k_walk_time = std::chrono::milliseconds(2000);

bool cpython_path(std::string_view path) {
  return !path.empty() && path[0] == '/' &&
         crash::python::cpython_file_name(path.substr(path.rfind('/') + 1));
}

// The CPython files the record names: its mapped files, then the executable.
std::vector<std::string> candidate_paths(const common::Record& r) {
  std::vector<std::string> out;
  auto add = [&](const std::string& path) {
    if (out.size() < k_max_candidates && cpython_path(path) &&
        std::ranges::find(out, path) == out.end()) {
      out.push_back(path);
    }
  };
  for (const auto& m : common::record::mappings_from_json(r.mappings).entries) {
    if (m.path) {
      add(*m.path);
    }
  }
  add(r.executable);
  return out;
}

// A regular file opened for reading, never waiting on a FIFO or a device.
common::UniqueFd open_regular(const std::string& path) {
  common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return {};
  }
  return fd;
}

nlohmann::json failed(std::string detail, const std::string& module) {
  PythonStacks s;
  s.status = PyStatus::failed;
  s.module = module;
  s.detail = std::move(detail);
  s.source = "core";
  return crash::python::to_json(s);
}

} // namespace

std::optional<nlohmann::json> python_from_core(const common::Record& r, int core_fd,
                                               crash::python::CoreEncoding encoding) {
  if (r.python.is_object() && !r.python.empty()) {
    return std::nullopt;
  }
  const std::vector<std::string> paths = candidate_paths(r);
  if (paths.empty()) {
    return std::nullopt;
  }
  std::vector<common::UniqueFd> fds;
  std::vector<CandidateFile> candidates;
  std::vector<int> keep{core_fd};
  for (const std::string& p : paths) {
    common::UniqueFd fd = open_regular(p);
    if (fd) {
      candidates.push_back({p, fd.get()});
      keep.push_back(fd.get());
      fds.push_back(std::move(fd));
    }
  }
  if (candidates.empty()) {
    return failed("the interpreter's file '" + paths.front() + "' could not be opened",
                  paths.front());
  }
  const auto started = std::chrono::steady_clock::now();
  const auto kill_at = started + std::chrono::seconds(k_python_core_seconds);
  sandbox::ChildLimits limits;
  // The kept segments, zstd's window and the walker's page cache.
  limits.memory = crash::python::k_max_image_bytes + (256ULL << 20);
  limits.cpu_seconds = k_python_core_seconds + 1;
  limits.files = 64;
  limits.max_output = common::k_record_max;
  const int64_t tid = r.tid.value_or(-1);
  const sandbox::ChildResult child = sandbox::run_in_child(
      [&]() -> std::string {
        crash::python::WalkLimits walk;
        walk.budget.max_time = k_walk_time;
        PythonStacks s = crash::python::walk_stored_core(core_fd, encoding, candidates, walk,
                                                         kill_at - std::chrono::milliseconds(500));
        crash::python::fit_stacks(s, tid, limits.max_output / 2);
        return crash::python::to_json(s).dump();
      },
      keep, limits, kill_at, -1, /*drop_root=*/true);
  if (!child.output) {
    return failed("the walk did not finish: " + child.failure, candidates.front().path);
  }
  try {
    nlohmann::json j = nlohmann::json::parse(*child.output);
    // Through the typed model: only the section's own fields, whatever the child wrote.
    nlohmann::json out = crash::python::to_json(crash::python::python_stacks_from_json(j));
    out["source"] = "core";
    out["walk_ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    return out;
  } catch (const nlohmann::json::exception&) {
    return failed("the walker's result is not JSON", candidates.front().path);
  }
}

} // namespace cli
