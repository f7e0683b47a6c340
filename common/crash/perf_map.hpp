// The names a JIT compiler gives its code in `perf-<pid>.map`, the text format perf reads:
// one "START SIZE NAME" line per piece of code, START and SIZE in hex (V8 with
// --perf-basic-prof, CPython 3.12+ with -X perf, the JVM's perf-map-agent, LuaJIT, .NET).
//
// The file is the crasher's: any bytes, any length. The handler reads at most k_perf_map_max
// bytes of it as the crashing user (handler/runtime_report); the sandboxed analysis parses them
// here, at most k_perf_map_lines lines, newest first, within a deadline, and keeps at most
// k_perf_map_name bytes of a name.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace common {

inline constexpr size_t k_perf_map_max = 16u << 20;
inline constexpr size_t k_perf_map_lines = 1u << 20;
inline constexpr size_t k_perf_map_name = 512;

// One line of a perf map, or nullopt when it is not "START SIZE NAME" (hex numbers, with or
// without 0x, a non-empty name; a size of zero names nothing).
struct PerfMapEntry {
  uint64_t start = 0;
  uint64_t size = 0;
  std::string_view name; // cut to k_perf_map_name bytes
};
std::optional<PerfMapEntry> parse_perf_map_line(std::string_view line);

// The piece of JIT code that holds an address.
struct PerfMapName {
  std::string name;
  uint64_t start = 0;
};

// Names each address of `addresses` from the map `text`: the name of the last line whose
// [START, START + SIZE) holds it — a JIT reuses the addresses of code it freed and appends a
// line for the new code. Addresses no line covers are absent. Lines are read from the end, at
// most k_perf_map_lines of them, until every address is named or `deadline` passes.
std::map<uint64_t, PerfMapName> perf_map_names(
    std::string_view text, std::span<const uint64_t> addresses,
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max());

// What of a JIT frame's name the signature keeps: the function and the script's file name,
// without the line and column, the directory or the compiler's tier ("JS:~parse
// /srv/app/lib.js:2:15" and "JS:*parse /opt/app/lib.js:2:15" → "parse lib.js"; CPython's
// "py::parse:/srv/app/lib.py" → "parse lib.py"); other names as they are.
std::string jit_signature_name(std::string_view name);

} // namespace common
