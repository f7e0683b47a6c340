// co_linetable, as PyCode_Addr2Line reads it.
#include "common/crash/python/linetable.hpp"

namespace crash::python {

namespace {

constexpr unsigned k_code_none = 15;
constexpr unsigned k_code_long = 14;
constexpr unsigned k_code_no_columns = 13;
constexpr unsigned k_code_one_line0 = 10;
constexpr unsigned k_code_one_line2 = 12;

// A 6-bit-chunk varint at `pos` (bit 6 continues); stops at the table's end or 32 bits.
uint64_t varint(std::span<const std::byte> t, size_t pos) {
  uint64_t value = 0;
  for (unsigned shift = 0; pos < t.size() && shift < 32; shift += 6, ++pos) {
    const auto b = static_cast<uint8_t>(t[pos]);
    value |= uint64_t{b & 63u} << shift;
    if ((b & 64) == 0) {
      break;
    }
  }
  return value;
}

int64_t signed_varint(std::span<const std::byte> t, size_t pos) {
  const uint64_t u = varint(t, pos);
  return (u & 1) ? -static_cast<int64_t>(u >> 1) : static_cast<int64_t>(u >> 1);
}

} // namespace

int64_t line_for_offset(std::span<const std::byte> t, int64_t firstlineno, int64_t offset) {
  if (offset < 0) {
    return firstlineno;
  }
  int64_t line = firstlineno;
  int64_t start = 0;
  size_t pos = 0;
  // Each entry starts with a byte whose bit 7 is set: code in bits 3-6, length - 1 (in 2-byte
  // code units) in bits 0-2; the entry's other bytes have bit 7 clear.
  while (pos < t.size()) {
    const auto first = static_cast<uint8_t>(t[pos]);
    if ((first & 0x80) == 0) {
      return -1; // not an entry's start: a damaged table
    }
    const unsigned code = (first >> 3) & 15;
    const int64_t end = start + ((first & 7) + 1) * 2;
    if (code == k_code_long || code == k_code_no_columns) {
      line += signed_varint(t, pos + 1);
    } else if (code >= k_code_one_line0 && code <= k_code_one_line2) {
      line += code - k_code_one_line0;
    }
    if (offset >= start && offset < end) {
      // A hostile table can walk the line below zero: that is no line either.
      return code == k_code_none || line < 0 ? -1 : line;
    }
    start = end;
    ++pos;
    while (pos < t.size() && (static_cast<uint8_t>(t[pos]) & 0x80) == 0) {
      ++pos;
    }
  }
  return -1;
}

} // namespace crash::python
