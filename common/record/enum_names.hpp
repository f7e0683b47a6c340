// One table per enum for its names in records and on the command line: a constexpr array of
// {value, name} pairs, read both ways by the two helpers below, instead of a switch each way.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>

namespace common::record {

template <typename E, size_t N>
using EnumNames = std::array<std::pair<E, std::string_view>, N>;

// The name of `value` in `table`; `fallback` for a value the table lacks (a cast integer).
template <typename E, size_t N>
constexpr std::string_view enum_name(const EnumNames<E, N>& table, E value,
                                     std::string_view fallback) {
  for (const auto& [v, name] : table) {
    if (v == value) {
      return name;
    }
  }
  return fallback;
}

// The value named `name` in `table`; nullopt when no entry has that name (names are exact).
template <typename E, size_t N>
constexpr std::optional<E> enum_from_name(const EnumNames<E, N>& table, std::string_view name) {
  for (const auto& [v, n] : table) {
    if (n == name) {
      return v;
    }
  }
  return std::nullopt;
}

} // namespace common::record
