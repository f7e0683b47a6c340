#include "common/base/units.hpp"
#include "common/config/config.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <vector>

using common::human_size;
using common::parse_duration;
using common::parse_size;

TEST_CASE("sizes in binary units", "[units]") {
  CHECK(parse_size("4096") == 4096);
  CHECK(parse_size("1K") == 1024);
  CHECK(parse_size("1k") == 1024);
  CHECK(parse_size("1.5M") == 1572864);
  CHECK(parse_size("16G") == 16ULL << 30);
  CHECK(parse_size(" 2T ") == 2ULL << 40);
  CHECK(parse_size("0") == 0);
  CHECK_FALSE(parse_size(""));
  CHECK_FALSE(parse_size("K"));
  CHECK_FALSE(parse_size("-1"));
  CHECK_FALSE(parse_size("x"));
  CHECK_FALSE(parse_size("1 K"));
  CHECK_FALSE(parse_size("1KB"));
  CHECK_FALSE(parse_size("inf"));
  CHECK_FALSE(parse_size("nan"));
  CHECK_FALSE(parse_size("99999999T")); // past 2^64
}

TEST_CASE("sizes for people", "[units]") {
  CHECK(human_size(0) == "0 B");
  CHECK(human_size(1023) == "1023 B");
  CHECK(human_size(1536) == "1.5 KiB");
  CHECK(human_size(16ULL << 30) == "16.0 GiB");
  CHECK(human_size(5ULL << 50) == "5120.0 TiB"); // TiB is the largest unit
}

TEST_CASE("durations as systemd spells them", "[units]") {
  CHECK(parse_duration("90") == 90);
  CHECK(parse_duration("30s") == 30);
  CHECK(parse_duration("15m") == 900);
  CHECK(parse_duration("15min") == 900);
  CHECK(parse_duration("2h") == 7200);
  CHECK(parse_duration("3d") == 3 * 86400);
  CHECK(parse_duration("1w") == 604800);
  CHECK(parse_duration("1h30m") == 5400);
  CHECK(parse_duration("1h 30min") == 5400);
  CHECK(parse_duration("2 hours") == 7200);
  CHECK(parse_duration(" 2 weeks\t") == 2 * 604800);
  CHECK(parse_duration("1M") == 2629800); // M is a month, m a minute
  CHECK(parse_duration("1y") == 31557600);
  CHECK(parse_duration("0") == 0);
  CHECK_FALSE(parse_duration(""));
  CHECK_FALSE(parse_duration("h"));
  CHECK_FALSE(parse_duration("2 parsecs"));
  CHECK_FALSE(parse_duration("1.5h"));
  CHECK_FALSE(parse_duration("-2h"));
  CHECK_FALSE(parse_duration("2h30")); // every term after the first needs its unit too
}

TEST_CASE("durations are bounded whatever the text", "[units]") {
  CHECK(parse_duration("4294967296") == 4294967296ULL);
  CHECK_FALSE(parse_duration("4294967297"));
  CHECK(parse_duration("4294967296y") == 4294967296ULL * 31557600);
  CHECK_FALSE(parse_duration("4294967297y"));
  CHECK_FALSE(parse_duration("99999999999999999999s"));
  // Many terms, each within bounds: the running total is checked, never wraps.
  std::string many;
  for (int i = 0; i < 40; ++i) {
    many += "4294967296y";
  }
  CHECK_FALSE(parse_duration(many));
  std::string small;
  for (int i = 0; i < 1000; ++i) {
    small += "1s ";
  }
  CHECK(parse_duration(small) == 1000);
}

TEST_CASE("the configuration reads durations with the same rules", "[units][config]") {
  const auto r = common::parse_config("capture_timeout = 2min\nanalysis_timeout = 1m 30s\n");
  CHECK(r.warnings.empty());
  CHECK(r.config.capture_timeout == 120);
  CHECK(r.config.analysis_timeout == 90);
}

TEST_CASE("human sizes round as printf's %.1f of the binary units", "[units]") {
  // The reference: the value in its unit as a double, printed by printf.
  auto reference = [](uint64_t bytes) {
    static constexpr const char* k_units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    size_t u = 0;
    while (v >= 1024 && u + 1 < std::size(k_units)) {
      v /= 1024;
      ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, k_units[u]);
    return std::string(buf);
  };
  std::vector<uint64_t> sizes = {0,
                                 1,
                                 1023,
                                 1024,
                                 1025,
                                 1075,
                                 1076,
                                 1126,
                                 1536,
                                 1587,
                                 1588,
                                 1048575,
                                 1048576,
                                 (1ULL << 40) - 1,
                                 1ULL << 40,
                                 1ULL << 50,
                                 (1ULL << 53) - 1,
                                 1ULL << 53,
                                 UINT64_MAX};
  // Ties: exactly halfway between two tenths, in every unit.
  for (unsigned shift = 10; shift <= 40; shift += 10) {
    for (uint64_t tenths = 0; tenths < 64; ++tenths) {
      sizes.push_back(((2 * tenths + 1) << (shift - 1)) / 10);
      sizes.push_back((((2 * tenths + 1) << (shift - 1)) + 9) / 10);
    }
  }
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (int i = 0; i < 100000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sizes.push_back(x >> (x % 64));
  }
  for (uint64_t bytes : sizes) {
    INFO(bytes);
    REQUIRE(common::human_size(bytes) == reference(bytes));
  }
}
