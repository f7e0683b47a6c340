#include "common/base/units.hpp"

#include "common/base/parse.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <utility>

namespace common {

namespace {

// Binary size units, K M G T in either case.
constexpr std::array<std::pair<char, uint64_t>, 4> k_size_units = {{
    {'K', uint64_t{1} << 10},
    {'M', uint64_t{1} << 20},
    {'G', uint64_t{1} << 30},
    {'T', uint64_t{1} << 40},
}};

// Units as systemd.time(7) spells them; months and years as its averages.
constexpr std::array<std::pair<std::string_view, uint64_t>, 26> k_time_units = {{
    {"s", 1},           {"sec", 1},          {"secs", 1},      {"second", 1},
    {"seconds", 1},     {"m", 60},           {"min", 60},      {"mins", 60},
    {"minute", 60},     {"minutes", 60},     {"h", 3600},      {"hr", 3600},
    {"hour", 3600},     {"hours", 3600},     {"d", 86400},     {"day", 86400},
    {"days", 86400},    {"w", 604800},       {"week", 604800}, {"weeks", 604800},
    {"month", 2629800}, {"months", 2629800}, {"M", 2629800},   {"y", 31557600},
    {"year", 31557600}, {"years", 31557600},
}};

// A term's count is at most 2^32 and a unit at most 2^25 s, so one term stays below 2^57 and a
// running total checked against 2^62 cannot overflow, however many terms the text has.
constexpr uint64_t k_max_count = uint64_t{1} << 32;
constexpr uint64_t k_max_seconds = uint64_t{1} << 62;

// The length of the run at the start of `s` whose characters satisfy `pred`.
template <typename Pred>
size_t run_of(std::string_view s, Pred pred) {
  return static_cast<size_t>(std::find_if_not(s.begin(), s.end(), [&](char c) { return pred(c); }) -
                             s.begin());
}

} // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
  std::string_view s = trim_blanks(text);
  uint64_t mult = 1;
  if (!s.empty()) {
    const auto unit = static_cast<char>(std::toupper(static_cast<unsigned char>(s.back())));
    const auto it = std::find_if(k_size_units.begin(), k_size_units.end(),
                                 [&](const auto& u) { return u.first == unit; });
    if (it != k_size_units.end()) {
      mult = it->second;
      s.remove_suffix(1);
    }
  }
  const auto v = parse_number<double>(s);
  if (!v || *v < 0 || !std::isfinite(*v)) {
    return std::nullopt;
  }
  const double bytes = *v * static_cast<double>(mult);
  if (bytes >= 1.8e19) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(bytes);
}

std::string human_size(uint64_t bytes) {
  static constexpr const char* k_units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < (uint64_t{1} << 53)) {
    // In integers, exactly as printf's "%.1f" rounds bytes / 1024^u (a double that is exact
    // below 2^53): to the nearest tenth, ties to even. A list prints one per crash.
    size_t u = 0;
    while (u + 1 < std::size(k_units) && bytes >> (10 * (u + 1)) != 0) {
      ++u;
    }
    if (u == 0) {
      return std::to_string(bytes) + " B";
    }
    const unsigned shift = static_cast<unsigned>(10 * u);
    const uint64_t n = bytes * 10; // < 2^57
    uint64_t tenths = n >> shift;
    const uint64_t rest = n & ((uint64_t{1} << shift) - 1);
    const uint64_t half = uint64_t{1} << (shift - 1);
    if (rest > half || (rest == half && (tenths & 1) != 0)) {
      ++tenths;
    }
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " " + k_units[u];
  }
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(k_units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, k_units[u]);
  return buf;
}

std::optional<uint64_t> parse_duration(std::string_view text) {
  std::string_view s = trim_blanks(text);
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  const auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!s.empty() && run_of(s, is_digit) == s.size()) {
    // A bare number is seconds (as systemd reads one in its unit files).
    const auto n = parse_number<uint64_t>(s);
    return n && *n <= k_max_count ? n : std::nullopt;
  }
  uint64_t total = 0;
  bool any = false;
  while (!s.empty()) {
    const size_t digits = run_of(s, is_digit);
    const auto n = parse_number<uint64_t>(s.substr(0, digits));
    if (!n || *n > k_max_count) {
      return std::nullopt;
    }
    s = trim_blanks(s.substr(digits));
    const size_t letters = run_of(s, is_letter);
    const std::string_view unit = s.substr(0, letters);
    const auto it = std::find_if(k_time_units.begin(), k_time_units.end(),
                                 [&](const auto& u) { return u.first == unit; });
    if (it == k_time_units.end()) {
      return std::nullopt;
    }
    total += *n * it->second;
    if (total > k_max_seconds) {
      return std::nullopt;
    }
    any = true;
    s = trim_blanks(s.substr(letters));
  }
  return any ? std::optional(total) : std::nullopt;
}

} // namespace common
