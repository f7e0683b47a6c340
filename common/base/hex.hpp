// The one hex encoder: bytes, numbers and random names as lower-case hex digits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace common {

// Lower-case hex of `bytes`, two digits a byte ("a1b2…"); empty for no bytes.
std::string hex_bytes(std::span<const std::byte> bytes);

// "0x" and lower-case hex digits without padding ("0x0", "0x7f12…"), as the record writes
// addresses.
std::string hex_u64(uint64_t v);

// The `digits` lowest hex digits of `v`, zero-padded, without "0x" (hex_digits(0xab, 4) is
// "00ab"); at most 16.
std::string hex_digits(uint64_t v, size_t digits);

// True when `s` is one or more lower-case hex digits (what hex_bytes writes: build-ids, ids).
bool is_hex(std::string_view s);

// A random lower-case hex string of 2 * `bytes` characters (getrandom).
std::string random_hex(size_t bytes);

} // namespace common
