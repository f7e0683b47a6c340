// Strict parsing of numbers from text that may come from anywhere (argv, config, records).
#pragma once

#include <charconv>
#include <optional>
#include <string_view>

namespace common {

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

} // namespace common
