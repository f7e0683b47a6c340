#include "common/packages/group_state.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

using namespace common;
using nlohmann::json;
using test::spit;
using test::TempDir;

namespace {

json record(const std::string& version, const std::string& exe_build_id) {
  return json::parse(R"({"executable": "/usr/bin/crashy",
    "crash": {"module": "/usr/lib/libcrashy.so.1"},
    "packages": {"owners": [
      {"path": "/usr/lib/libcrashy.so.1", "package": "libcrashy1", "version": ")" +
                     version + R"(", "source": "dpkg"},
      {"path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "package": "libc6", "version": "2.36-9"}]},
    "mappings": [{"path": "/usr/bin/crashy", "build_id": ")" +
                     exe_build_id + R"("},
                 {"path": "/usr/lib/libcrashy.so.1", "build_id": "bbbb"}]})");
}

ResolveMark package_mark(const std::string& version) {
  auto m = parse_resolve_target("libcrashy1=" + version);
  REQUIRE(m);
  return *m;
}

} // namespace

TEST_CASE("group keys: the signature, else executable and signal", "[group_state]") {
  CHECK(group_key("0123456789abcdef", "/usr/bin/a", 11) == "0123456789abcdef");
  CHECK(group_key("", "/usr/bin/a", 11) == "x:11:/usr/bin/a");
  CHECK(group_key("", "/usr/bin/a", 6) != group_key("", "/usr/bin/a", 11));
}

TEST_CASE("a crash's version: the packages of its executable and crash module, its build-id",
          "[group_state]") {
  const CrashVersion v = crash_version(record("2.0-1", "9C02aa"));
  CHECK(v.build_id == "9C02aa");
  REQUIRE(v.packages.size() == 1); // libc6 owns neither the executable nor the crash module
  CHECK(v.packages[0] == std::pair<std::string, std::string>{"libcrashy1", "2.0-1"});
  CHECK(describe_version(v) == "libcrashy1 2.0-1, build-id 9C02aa");
  CHECK(crash_version(json::parse(R"({"packages": 3, "mappings": {"a": 1}, "crash": []})")) ==
        CrashVersion{});
  CHECK(crash_version(json::array()) == CrashVersion{});
}

TEST_CASE("resolve targets: PACKAGE=VERSION or a build-id", "[group_state]") {
  auto p = parse_resolve_target("libcrashy1=1:2.0-1~rc1");
  REQUIRE(p);
  CHECK(p->package == "libcrashy1");
  CHECK(p->version == "1:2.0-1~rc1");
  auto b = parse_resolve_target("3F1A00");
  REQUIRE(b);
  CHECK(b->build_id == "3f1a00");
  CHECK(describe_mark(*b) == "build-id 3f1a00");
  CHECK_FALSE(parse_resolve_target("libcrashy1="));
  CHECK_FALSE(parse_resolve_target("=2.0"));
  CHECK_FALSE(parse_resolve_target("lib crashy=2.0"));
  CHECK_FALSE(parse_resolve_target("libcrashy1=not a version"));
  CHECK_FALSE(parse_resolve_target("xyz"));
  CHECK_FALSE(parse_resolve_target(""));
}

TEST_CASE("regressions: not older than the fixed version, by Debian ordering", "[group_state]") {
  const ResolveMark fixed = package_mark("2.0-1");
  CHECK_FALSE(regresses(fixed, crash_version(record("1.0-1", "aa"))));
  CHECK_FALSE(regresses(fixed, crash_version(record("2.0~rc1-1", "aa")))); // ~ sorts first
  CHECK(regresses(fixed, crash_version(record("2.0-1", "aa"))));
  CHECK(regresses(fixed, crash_version(record("2.0-1+b1", "aa"))));
  CHECK(regresses(fixed, crash_version(record("10.0-1", "aa"))));
  // A crash that does not name the package cannot be shown to be older.
  CHECK(regresses(package_mark("2.0-1"), CrashVersion{}));
  CHECK(regresses(fixed, crash_version(record("", "aa"))));
}

TEST_CASE("regressions of a build-id mark: a build the group had not crashed with",
          "[group_state]") {
  ResolveMark m;
  m.build_id = "cc";
  m.builds_before = {"aa", "bb"};
  CrashVersion v;
  v.build_id = "aa";
  CHECK_FALSE(regresses(m, v)); // an old build still running
  v.build_id = "cc";
  CHECK(regresses(m, v)); // the fixed build itself
  v.build_id = "dd";
  CHECK(regresses(m, v)); // a later one
  v.build_id.clear();
  CHECK(regresses(m, v));
}

TEST_CASE("group states", "[group_state]") {
  const int64_t now = 1'000'000;
  const ResolveMark mark = package_mark("2.0-1");
  CHECK(group_state(now - 10, now, 3600, nullptr, false) == GroupState::new_group);
  CHECK(group_state(now - 3600, now, 3600, nullptr, false) == GroupState::ongoing);
  CHECK(group_state(now + 10, now, 3600, nullptr, false) == GroupState::ongoing);
  CHECK(group_state(0, now, 3600, nullptr, false) == GroupState::ongoing);
  CHECK(group_state(now - 10, now, 3600, &mark, false) == GroupState::resolved);
  CHECK(group_state(now - 10, now, 3600, &mark, true) == GroupState::regressed);
  CHECK(to_string(GroupState::new_group) == "new");
  CHECK(to_string(GroupState::regressed) == "regressed");
}

TEST_CASE("marks and seen-set round-trip through their text", "[group_state]") {
  Marks marks;
  ResolveMark a = package_mark("2.0-1");
  a.group = "0123456789abcdef";
  a.time = 1700000000;
  a.uid = 0;
  ResolveMark b;
  b.group = "x:6:/usr/bin/a";
  b.build_id = "cc";
  b.builds_before = {"aa"};
  b.time = 1700000001;
  b.uid = 107;
  ResolveMark next; // resolve without --in: fixed in the next build
  next.group = "1111222233334444";
  next.builds_before = {"aa", "bb"};
  marks.by_group = {{a.group, a}, {b.group, b}, {next.group, next}};
  auto m = parse_marks(marks_to_text(marks));
  REQUIRE(m);
  CHECK(m->by_group == marks.by_group);

  Seen seen;
  seen.groups["0123456789abcdef"] = SeenGroup{1700000000, {"web1", "/usr/bin/a", "SEGV"}, ""};
  seen.groups["fedcba9876543210"] =
      SeenGroup{1700000000, {"web1", "/usr/bin/a", "SEGV"}, "0123456789abcdef"};
  seen.new_counts[{"web1", "/usr/bin/a", "SEGV"}] = 1;
  seen.regressions[{"web1", "/usr/bin/a", "SEGV"}] = 2;
  seen.regressed = {a.event_id()};
  auto s = parse_seen(seen_to_text(seen));
  REQUIRE(s);
  CHECK(*s == seen);
}

TEST_CASE("several stores' files merge: the latest mark, the earliest first crash",
          "[group_state]") {
  ResolveMark old_mark = package_mark("1.0-1");
  old_mark.group = "0123456789abcdef";
  old_mark.time = 100;
  ResolveMark new_mark = package_mark("2.0-1");
  new_mark.group = old_mark.group;
  new_mark.time = 200;
  ResolveMark other;
  other.group = "x:6:/usr/bin/a";
  other.time = 50;
  Marks a;
  a.by_group = {{old_mark.group, old_mark}, {other.group, other}};
  Marks b;
  b.by_group = {{new_mark.group, new_mark}};
  // Either order gives the same result.
  Marks ab = a;
  merge_marks(ab, b);
  Marks ba = b;
  merge_marks(ba, a);
  CHECK(ab.by_group == ba.by_group);
  REQUIRE(ab.by_group.size() == 2);
  CHECK(ab.by_group.at(old_mark.group).version == "2.0-1");
  CHECK(ab.by_group.at(other.group) == other);
  // A tie in time still has one winner, whatever the order.
  ResolveMark tie = package_mark("3.0-1");
  tie.group = new_mark.group;
  tie.time = new_mark.time;
  Marks t;
  t.by_group = {{tie.group, tie}};
  Marks bt = b;
  merge_marks(bt, t);
  Marks tb = t;
  merge_marks(tb, b);
  CHECK(bt.by_group == tb.by_group);

  Seen early;
  early.groups["0123456789abcdef"] = SeenGroup{100, {"web1", "/usr/bin/a", "SEGV"}, ""};
  early.new_counts[{"web1", "/usr/bin/a", "SEGV"}] = 1;
  Seen late;
  late.groups["0123456789abcdef"] = SeenGroup{300, {"web2", "/usr/bin/a", "SEGV"}, ""};
  late.groups["1111222233334444"] = SeenGroup{0, {"web2", "/usr/bin/b", "ABRT"}, ""};
  late.groups["5555666677778888"] = SeenGroup{400, {"web2", "/usr/bin/b", "ABRT"}, ""};
  Seen unknown;
  unknown.groups["1111222233334444"] = SeenGroup{0, {"web3", "/usr/bin/b", "ABRT"}, ""};
  unknown.groups["5555666677778888"] = SeenGroup{0, {"web3", "/usr/bin/b", "ABRT"}, ""};
  Seen merged = late;
  merge_seen_groups(merged, early);
  merge_seen_groups(merged, unknown);
  CHECK(merged.groups.size() == 3);
  CHECK(merged.groups.at("0123456789abcdef") == early.groups.at("0123456789abcdef"));
  // A known first crash beats an unknown one.
  CHECK(merged.groups.at("5555666677778888").first == 400);
  CHECK(merged.groups.at("1111222233334444").first == 0);
  CHECK(merged.new_counts.empty()); // counters are each store's own
}

TEST_CASE("hostile group files are refused", "[group_state]") {
  for (const char* text : {
           "",
           "[]",
           "{}",
           R"({"version": 2})",
           R"({"version": 1, "marks": {}})",
           R"({"version": 1, "marks": [1]})",
           R"({"version": 1, "marks": [{"group": 5}]})",
           R"({"version": 1, "marks": [{"group": "g", "time": 1, "uid": 0, "version": "1"}]})",
           R"({"version": 1, "marks": [{"group": "g", "time": 1, "uid": 0, "build_id": "xy"}]})",
           R"({"version": 1, "marks": [{"group": "g", "time": 1, "uid": 0, "package": "p",
               "version": "1", "build_id": "aa"}]})",
           R"({"version": 1, "marks": [{"group": "g", "time": 1, "uid": 0, "package": "p"}]})",
           R"({"version": 1, "marks": [{"group": "g", "time": "1", "uid": 0, "build_id": "aa"}]})",
           R"({"version": 1, "marks": [{"group": "g", "time": 1, "uid": 0, "build_id": "aa",
               "builds_before": ["not hex"]}]})",
       }) {
    INFO(text);
    CHECK_FALSE(parse_marks(text));
  }
  for (const char* text : {
           R"({"version": 1, "groups": [{"group": "g", "first": "x"}]})",
           R"({"version": 1, "new": [{"hostname": "h", "count": -1}]})",
           R"({"version": 1, "regressed": [1]})",
       }) {
    INFO(text);
    CHECK_FALSE(parse_seen(text));
  }
  CHECK_FALSE(parse_seen(std::string(100000, '[')));
  std::string big = R"({"version": 1, "groups": [)";
  for (size_t i = 0; i <= k_max_seen; ++i) {
    big += std::string(i ? "," : "") + R"({"group":"g)" + std::to_string(i) + R"(","first":1})";
  }
  CHECK_FALSE(parse_seen(big + "]}"));
  // A label listed twice adds up: splitting it cannot lower a counter.
  auto s = parse_seen(R"({"version": 1, "new": [
      {"hostname": "h", "executable": "e", "signal": "SEGV", "count": 2},
      {"hostname": "h", "executable": "e", "signal": "SEGV", "count": 3}]})");
  REQUIRE(s);
  CHECK(s->new_counts.at({"h", "e", "SEGV"}) == 5);
}

TEST_CASE("group files in a store: missing, written, replaced, never through a link",
          "[group_state]") {
  TempDir dir;
  const int fd = ::open(dir.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto none = read_seen(fd);
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  Seen seen;
  seen.new_counts[{"h", "e", "SEGV"}] = 1;
  REQUIRE(write_seen(fd, seen));
  seen.new_counts[{"h", "e", "SEGV"}] = 2;
  REQUIRE(write_seen(fd, seen));
  auto back = read_seen(fd);
  REQUIRE(back);
  REQUIRE(back->has_value());
  CHECK((*back)->new_counts.at({"h", "e", "SEGV"}) == 2);
  struct stat st {};
  REQUIRE(::stat((dir.path() / ".groups" / "seen.json").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  // A link planted by the store's owner is not followed.
  std::filesystem::create_symlink("/etc/passwd", dir.path() / ".groups" / "resolved.json");
  CHECK_FALSE(read_marks(fd));
  spit(dir.path() / ".groups" / "seen.json", "{garbage");
  CHECK_FALSE(read_seen(fd));
  ::close(fd);
}
