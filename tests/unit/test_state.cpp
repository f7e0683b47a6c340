// The uploader's per-crash state: the delay before a failed crash is tried again.
#include "uploader/state.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

TEST_CASE("Backoff doubles from 10 s to an hour, jittered by a half either way", "[uploader]") {
  // attempts → the delay before it is jittered
  const std::vector<std::pair<uint64_t, int64_t>> bases = {
      {0, 10}, {1, 10}, {2, 20}, {3, 40}, {7, 640}, {9, 2560}, {10, 3600}, {1000, 3600}};
  for (const auto& [attempts, base] : bases) {
    std::set<int64_t> seen;
    double sum = 0;
    constexpr int k_samples = 400;
    for (int i = 0; i < k_samples; ++i) {
      const int64_t d = uploader::backoff_seconds(attempts);
      INFO("attempts " << attempts << ": " << d << " s");
      CHECK(d >= base / 2);
      CHECK(d < base + base / 2);
      seen.insert(d);
      sum += static_cast<double>(d);
    }
    // Hosts failing together spread out: many different delays, centred on the base.
    CHECK(seen.size() >= std::min<size_t>(static_cast<size_t>(base / 2), 20));
    const double mean = sum / k_samples;
    CHECK(mean > 0.85 * static_cast<double>(base));
    CHECK(mean < 1.15 * static_cast<double>(base));
  }
}
