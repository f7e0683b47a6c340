#include "common/config/config.hpp"
#include "common/store/retention.hpp"
#include "common/store/store.hpp"
#include "common/store/upload_state.hpp"
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

// A crash of user `uid` with a core of `bytes` (0: none) and a record of `record_bytes`.
RetentionEntry crash_of(int64_t uid, std::string exe, int64_t time, uint64_t bytes,
                        uint64_t record_bytes = 0) {
  RetentionEntry e = core(std::move(exe), time, bytes);
  e.uid = uid;
  e.record_bytes = record_bytes;
  return e;
}

std::vector<std::string> retired_ids(const RetentionPlan& p, const std::vector<RetentionEntry>& e) {
  std::vector<std::string> out;
  for (const auto& s : p.retire) {
    out.push_back(e[s.entry].id);
  }
  return out;
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
  CHECK(bad.config.max_records == Config{}.max_records);
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

TEST_CASE("records are bounded by default", "[retention][config]") {
  // Without a bound, crashes without cores (past keep_free, rate-limited) pile up records.
  CHECK(Config{}.max_records == 10000);
  CHECK(parse_config("max_records = 0\n").config.max_records == 0); // still "no limit"
}

TEST_CASE("cores of the user with the most core bytes go first", "[retention]") {
  // uid 2000 has the most cores (a crash loop of small ones), uid 1000 the most bytes.
  const std::vector<RetentionEntry> e = {
      crash_of(1000, "big", 1, 500),  crash_of(1000, "big", 2, 500),
      crash_of(2000, "loop", 3, 100), crash_of(2000, "loop", 4, 100),
      crash_of(2000, "loop", 5, 100), crash_of(2000, "loop", 6, 100),
  };
  SECTION("the heaviest user pays first, oldest core first") {
    const auto p = plan_retention(limits(1000), e, {1 << 20, 1 << 20, 10});
    CHECK(removed_ids(p, e) == std::vector<std::string>{"id1"});
  }
  SECTION("a heavy user loses every core before a lighter one loses any") {
    const auto p = plan_retention(limits(350), e, {1 << 20, 1 << 20, 10});
    CHECK(removed_ids(p, e) == std::vector<std::string>{"id1", "id2", "id3"});
  }
  SECTION("the order is decided again after each core") {
    const std::vector<RetentionEntry> two = {crash_of(1, "a", 1, 100), crash_of(1, "a", 2, 100),
                                             crash_of(1, "a", 3, 100), crash_of(2, "b", 4, 150),
                                             crash_of(2, "b", 5, 150)};
    // 300 each: uid 1 first (by uid), then uid 2 is the heavier (300 to 200), then uid 1.
    const auto p = plan_retention(limits(250), two, {1 << 20, 1 << 20, 10});
    CHECK(removed_ids(p, two) == std::vector<std::string>{"id1", "id4", "id2"});
  }
  SECTION("users of equal weight go by uid, records without a uid last") {
    std::vector<RetentionEntry> same = {crash_of(7, "a", 1, 100), crash_of(3, "b", 2, 100),
                                        core("c", 0, 100)};
    const auto p = plan_retention(limits(100), same, {1 << 20, 1 << 20, 10});
    CHECK(removed_ids(p, same) == std::vector<std::string>{"id2", "id1"});
  }
}

TEST_CASE("within a user, the executable with most cores goes first", "[retention]") {
  const std::vector<RetentionEntry> e = {
      crash_of(1000, "rare", 1, 100),  crash_of(1000, "loop", 2, 100),
      crash_of(1000, "loop", 3, 100),  crash_of(1000, "loop", 4, 100),
      crash_of(2000, "other", 5, 100),
  };
  // uid 1000 is heavier (400): its loop is thinned before its rare crash loses its core.
  const auto p = plan_retention(limits(300), e, {1 << 20, 1 << 20, 10});
  CHECK(removed_ids(p, e) == std::vector<std::string>{"id2", "id3"});
}

TEST_CASE("records count toward max_use", "[retention]") {
  // Cores alone (300) fit in max_use (1000); with their records (3 x 300) they do not.
  const std::vector<RetentionEntry> e = {
      crash_of(1, "a", 1, 100, 300), crash_of(1, "a", 2, 100, 300), crash_of(1, "a", 3, 100, 300)};
  const auto p = plan_retention(limits(1000), e, {1 << 20, 1 << 20, 10});
  CHECK(removed_ids(p, e) == std::vector<std::string>{"id1", "id2"});
  CHECK(p.retire.empty()); // removing cores was enough: records are the history
  CHECK(p.record_bytes_before == 900);
  CHECK(p.core_bytes_after == 100);
}

TEST_CASE("runtime reports weigh with their cores", "[retention]") {
  // Cores alone (300) and records (300) fit in max_use (1000); with the runtime's reports beside
  // two of the cores (2 x 300) they do not, and the report of a crash without a core counts too.
  std::vector<RetentionEntry> e = {crash_of(1, "a", 1, 100, 100), crash_of(1, "a", 2, 100, 100),
                                   crash_of(1, "a", 3, 100, 100), crash_of(1, "b", 4, 0, 100)};
  e[0].report_bytes = 300;
  e[1].report_bytes = 300;
  e[3].report_bytes = 200;
  const auto p = plan_retention(limits(1000), e, {1 << 20, 1 << 20, 10});
  CHECK(p.core_bytes_before == 1100);
  // Executable a has the most to give: its oldest core and report (400), then the next (400).
  CHECK(removed_ids(p, e) == std::vector<std::string>{"id1", "id2"});
  CHECK(p.core_bytes_after == 300);
  CHECK(p.core_bytes_after + p.record_bytes_after <= 1000);
  CHECK(p.retire.empty());
  SECTION("a report without a core is removed like one") {
    const auto q = plan_retention(limits(500), e, {1 << 20, 1 << 20, 10});
    const auto removed = removed_ids(q, e);
    CHECK(std::find(removed.begin(), removed.end(), "id4") != removed.end());
    CHECK(q.core_bytes_after + q.record_bytes_after <= 500);
  }
}

TEST_CASE("records are retired under pressure once no core is left", "[retention]") {
  // 100 crashes without cores, 20 KiB of record each: 2000 KiB for a max_use of 1000 KiB.
  std::vector<RetentionEntry> e;
  for (int64_t t = 1; t <= 100; ++t) {
    e.push_back(crash_of(t % 2 == 0 ? 1000 : 2000, "exe", t, 0, 20 << 10));
  }
  e.push_back(crash_of(3000, "lone", 200, 50 << 10, 20 << 10));
  SECTION("max_use") {
    const auto p = plan_retention(limits(1000 << 10), e, {1 << 30, 1 << 30, 1000});
    CHECK(p.record_bytes_after + p.core_bytes_after <= 1000 << 10);
    CHECK(p.record_bytes_after + p.core_bytes_after > (1000 << 10) - (20 << 10));
    // The lone core went first; its record stays while the records of heavier users go.
    CHECK(removed_ids(p, e) == std::vector<std::string>{"id200"});
    const auto retired = retired_ids(p, e);
    REQUIRE(retired.size() == 51);
    CHECK(retired[0] == "id2"); // equal weight: uid 1000 (id2...) and 2000 (id1...) alternate
    CHECK(retired[1] == "id1");
    CHECK(retired[2] == "id4");
    CHECK(std::find(retired.begin(), retired.end(), "id200") == retired.end());
    for (const auto& s : p.retire) {
      CHECK(s.cause == RemovalCause::max_use);
    }
  }
  SECTION("keep_free") {
    const auto p = plan_retention(limits(1ULL << 40, 100 << 10), e, {1 << 30, 10 << 10, 1000});
    REQUIRE(!p.retire.empty());
    CHECK(p.retire[0].cause == RemovalCause::keep_free);
    // 50 KiB from the core, then 20 KiB per record: 40 KiB more needed, 2 records.
    CHECK(p.retire.size() == 2);
  }
  SECTION("a record retired after its core was removed is one step, not two") {
    const std::vector<RetentionEntry> one = {crash_of(1, "a", 1, 100, 100)};
    const auto p = plan_retention(limits(50), one, {1 << 20, 1 << 20, 10});
    CHECK(retired_ids(p, one) == std::vector<std::string>{"id1"});
    CHECK(p.remove_cores.empty());
    CHECK(p.core_bytes_after + p.record_bytes_after == 0);
  }
}

TEST_CASE("remove_core keeps the record and marks it", "[retention]") {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "h" / "e");
  const std::string id = "0123456789abcdef";
  const auto folder = dir.path() / "h" / "e";
  test::spit(
      folder / (id + ".json"),
      R"({"id":"0123456789abcdef","future_field":7,"core":{"present":true,"reason":"stored"},)"
      R"("runtime_report":{"runtime":"jvm","stored":"h/e/0123456789abcdef.report"}})");
  ::chmod((folder / (id + ".json")).c_str(), 0640);
  test::spit(folder / (id + ".core.zst"), "zstd bytes");
  test::spit(folder / (id + ".report"), "hs_err");
  auto store = Store::open(dir.str());
  REQUIRE(store);
  RetentionEntry e{"h", "e", id, 1, 4096};
  REQUIRE(remove_core(*store, e, "2026-01-01T00:00:00Z"));
  CHECK_FALSE(std::filesystem::exists(folder / (id + ".core.zst")));
  CHECK_FALSE(std::filesystem::exists(folder / (id + ".report"))); // goes with its core
  const auto j = nlohmann::json::parse(test::slurp(folder / (id + ".json")));
  CHECK(j["core"]["removed"] == "2026-01-01T00:00:00Z");
  CHECK(j["runtime_report"]["removed"] == "2026-01-01T00:00:00Z");
  CHECK(j["runtime_report"]["stored"] == "h/e/0123456789abcdef.report"); // what it was
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
  test::spit(base / "5555555555555555.report", "a runtime report without its record");
  test::spit(base / "3333333333333333.report", "a runtime report beside its record");
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  auto age = [&](const char* name, int64_t seconds) {
    const struct timespec t[2] = {{now - seconds, 0}, {now - seconds, 0}};
    REQUIRE(::utimensat(AT_FDCWD, (base / name).c_str(), t, 0) == 0);
  };
  age("1111111111111111.core.zst", 3600);
  age("3333333333333333.core.zst", 3600);
  age(".#4444444444444444.json.abcdef", 3600);
  age("5555555555555555.report", 3600);
  age("3333333333333333.report", 3600);

  const auto dry = remove_orphans(*store, now, 600, /*dry_run=*/true);
  REQUIRE(dry);
  CHECK(dry->orphans.size() == 3);
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
                                          "h/e/1111111111111111.core.zst",
                                          "h/e/5555555555555555.report"});
  CHECK(std::filesystem::exists(base / "3333333333333333.report"));
  CHECK_FALSE(std::filesystem::exists(base / "1111111111111111.core.zst"));
  CHECK(std::filesystem::exists(base / "2222222222222222.core.zst"));
  CHECK(std::filesystem::exists(base / "3333333333333333.core.zst"));
  CHECK(std::filesystem::exists(base / "notes.txt"));
}

namespace {

// A crash whose core (and, when `record_too`, record) the uploader has still to send.
RetentionEntry awaiting(RetentionEntry e, bool record_too = false) {
  e.core_awaiting_upload = true;
  e.record_awaiting_upload = record_too;
  return e;
}

} // namespace

TEST_CASE("cores still to upload go only when the quota needs them", "[retention][upload]") {
  // Oldest first: a pending core, then two uploaded ones, then a pending one. Without the
  // upload rule the oldest (a pending one) would go first.
  const std::vector<RetentionEntry> e = {awaiting(core("a", 1, 100)), core("a", 2, 100),
                                         core("b", 3, 100), awaiting(core("b", 4, 100))};
  SECTION("the uploaded ones meet the quota: no pending core goes") {
    const auto p = plan_retention(limits(200), e, {1 << 20, 1 << 20, 10});
    CHECK(removed_ids(p, e) == std::vector<std::string>{"id2", "id3"});
    for (const auto& s : p.remove_cores) {
      CHECK_FALSE(s.before_upload);
    }
  }
  SECTION("only past every uploaded core does a pending one go, marked so") {
    const auto p = plan_retention(limits(100), e, {1 << 20, 1 << 20, 10});
    REQUIRE(removed_ids(p, e) == std::vector<std::string>{"id2", "id3", "id1"});
    CHECK_FALSE(p.remove_cores[0].before_upload);
    CHECK_FALSE(p.remove_cores[1].before_upload);
    CHECK(p.remove_cores[2].before_upload);
    CHECK(p.remove_cores[2].cause == RemovalCause::max_use);
    CHECK(p.core_bytes_after == 100);
  }
  SECTION("keep_free forces them the same way") {
    const auto p = plan_retention(limits(1 << 20, 1000), e, {1 << 20, 650, 10});
    REQUIRE(removed_ids(p, e) == std::vector<std::string>{"id2", "id3", "id1", "id4"});
    CHECK(p.remove_cores[3].before_upload);
    CHECK(p.remove_cores[3].cause == RemovalCause::keep_free);
  }
  SECTION("without upload the policy is the plain one") {
    const std::vector<RetentionEntry> plain = {core("a", 1, 100), core("a", 2, 100),
                                               core("b", 3, 100), core("b", 4, 100)};
    const auto p = plan_retention(limits(200), plain, {1 << 20, 1 << 20, 10});
    CHECK(removed_ids(p, plain) == std::vector<std::string>{"id1", "id3"});
  }
}

TEST_CASE("records still to upload are kept by count and age", "[retention][upload]") {
  Config c = limits(1 << 20);
  c.max_records = 2;
  c.max_record_age = 100;
  // now = 1000: ids 1 to 3 are past the age; 1 and 2 are beyond the count too.
  std::vector<RetentionEntry> e = {core("a", 1, 0), core("a", 2, 0), core("a", 3, 0),
                                   core("a", 950, 0)};
  e[0].record_awaiting_upload = true;
  e[2].record_awaiting_upload = true;
  const auto p = plan_retention(c, e, {1 << 20, 1 << 20, 1000});
  // id1 and id3 stay until they are uploaded; no newer record goes in their place.
  CHECK(retired_ids(p, e) == std::vector<std::string>{"id2"});
  e[0].record_awaiting_upload = false;
  e[2].record_awaiting_upload = false;
  CHECK(retired_ids(plan_retention(c, e, {1 << 20, 1 << 20, 1000}), e) ==
        std::vector<std::string>{"id1", "id2", "id3"});
}

TEST_CASE("over quota with no core left, uploaded records go first", "[retention][upload]") {
  std::vector<RetentionEntry> e = {crash_of(1, "a", 1, 0, 100), crash_of(1, "a", 2, 0, 100),
                                   crash_of(1, "a", 3, 0, 100)};
  e[0].record_awaiting_upload = true;
  SECTION("met by the uploaded ones") {
    const auto p = plan_retention(limits(100), e, {1 << 20, 1 << 20, 10});
    CHECK(retired_ids(p, e) == std::vector<std::string>{"id2", "id3"});
  }
  SECTION("forced: the record not yet uploaded goes last, said so") {
    const auto p = plan_retention(limits(50), e, {1 << 20, 1 << 20, 10});
    REQUIRE(retired_ids(p, e) == std::vector<std::string>{"id2", "id3", "id1"});
    CHECK(p.retire[2].before_upload);
    CHECK_FALSE(p.retire[0].before_upload);
  }
}

TEST_CASE("remove_core says when the core goes before its upload", "[retention][upload]") {
  test::TempDir dir;
  const auto folder = dir.path() / "h" / "e";
  std::filesystem::create_directories(folder);
  const std::string id = "0123456789abcdef";
  test::spit(folder / (id + ".json"), R"({"id":"0123456789abcdef","core":{"present":true}})");
  test::spit(folder / (id + ".core.zst"), "zstd bytes");
  auto store = Store::open(dir.str());
  REQUIRE(store);
  const RetentionEntry e{"h", "e", id, 1, 4096};
  REQUIRE(remove_core(*store, e, "2026-01-01T00:00:00Z", true));
  CHECK_FALSE(std::filesystem::exists(folder / (id + ".core.zst")));
  auto j = nlohmann::json::parse(test::slurp(folder / (id + ".json")));
  CHECK(j["core"]["removed"] == "2026-01-01T00:00:00Z");
  CHECK(j["core"]["removed_before_upload"] == true);
  // An uploaded core's removal adds no such mark.
  test::spit(folder / (id + ".json"), R"({"id":"0123456789abcdef","core":{"present":true}})");
  test::spit(folder / (id + ".core.zst"), "zstd bytes");
  REQUIRE(remove_core(*store, e, "2026-01-01T00:00:00Z"));
  j = nlohmann::json::parse(test::slurp(folder / (id + ".json")));
  CHECK(j["core"]["removed"] == "2026-01-01T00:00:00Z");
  CHECK_FALSE(j["core"].contains("removed_before_upload"));
}

TEST_CASE("the upload state is read as untrusted", "[retention][upload]") {
  test::TempDir dir;
  auto fd = open_upload_state_dir(dir.str());
  REQUIRE(fd);
  const auto state = [&](const std::string& id) { return read_upload_progress(fd->get(), id); };
  test::spit(dir.path() / "aaaa.json", R"({"id":"aaaa","record_done":true,"core":"done"})");
  test::spit(dir.path() / "bbbb.json", R"({"id":"bbbb","record_done":false,"core":"pending"})");
  test::spit(dir.path() / "cccc.json", R"({"record_done":"yes","core":"done"})");
  test::spit(dir.path() / "dddd.json", R"({"record_done":true,"core":"uploaded?"})");
  test::spit(dir.path() / "eeee.json", "not json");
  test::spit(dir.path() / "ffff.json", std::string(k_max_upload_state_bytes + 1, ' ') + "{}");
  std::filesystem::create_symlink(dir.path() / "aaaa.json", dir.path() / "link.json");
  REQUIRE(::mkfifo((dir.path() / "fifo.json").c_str(), 0600) == 0);

  const auto done = state("aaaa");
  REQUIRE(done);
  CHECK(done->record_done);
  CHECK(done->core == UploadCoreState::done);
  const auto pending = state("bbbb");
  REQUIRE(pending);
  CHECK_FALSE(pending->record_done);
  CHECK(pending->core == UploadCoreState::pending);
  for (const char* id : {"cccc", "dddd", "eeee", "ffff", "link", "fifo", "missing", "../x"}) {
    INFO(id);
    CHECK_FALSE(state(id)); // the caller counts it "not uploaded"
  }
  // The directory itself is not reached through a symbolic link either.
  std::filesystem::create_directory_symlink(dir.path(), dir.path() / "dirlink");
  CHECK_FALSE(open_upload_state_dir((dir.path() / "dirlink").string()));
}
