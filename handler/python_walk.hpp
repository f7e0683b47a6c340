// The crashed interpreter's Python stacks, read from the live process during the stream
// (handler/python_walk.cpp), for the record's `python` section.
#pragma once

#include "handler/crashed_process.hpp"

#include <nlohmann/json.hpp>

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

// Walks the Python stacks of the process `crashed` holds, in the sandboxed child (as the ids
// `launcher` gives, when not -1), within a fixed time. The `python` section: the stacks, or why
// there are none; nullopt when the process maps no CPython.
std::optional<nlohmann::json> walk_python_stacks(const CrashedProcess& crashed, int launcher,
                                                 std::optional<int64_t> crashed_tid);

} // namespace handler
