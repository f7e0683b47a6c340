#include "common/base/io.hpp"
#include "common/store/store.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/file.h>

#include <chrono>
#include <ctime>
#include <set>

using namespace common;

TEST_CASE("store layout: safe components only, records listed, foreign files skipped", "[store]") {
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  CHECK_FALSE(store->open_exe_dir("..", "x"));
  CHECK_FALSE(store->open_exe_dir("h", "a/b"));
  CHECK_FALSE(store->open_exe_dir(".hidden", "x"));
  auto exe = store->open_exe_dir("web01", "usr!bin!ruby");
  REQUIRE(exe);
  test::spit(dir.path() / "web01/usr!bin!ruby/0123456789abcdef.json", "{}");
  test::spit(dir.path() / "web01/usr!bin!ruby/0123456789abcdef.core.zst", "z");
  test::spit(dir.path() / "web01/usr!bin!ruby/fedcba9876543210.json", "{}");
  test::spit(dir.path() / "web01/usr!bin!ruby/.#tmp.json.abc", "partial");
  test::spit(dir.path() / ".ledger.json", "{}");
  std::set<std::string> seen;
  size_t with_core = 0;
  const size_t failures = store->for_each_record([&](const StoreEntry& e) {
    seen.insert(e.host + "/" + e.exe + "/" + e.id);
    with_core += e.has_core ? 1 : 0;
  });
  CHECK(failures == 0);
  CHECK(seen == std::set<std::string>{"web01/usr!bin!ruby/0123456789abcdef",
                                      "web01/usr!bin!ruby/fedcba9876543210"});
  CHECK(with_core == 1);
  CHECK(is_record_id(new_record_id()));
  CHECK_FALSE(is_record_id("../etc/passwd"));
}

TEST_CASE("usage estimate: walked when stale, incremented by writers", "[store]") {
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  REQUIRE(store->open_exe_dir("h", "e"));
  test::spit(dir.path() / "h/e/0123456789abcdef.core.zst", std::string(100000, 'x'));
  const uint64_t walked = store->usage_estimate(300);
  CHECK(walked >= 100000);
  CHECK(walked == store->disk_usage());

  // A new core is added by its writer; the estimate does not walk again while fresh.
  test::spit(dir.path() / "h/e/fedcba9876543210.core.zst", std::string(50000, 'y'));
  store->add_usage(50000);
  CHECK(store->usage_estimate(300) == walked + 50000);

  // Stale (or with max_age 0): walked again, exact.
  CHECK(store->usage_estimate(0) == store->disk_usage());

  // A corrupt or foreign usage file means "walk".
  test::spit(dir.path() / ".usage", "garbage");
  CHECK(store->usage_estimate(300) == store->disk_usage());
}

TEST_CASE("the usage file is parsed strictly", "[store]") {
  const auto v = common::parse_usage("123 456\n");
  REQUIRE(v);
  CHECK(v->bytes == 123);
  CHECK(v->walked == 456);
  CHECK(common::parse_usage("18446744073709551615 0"));
  for (const char* bad : {"-1 0", "1 -5", " 1 2", "1  2", "1 2 3", "1", "", "1 2\n\n", "0x10 1",
                          "18446744073709551616 0", "+1 2"}) {
    CHECK_FALSE(common::parse_usage(bad));
  }
}

TEST_CASE("usage estimate never waits on a lock someone else holds", "[store]") {
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  REQUIRE(store->open_exe_dir("h", "e"));
  test::spit(dir.path() / "h/e/0123456789abcdef.core.zst", std::string(100000, 'x'));
  const uint64_t walked = store->usage_estimate(300);
  // The store user (or a compromised exporter) holds the usage file's lock for ever.
  auto holder = open_at(AT_FDCWD, dir.path() / ".usage", O_RDONLY);
  REQUIRE(holder);
  REQUIRE(::flock(holder->get(), LOCK_SH) == 0);
  const auto start = std::chrono::steady_clock::now();
  // Fresh: the value is read without the lock.
  CHECK(store->usage_estimate(300) == walked);
  // An update cannot be written without the lock: it is dropped, not waited for.
  store->add_usage(50000);
  CHECK(store->usage_estimate(300) == walked);
  // Stale: walked, not written.
  CHECK(store->usage_estimate(0) == store->disk_usage());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  ::flock(holder->get(), LOCK_UN);
  store->add_usage(50000);
  CHECK(store->usage_estimate(300) == walked + 50000);
}
