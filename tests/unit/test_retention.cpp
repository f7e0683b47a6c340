#include "common/base/config.hpp"
#include "common/store/retention.hpp"
#include "common/store/store.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>

using namespace common;

namespace {

RetentionEntry core(std::string exe, int64_t time, uint64_t bytes, std::string host = "h") {
  return {std::move(host), std::move(exe), "id" + std::to_string(time), time, bytes};
}

Config limits(uint64_t max_use, uint64_t keep_free = 0) {
  Config c;
  c.max_use = DiskAmount{max_use, 0};
  c.keep_free = DiskAmount{keep_free, 0};
  return c;
}

std::vector<std::string> removed_ids(const RetentionPlan& p, const std::vector<RetentionEntry>& e) {
  std::vector<std::string> out;
  for (const auto& s : p.remove_cores) {
    out.push_back(e[s.entry].id);
  }
  return out;
}

} // namespace

TEST_CASE("retention config keys", "[retention][config]") {
  const auto r = parse_config("max_records = 5000\nmax_record_age = 30d\n");
  CHECK(r.warnings.empty());
  CHECK(r.config.max_records == 5000);
  CHECK(r.config.max_record_age == 30 * 86400);
  const auto bad = parse_config("max_records = -1\nmax_record_age = 3 fortnights\n");
  CHECK(bad.warnings.size() == 2);
  CHECK(bad.config.max_records == 0);
  CHECK(bad.config.max_record_age == 0);
  // Durations are spelled as everywhere else (systemd.time).
  CHECK(parse_config("max_record_age = 3 weeks\n").config.max_record_age == 21 * 86400);
}

TEST_CASE("nothing is removed within the limits", "[retention]") {
  const std::vector<RetentionEntry> e = {core("a", 1, 100), core("b", 2, 100)};
  const auto p = plan_retention(limits(1000), e, {1 << 20, 1 << 20, 10});
  CHECK(p.remove_cores.empty());
  CHECK(p.retire.empty());
  CHECK(p.core_bytes_before == 200);
}

TEST_CASE("cores of the executable with most cores go first, oldest first", "[retention]") {
  // A crash loop ("loop", 4 cores) beside two one-off crashes, one of them the oldest of all.
  const std::vector<RetentionEntry> e = {
      core("rare", 1, 100), core("loop", 2, 100), core("loop", 3, 100),
      core("loop", 4, 100), core("loop", 5, 100), core("other", 6, 100),
  };
  SECTION("thinning the loop is enough") {
    const auto p = plan_retention(limits(400), e, {1 << 20, 1 << 20, 10});
    CHECK(removed_ids(p, e) == std::vector<std::string>{"id2", "id3"});
    CHECK(p.core_bytes_after == 400);
    CHECK(p.remove_cores[0].cause == RemovalCause::max_use);
  }
  SECTION("once every executable has one core, the oldest goes") {
    const auto p = plan_retention(limits(150), e, {1 << 20, 1 << 20, 10});
    CHECK(removed_ids(p, e) == std::vector<std::string>{"id2", "id3", "id4", "id1", "id5"});
  }
  SECTION("keep_free counts too") {
    const auto p = plan_retention(limits(1 << 20, 1000), e, {1 << 20, 850, 10});
    CHECK(removed_ids(p, e) == std::vector<std::string>{"id2", "id3"});
    CHECK(p.remove_cores[0].cause == RemovalCause::keep_free);
  }
  SECTION("percentages resolve against the file system, capped at 4 GiB") {
    Config c;
    c.max_use = DiskAmount{0, 10};
    c.keep_free = DiskAmount{0, 0};
    const auto p = plan_retention(c, e, {4000, 4000, 10});
    CHECK(p.max_use == 400);
    CHECK(removed_ids(p, e).size() == 2);
    const auto big = plan_retention(c, e, {100ULL << 40, 100ULL << 40, 10});
    CHECK(big.max_use == k_percent_cap);
  }
}

TEST_CASE("records go only beyond max_records or max_record_age", "[retention]") {
  const std::vector<RetentionEntry> e = {core("a", 100, 10), core("a", 200, 0), core("b", 300, 10)};
  Config c = limits(1 << 20);
  c.max_records = 2;
  auto p = plan_retention(c, e, {1 << 20, 1 << 20, 1000});
  REQUIRE(p.retire.size() == 1);
  CHECK(e[p.retire[0].entry].id == "id100");
  CHECK(p.retire[0].cause == RemovalCause::max_records);
  CHECK(p.core_bytes_after == 10);
  c.max_records = 0;
  c.max_record_age = 750; // now 1000: crashes before 250 go
  p = plan_retention(c, e, {1 << 20, 1 << 20, 1000});
  CHECK(p.retire.size() == 2);
  CHECK(p.retire[1].cause == RemovalCause::max_record_age);
}

TEST_CASE("remove_core keeps the record and marks it", "[retention]") {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "h" / "e");
  const std::string id = "0123456789abcdef";
  const auto folder = dir.path() / "h" / "e";
  test::spit(
      folder / (id + ".json"),
      R"({"id":"0123456789abcdef","future_field":7,"core":{"present":true,"reason":"stored"}})");
  ::chmod((folder / (id + ".json")).c_str(), 0640);
  test::spit(folder / (id + ".core.zst"), "zstd bytes");
  auto store = Store::open(dir.str());
  REQUIRE(store);
  RetentionEntry e{"h", "e", id, 1, 4096};
  REQUIRE(remove_core(*store, e, "2026-01-01T00:00:00Z"));
  CHECK_FALSE(std::filesystem::exists(folder / (id + ".core.zst")));
  const auto j = nlohmann::json::parse(test::slurp(folder / (id + ".json")));
  CHECK(j["core"]["removed"] == "2026-01-01T00:00:00Z");
  CHECK(j["core"]["present"] == true); // the capture is unchanged: series labels stay put
  CHECK(j["future_field"] == 7);
  struct stat st {};
  REQUIRE(::stat((folder / (id + ".json")).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  // Idempotent: a second removal (an interrupted vacuum finished) succeeds.
  CHECK(remove_core(*store, e, "2026-01-02T00:00:00Z"));
}

TEST_CASE("remove_core follows no symlink and reads no FIFO", "[retention]") {
  test::TempDir dir;
  const std::string id = "0123456789abcdef";
  std::filesystem::create_directories(dir.path() / "elsewhere" / "e");
  test::spit(dir.path() / "elsewhere" / "e" / (id + ".json"), R"({"core":{"present":true}})");
  test::spit(dir.path() / "elsewhere" / "e" / (id + ".core.zst"), "zstd bytes");
  auto store = Store::open(dir.str());
  REQUIRE(store);

  SECTION("a host directory that is a symlink") {
    std::filesystem::create_directory_symlink(dir.path() / "elsewhere", dir.path() / "h");
    CHECK_FALSE(remove_core(*store, RetentionEntry{"h", "e", id, 1, 4096}, "2026-01-01T00:00:00Z"));
    CHECK(std::filesystem::exists(dir.path() / "elsewhere" / "e" / (id + ".core.zst")));
  }
  SECTION("an exe directory that is a symlink") {
    std::filesystem::create_directories(dir.path() / "h");
    std::filesystem::create_directory_symlink(dir.path() / "elsewhere" / "e",
                                              dir.path() / "h" / "e");
    CHECK_FALSE(remove_core(*store, RetentionEntry{"h", "e", id, 1, 4096}, "2026-01-01T00:00:00Z"));
    CHECK(std::filesystem::exists(dir.path() / "elsewhere" / "e" / (id + ".core.zst")));
  }
  SECTION("a record that is a FIFO fails at once instead of blocking") {
    std::filesystem::create_directories(dir.path() / "h" / "e");
    REQUIRE(::mkfifo((dir.path() / "h" / "e" / (id + ".json")).c_str(), 0640) == 0);
    test::spit(dir.path() / "h" / "e" / (id + ".core.zst"), "zstd bytes");
    CHECK_FALSE(remove_core(*store, RetentionEntry{"h", "e", id, 1, 4096}, "2026-01-01T00:00:00Z"));
    CHECK(std::filesystem::exists(dir.path() / "h" / "e" / (id + ".core.zst")));
  }
}

TEST_CASE("orphan cores and stale temporaries are removed, nothing else", "[retention]") {
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  REQUIRE(store->open_exe_dir("h", "e"));
  const auto base = dir.path() / "h" / "e";
  test::spit(base / "1111111111111111.core.zst", "orphan, old");
  test::spit(base / "2222222222222222.core.zst", "orphan, fresh: its record may still come");
  test::spit(base / "3333333333333333.core.zst", "has a record");
  test::spit(base / "3333333333333333.json", "{}");
  test::spit(base / ".#4444444444444444.json.abcdef", "stale temporary");
  test::spit(base / "notes.txt", "foreign, left alone");
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  auto age = [&](const char* name, int64_t seconds) {
    const struct timespec t[2] = {{now - seconds, 0}, {now - seconds, 0}};
    REQUIRE(::utimensat(AT_FDCWD, (base / name).c_str(), t, 0) == 0);
  };
  age("1111111111111111.core.zst", 3600);
  age("3333333333333333.core.zst", 3600);
  age(".#4444444444444444.json.abcdef", 3600);

  const auto dry = remove_orphans(*store, now, 600, /*dry_run=*/true);
  REQUIRE(dry);
  CHECK(dry->orphans.size() == 2);
  CHECK(dry->failed.empty());
  CHECK(std::filesystem::exists(base / "1111111111111111.core.zst"));

  const auto removed = remove_orphans(*store, now, 600, /*dry_run=*/false);
  std::vector<std::string> paths;
  REQUIRE(removed);
  for (const auto& o : removed->orphans) {
    paths.push_back(o.path);
  }
  std::sort(paths.begin(), paths.end());
  CHECK(paths == std::vector<std::string>{"h/e/.#4444444444444444.json.abcdef",
                                          "h/e/1111111111111111.core.zst"});
  CHECK_FALSE(std::filesystem::exists(base / "1111111111111111.core.zst"));
  CHECK(std::filesystem::exists(base / "2222222222222222.core.zst"));
  CHECK(std::filesystem::exists(base / "3333333333333333.core.zst"));
  CHECK(std::filesystem::exists(base / "notes.txt"));
}
