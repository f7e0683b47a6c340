#include "common/base/hex.hpp"
#include "common/base/parse.hpp"

#include <catch2/catch.hpp>

#include <cstdint>

using common::parse_hex_u64;
using common::parse_number;

TEST_CASE("numbers are the whole text and fit their type", "[parse]") {
  CHECK(parse_number<int>("42") == 42);
  CHECK(parse_number<int>("-7") == -7);
  CHECK(parse_number<uint16_t>("65535") == 65535);
  CHECK_FALSE(parse_number<uint16_t>("65536"));
  CHECK_FALSE(parse_number<unsigned>("-1"));
  CHECK_FALSE(parse_number<int>(""));
  CHECK_FALSE(parse_number<int>(" 1"));
  CHECK_FALSE(parse_number<int>("1 "));
  CHECK_FALSE(parse_number<int>("+1"));
  CHECK_FALSE(parse_number<int>("12abc"));
  CHECK(parse_number<double>("1.5") == 1.5);
  CHECK_FALSE(parse_number<double>("1.5x"));
}

TEST_CASE("numbers in another base", "[parse]") {
  CHECK(parse_number<uint64_t>("ff", 16) == 255);
  CHECK(parse_number<uint64_t>("FF", 16) == 255);
  CHECK(parse_number<unsigned>("777", 8) == 511);
  CHECK_FALSE(parse_number<uint64_t>("0xff", 16)); // no prefix here
  CHECK_FALSE(parse_number<uint64_t>("fg", 16));
  CHECK_FALSE(parse_number<uint64_t>("1" + std::string(16, '0'), 16)); // 2^64
}

TEST_CASE("addresses read back what hex_u64 writes", "[parse][hex]") {
  for (const uint64_t v : {uint64_t{0}, uint64_t{0x7f12abcd0042}, UINT64_MAX}) {
    CHECK(parse_hex_u64(common::hex_u64(v)) == v);
  }
  CHECK(parse_hex_u64("0xABC") == 0xabc);
  CHECK_FALSE(parse_hex_u64("0x"));
  CHECK_FALSE(parse_hex_u64("abc"));
  CHECK_FALSE(parse_hex_u64("0x12zz")); // the whole text, not a prefix of it
  CHECK_FALSE(parse_hex_u64("0x10000000000000000"));
  CHECK_FALSE(parse_hex_u64("0X12"));
  CHECK_FALSE(parse_hex_u64("0x-1"));
}

TEST_CASE("blanks and carriage returns are trimmed at both ends only", "[parse]") {
  CHECK(common::trim_blanks(" \t key = value \r") == "key = value");
  CHECK(common::trim_blanks("\r\n") == "\n"); // a line feed is not a blank
  CHECK(common::trim_blanks("   ").empty());
  CHECK(common::trim_blanks("").empty());
  CHECK(common::trim_blanks("a b") == "a b");
}

TEST_CASE("path components are the text between slashes", "[parse]") {
  using V = std::vector<std::string_view>;
  CHECK(common::path_components("/usr/lib/libc.so.6") == V{"usr", "lib", "libc.so.6"});
  CHECK(common::path_components("//a/./b/../c/") == V{"a", ".", "b", "..", "c"});
  CHECK(common::path_components("relative/x") == V{"relative", "x"});
  CHECK(common::path_components("/").empty());
  CHECK(common::path_components("").empty());
}
