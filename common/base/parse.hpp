// Strict parsing of numbers and paths from text that may come from anywhere (argv, config,
// records).
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>
#include <vector>

namespace common {

// `s` without the blanks (spaces, tabs) and carriage returns at either end.
inline std::string_view trim_blanks(std::string_view s) {
  const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && blank(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && blank(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

// The components of a path as text, between its slashes; empty ones ("a//b", a trailing "/")
// are left out, "." and ".." are kept for the caller's own rule. No file system is involved.
inline std::vector<std::string_view> path_components(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    const size_t slash = path.find('/');
    const std::string_view part = path.substr(0, slash);
    if (!part.empty()) {
      out.push_back(part);
    }
    if (slash == std::string_view::npos) {
      break;
    }
    path.remove_prefix(slash + 1);
  }
  return out;
}

// The whole of `s` as a number of type T (integer or floating point); nullopt when `s` is
// empty, has anything else in it, or does not fit T.
template <typename T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

// The whole of `s` as an integer of type T in `base` (2..36, digits of either case, no prefix);
// nullopt as above.
template <typename T>
requires std::is_integral_v<T> std::optional<T> parse_number(std::string_view s, int base) {
  T v{};
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

// An address as the record writes it (common/base/hex.hpp hex_u64): "0x" and 1 to 16 hex digits.
inline std::optional<uint64_t> parse_hex_u64(std::string_view s) {
  if (!s.starts_with("0x")) {
    return std::nullopt;
  }
  return parse_number<uint64_t>(s.substr(2), 16);
}

} // namespace common
