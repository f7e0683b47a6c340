// Bounds-checked reads of integers from untrusted bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace common {

// Reads an unsigned little-endian integer of type T at `offset`; nullopt when it does not fit.
// Byte by byte: no alignment assumption, and the host's byte order does not matter.
template <typename T>
std::optional<T> read_le(std::span<const std::byte> data, uint64_t offset) {
  if (offset > data.size() || data.size() - offset < sizeof(T)) {
    return std::nullopt;
  }
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    v = static_cast<T>(v | static_cast<T>(static_cast<T>(data[offset + i]) << (8 * i)));
  }
  return v;
}

} // namespace common
