#include "common/base/hex.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

namespace common {

namespace {

constexpr char k_digits[] = "0123456789abcdef";

} // namespace

std::string hex_bytes(std::span<const std::byte> bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const std::byte b : bytes) {
    out += k_digits[std::to_integer<unsigned>(b) >> 4];
    out += k_digits[std::to_integer<unsigned>(b) & 0xf];
  }
  return out;
}

std::string hex_u64(uint64_t v) {
  size_t digits = 1;
  while (digits < 16 && (v >> (4 * digits)) != 0) {
    ++digits;
  }
  return "0x" + hex_digits(v, digits);
}

std::string hex_digits(uint64_t v, size_t digits) {
  digits = std::min<size_t>(digits, 16);
  std::string out(digits, '0');
  for (size_t i = 0; i < digits; ++i) {
    out[digits - 1 - i] = k_digits[(v >> (4 * i)) & 0xf];
  }
  return out;
}

bool is_hex(std::string_view s) {
  return !s.empty() && s.find_first_not_of(k_digits) == std::string_view::npos;
}

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    const ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      // getrandom() only fails before the pool is initialised on very old kernels; a weak but
      // unique fallback still keeps names apart.
      const auto seed = static_cast<unsigned long long>(::getpid()) ^
                        static_cast<unsigned long long>(::time(nullptr)) ^
                        reinterpret_cast<uintptr_t>(&raw);
      for (size_t i = got; i < bytes; ++i) {
        raw[i] = static_cast<char>((seed >> ((i % 8) * 8)) ^ i);
      }
      break;
    }
    got += static_cast<size_t>(n);
  }
  return hex_bytes(std::as_bytes(std::span(raw)));
}

} // namespace common
