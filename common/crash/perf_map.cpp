#include "common/crash/perf_map.hpp"

#include <algorithm>

namespace common {

namespace {

// Lines between deadline checks.
constexpr size_t k_lines_per_check = 4096;

// A hex number of at most 16 digits, with or without 0x; nullopt otherwise.
std::optional<uint64_t> parse_hex(std::string_view s) {
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
  }
  if (s.empty() || s.size() > 16) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (const char c : s) {
    unsigned d = 0;
    if (c >= '0' && c <= '9') {
      d = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<unsigned>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      d = static_cast<unsigned>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
    v = (v << 4) | d;
  }
  return v;
}

std::string_view basename_of(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// "file.js:2:15" → "file.js": trailing ":<digits>" groups, at most two.
std::string_view without_position(std::string_view s) {
  for (int i = 0; i < 2; ++i) {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || colon + 1 == s.size() ||
        !std::all_of(s.begin() + static_cast<ptrdiff_t>(colon) + 1, s.end(),
                     [](char c) { return c >= '0' && c <= '9'; })) {
      break;
    }
    s = s.substr(0, colon);
  }
  return s;
}

} // namespace

std::optional<PerfMapEntry> parse_perf_map_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  const size_t a = line.find(' ');
  if (a == std::string_view::npos) {
    return std::nullopt;
  }
  const size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos || b + 1 >= line.size()) {
    return std::nullopt;
  }
  const auto start = parse_hex(line.substr(0, a));
  const auto size = parse_hex(line.substr(a + 1, b - a - 1));
  if (!start || !size || *size == 0) {
    return std::nullopt;
  }
  return PerfMapEntry{*start, *size, line.substr(b + 1, k_perf_map_name)};
}

std::map<uint64_t, PerfMapName> perf_map_names(std::string_view text,
                                               std::span<const uint64_t> addresses,
                                               std::chrono::steady_clock::time_point deadline) {
  std::map<uint64_t, PerfMapName> named;
  // Each address is named once, by the newest line: erased from `open` when it is, so a map
  // of many overlapping lines costs each address one lookup, not one per line.
  std::map<uint64_t, bool> open;
  for (const uint64_t a : addresses) {
    open.emplace(a, true);
  }
  size_t end = text.size();
  for (size_t lines = 0; end > 0 && !open.empty() && lines < k_perf_map_lines; ++lines) {
    if (lines % k_lines_per_check == 0 && std::chrono::steady_clock::now() >= deadline) {
      break;
    }
    // The line ending at `end` (its newline excluded).
    const size_t nl = text.rfind('\n', end - 1);
    const size_t begin = nl == std::string_view::npos ? 0 : nl + 1;
    const std::string_view line = text.substr(begin, end - begin);
    end = nl == std::string_view::npos ? 0 : nl;
    const auto e = parse_perf_map_line(line);
    if (!e) {
      continue;
    }
    const uint64_t last = e->size - 1 > UINT64_MAX - e->start ? UINT64_MAX : e->start + e->size - 1;
    for (auto it = open.lower_bound(e->start); it != open.end() && it->first <= last;) {
      named.emplace(it->first, PerfMapName{std::string(e->name), e->start});
      it = open.erase(it);
    }
  }
  return named;
}

std::string jit_signature_name(std::string_view name) {
  // CPython: "py::<qualified name>:<file>".
  if (name.starts_with("py::")) {
    const std::string_view rest = name.substr(4);
    const size_t colon = rest.find(':');
    if (colon != std::string_view::npos) {
      return std::string(rest.substr(0, colon)) + " " +
             std::string(basename_of(rest.substr(colon + 1)));
    }
    return std::string(rest);
  }
  // V8: "<kind>:<tier><function> <script>:<line>:<column>", kinds JS, Function, LazyCompile,
  // Script, Eval; tiers ~ (interpreted), ^ (baseline), + (Maglev), * (optimized).
  const size_t colon = name.find(':');
  const size_t space = name.find(' ');
  if (colon != std::string_view::npos && (space == std::string_view::npos || colon < space)) {
    const std::string_view kind = name.substr(0, colon);
    for (const std::string_view k : {"JS", "Function", "LazyCompile", "Script", "Eval"}) {
      if (kind != k) {
        continue;
      }
      std::string_view rest = name.substr(colon + 1);
      while (!rest.empty() &&
             (rest[0] == '~' || rest[0] == '^' || rest[0] == '+' || rest[0] == '*')) {
        rest.remove_prefix(1);
      }
      const size_t sp = rest.find(' ');
      const std::string_view function = rest.substr(0, sp);
      const std::string_view script =
          sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
      std::string out(function);
      if (!script.empty()) {
        out += (out.empty() ? "" : " ") + std::string(basename_of(without_position(script)));
      }
      return out;
    }
  }
  return std::string(name);
}

} // namespace common
