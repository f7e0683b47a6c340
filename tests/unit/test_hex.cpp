#include "common/base/hex.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <set>

using common::hex_bytes;
using common::hex_digits;
using common::hex_u64;
using common::random_hex;

TEST_CASE("bytes are two lower-case digits each, high nibble first", "[hex]") {
  const std::array<std::byte, 5> bytes{std::byte{0x00}, std::byte{0x0f}, std::byte{0xa1},
                                       std::byte{0xb2}, std::byte{0xff}};
  CHECK(hex_bytes(bytes) == "000fa1b2ff");
  CHECK(hex_bytes({}) == "");
}

TEST_CASE("addresses are 0x and unpadded digits", "[hex]") {
  CHECK(hex_u64(0) == "0x0");
  CHECK(hex_u64(0xf) == "0xf");
  CHECK(hex_u64(0x10) == "0x10");
  CHECK(hex_u64(0x7f12abcd0042) == "0x7f12abcd0042");
  CHECK(hex_u64(UINT64_MAX) == "0xffffffffffffffff");
  CHECK(hex_u64(0x8000000000000000) == "0x8000000000000000");
}

TEST_CASE("fixed-width digits are zero-padded and cut to the width", "[hex]") {
  CHECK(hex_digits(0xab, 4) == "00ab");
  CHECK(hex_digits(0x1f, 2) == "1f");
  CHECK(hex_digits(0x123, 2) == "23"); // the lowest digits only
  CHECK(hex_digits(0x0123456789abcdef, 16) == "0123456789abcdef");
  CHECK(hex_digits(1, 0) == "");
  CHECK(hex_digits(UINT64_MAX, 40) == std::string(16, 'f')); // never past 64 bits
}

TEST_CASE("random ids are hex and distinct", "[hex]") {
  const auto a = random_hex(8);
  CHECK(a.size() == 16);
  CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
  std::set<std::string> seen{a};
  for (int i = 0; i < 100; ++i) {
    seen.insert(random_hex(8));
  }
  CHECK(seen.size() == 101);
  CHECK(random_hex(0).empty());
  CHECK(random_hex(3).size() == 6);
}

TEST_CASE("is_hex accepts what hex_bytes writes and nothing else", "[hex]") {
  CHECK(common::is_hex("0123456789abcdef"));
  CHECK(common::is_hex("a"));
  CHECK_FALSE(common::is_hex(""));
  CHECK_FALSE(common::is_hex("ABCDEF")); // upper case is not ours
  CHECK_FALSE(common::is_hex("12 34"));
  CHECK_FALSE(common::is_hex("0x12"));
  CHECK_FALSE(common::is_hex(std::string_view("ab\0cd", 5)));
}
