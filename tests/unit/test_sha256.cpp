#include "common/base/sha256.hpp"

#include <catch2/catch.hpp>

TEST_CASE("SHA-256 matches the FIPS 180-4 test vectors", "[sha256]") {
  CHECK(common::sha256_hex("") ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(common::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(common::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  SECTION("streamed in odd pieces gives the same digest") {
    const std::string million(1000000, 'a');
    common::Sha256 h;
    for (size_t pos = 0; pos < million.size(); pos += 77) {
      h.update(std::string_view(million).substr(pos, 77));
    }
    const auto d = h.finish();
    CHECK(d[0] == 0xcd);
    CHECK(d[1] == 0xc7);
    CHECK(d[31] == 0xd0);
  }
  CHECK(common::sha256_hex("abc", 12) == "ba7816bf8f01");
}
