#include "handler/handler.hpp"

#include <catch2/catch.hpp>

using common::CoreReason;
using handler::decide_policy;
using handler::PolicyInput;

namespace {
PolicyInput roomy() {
  PolicyInput in;
  in.fs_total = 100ULL << 30;
  in.fs_available = 80ULL << 30;
  in.store_usage = 0;
  return in;
}
} // namespace

TEST_CASE("RLIMIT_CORE below a page means no core", "[policy]") {
  common::Config c;
  PolicyInput in = roomy();
  in.rlimit = 0;
  auto b = decide_policy(c, in);
  CHECK_FALSE(b.store);
  CHECK(b.reason == CoreReason::rlimit);
  in.rlimit = 4095;
  CHECK(decide_policy(c, in).reason == CoreReason::rlimit);
  in.rlimit = 4096;
  CHECK(decide_policy(c, in).store);
  in.rlimit = UINT64_MAX;
  CHECK(decide_policy(c, in).store);
}

TEST_CASE("honour_rlimit_core = no stores the core whatever the process's limit", "[policy]") {
  common::Config c;
  CHECK(c.honour_rlimit_core); // the default, as systemd-coredump
  c.honour_rlimit_core = false;
  PolicyInput in = roomy();
  in.rlimit = 0;
  auto b = decide_policy(c, in);
  CHECK(b.store);
  CHECK(b.reason == CoreReason::stored);
  // The host's own limits still apply.
  c.max_core_size = 0;
  CHECK(decide_policy(c, in).reason == CoreReason::too_large);
}

TEST_CASE("size cap, free space and quota", "[policy]") {
  common::Config c;
  c.max_core_size = 1ULL << 30;
  c.keep_free = {1ULL << 30, 0};
  c.max_use = {10ULL << 30, 0};
  PolicyInput in = roomy();

  SECTION("plenty of room: the cap is max_core_size, output bounded by the tighter room") {
    auto b = decide_policy(c, in);
    REQUIRE(b.store);
    CHECK(b.max_raw == 1ULL << 30);
    CHECK(b.max_stored < 10ULL << 30);
    CHECK(b.limit_reason == CoreReason::quota);
  }
  SECTION("free space at the floor") {
    in.fs_available = 1ULL << 30;
    auto b = decide_policy(c, in);
    CHECK_FALSE(b.store);
    CHECK(b.reason == CoreReason::disk_full);
  }
  SECTION("free space a little above the floor: stored, cut before the floor") {
    in.fs_available = (1ULL << 30) + (64ULL << 20);
    auto b = decide_policy(c, in);
    REQUIRE(b.store);
    CHECK(b.max_stored < 64ULL << 20);
    CHECK(b.limit_reason == CoreReason::disk_full);
  }
  SECTION("quota used up") {
    in.store_usage = 10ULL << 30;
    auto b = decide_policy(c, in);
    CHECK_FALSE(b.store);
    CHECK(b.reason == CoreReason::quota);
  }
  SECTION("max_core_size below a page") {
    c.max_core_size = 0;
    CHECK(decide_policy(c, in).reason == CoreReason::too_large);
  }
}

TEST_CASE("rate limit per executable", "[policy]") {
  common::Config c;
  c.rate_limit_burst = 3;
  PolicyInput in = roomy();
  in.recent_cores = 2;
  CHECK(decide_policy(c, in).store);
  in.recent_cores = 3;
  auto b = decide_policy(c, in);
  CHECK_FALSE(b.store);
  CHECK(b.reason == CoreReason::rate_limited);
  c.rate_limit_burst = 0; // off
  CHECK(decide_policy(c, in).store);
}

TEST_CASE("percentages resolve against the file system, capped at 4 GiB", "[policy]") {
  common::Config c; // keep_free 15%, max_use 10%
  PolicyInput in;
  in.fs_total = 1ULL << 30;       // 1 GiB: keep_free 153 MiB, max_use 102 MiB
  in.fs_available = 160ULL << 20; // 7 MiB above the floor
  auto b = decide_policy(c, in);
  REQUIRE(b.store);
  CHECK(b.max_stored < 8ULL << 20);
  in.fs_available = 150ULL << 20;
  CHECK(decide_policy(c, in).reason == CoreReason::disk_full);
}

TEST_CASE("no room for a core means a minimal record, whatever else was decided", "[policy]") {
  using handler::RecordSize;
  common::Config c;
  c.keep_free = {1ULL << 30, 0};
  c.max_use = {10ULL << 30, 0};
  PolicyInput in = roomy();
  CHECK(decide_policy(c, in).record == RecordSize::full);
  SECTION("free space at keep_free") {
    in.fs_available = 1ULL << 30;
    const auto b = decide_policy(c, in);
    CHECK(b.reason == CoreReason::disk_full);
    CHECK(b.record == RecordSize::minimal);
  }
  SECTION("the store at max_use (records count in store_usage)") {
    in.store_usage = 10ULL << 30;
    const auto b = decide_policy(c, in);
    CHECK(b.reason == CoreReason::quota);
    CHECK(b.record == RecordSize::minimal);
  }
  SECTION("a rate-limited crash or one without RLIMIT_CORE on a full disk") {
    in.fs_available = 0;
    c.rate_limit_burst = 1;
    in.recent_cores = 1;
    auto b = decide_policy(c, in);
    CHECK(b.reason == CoreReason::rate_limited);
    CHECK(b.record == RecordSize::minimal);
    in.rlimit = 0;
    b = decide_policy(c, in);
    CHECK(b.reason == CoreReason::rlimit);
    CHECK(b.record == RecordSize::minimal);
  }
  SECTION("a core that ran out of room while it was stored") {
    common::CoreInfo core;
    core.present = false;
    core.reason = CoreReason::disk_full;
    CHECK(handler::record_size_for(core) == RecordSize::minimal);
    core.reason = CoreReason::rate_limited;
    CHECK(handler::record_size_for(core) == RecordSize::full);
    core.reason = CoreReason::truncated; // cut at keep_free, but stored: the room was reserved
    core.present = true;
    CHECK(handler::record_size_for(core) == RecordSize::full);
  }
}
