// SHA-256, for collision-resistant short names and crash signatures.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace common {

class Sha256 {
public:
  Sha256();
  // Adds bytes to the message.
  void update(std::span<const std::byte> data);
  void update(std::string_view data);
  // Returns the 32-byte digest; the object is spent afterwards.
  std::array<uint8_t, 32> finish();

private:
  void block(const uint8_t* p);

  std::array<uint32_t, 8> m_h;
  std::array<uint8_t, 64> m_buf{};
  size_t m_buf_len = 0;
  uint64_t m_total = 0;
};

// The hex SHA-256 of `data`, cut to `hex_chars` characters (at most 64).
std::string sha256_hex(std::string_view data, size_t hex_chars = 64);

} // namespace common
