#include "exporter/group_tracker.hpp"

#include <catch2/catch.hpp>

using namespace exporter;
using common::CrashVersion;
using common::GroupLabel;

namespace {

const GroupLabel k_label{"web1", "/usr/bin/crashy", "SEGV"};

CrashVersion at(const std::string& version) {
  return CrashVersion{"", {{"libcrashy1", version}}};
}

// One record as the store watcher hands it over: details only when the tracker asks.
void crash(GroupTracker& t, const std::string& key, int64_t time, const std::string& version = "",
           const std::string& refines = "") {
  const bool details = t.wants_details(key, time);
  t.observe(key, time, k_label, details ? refines : "",
            details ? std::optional<CrashVersion>(at(version)) : std::nullopt);
}

uint64_t count(const std::map<GroupLabel, uint64_t>& counts) {
  auto it = counts.find(k_label);
  return it == counts.end() ? 0 : it->second;
}

common::Marks fixed_in(const std::string& key, const std::string& version, int64_t time) {
  common::Marks m;
  auto mark = common::parse_resolve_target("libcrashy1=" + version);
  REQUIRE(mark);
  mark->group = key;
  mark->time = time;
  m.by_group[key] = *mark;
  return m;
}

} // namespace

TEST_CASE("tracker: the groups of the first start are seen, not new", "[group_tracker]") {
  GroupTracker t;
  t.load(std::nullopt);
  crash(t, "aaaa000000000000", 100);
  CHECK(t.settle()); // a seen-set is written even when nothing was counted
  CHECK(count(t.seen().new_counts) == 0);
  CHECK(t.seen().groups.contains("aaaa000000000000"));
  crash(t, "bbbb000000000000", 200);
  CHECK(t.settle());
  CHECK(count(t.seen().new_counts) == 1);
  crash(t, "bbbb000000000000", 300);
  CHECK_FALSE(t.settle());
  CHECK(count(t.seen().new_counts) == 1);
}

TEST_CASE("tracker: a restart from the seen-set counts nothing twice", "[group_tracker]") {
  GroupTracker first;
  first.load(common::Seen{});
  crash(first, "aaaa000000000000", 100);
  first.settle();
  REQUIRE(count(first.seen().new_counts) == 1);
  // The records are gone (retention); the seen-set remains.
  GroupTracker again;
  again.load(first.seen());
  CHECK(count(again.seen().new_counts) == 1);
  crash(again, "aaaa000000000000", 400); // the same group again: not new
  again.settle();
  CHECK(count(again.seen().new_counts) == 1);
}

TEST_CASE("tracker: a new signature version continues its group", "[group_tracker]") {
  GroupTracker t;
  t.load(common::Seen{});
  crash(t, "2222000000000000", 100);                              // v2
  crash(t, "3333000000000000", 200, "1.0-1", "2222000000000000"); // v3 refining it
  t.settle();
  CHECK(count(t.seen().new_counts) == 1);
  CHECK(t.seen().groups.at("3333000000000000").parent == "2222000000000000");
  CHECK(t.seen().groups.at("3333000000000000").first == 100);
  // Marks on the old group apply to the new one.
  t.set_marks(fixed_in("2222000000000000", "2.0-1", 250));
  crash(t, "3333000000000000", 300, "2.0-1");
  t.settle();
  CHECK(count(t.seen().regressions) == 1);
}

TEST_CASE("tracker: resolved in 2.0-1, a crash of 1.0 stays resolved, one of 2.0 counts once",
          "[group_tracker]") {
  GroupTracker t;
  t.load(common::Seen{});
  crash(t, "aaaa000000000000", 100, "1.0-1");
  t.settle();
  t.set_marks(fixed_in("aaaa000000000000", "2.0-1", 150));
  crash(t, "aaaa000000000000", 120, "2.0-1"); // before the mark
  crash(t, "aaaa000000000000", 200, "1.0-1");
  t.settle();
  CHECK(count(t.seen().regressions) == 0);
  crash(t, "aaaa000000000000", 300, "2.0-1");
  crash(t, "aaaa000000000000", 301, "2.1-1");
  t.settle();
  CHECK(count(t.seen().regressions) == 1);
  // After a restart, the same records do not count again.
  GroupTracker again;
  again.load(t.seen());
  again.set_marks(fixed_in("aaaa000000000000", "2.0-1", 150));
  CHECK_FALSE(again.wants_details("aaaa000000000000", 300));
  crash(again, "aaaa000000000000", 300, "2.0-1");
  again.settle();
  CHECK(count(again.seen().regressions) == 1);
  // A new mark (resolved again) can regress again; the old mark's event is forgotten.
  again.set_marks(fixed_in("aaaa000000000000", "3.0-1", 400));
  crash(again, "aaaa000000000000", 500, "3.0-1");
  again.settle();
  CHECK(count(again.seen().regressions) == 2);
  CHECK(again.seen().regressed.size() == 1);
}

TEST_CASE("tracker: counter labels are bounded", "[group_tracker]") {
  GroupTracker t;
  t.load(common::Seen{});
  for (size_t i = 0; i <= common::k_max_counter_series; ++i) {
    t.observe("g" + std::to_string(i), 1, GroupLabel{"h" + std::to_string(i), "e", "SEGV"}, "",
              std::nullopt);
  }
  t.settle();
  CHECK(t.seen().new_counts.size() == common::k_max_counter_series + 1);
  CHECK(t.seen().new_counts.at(GroupLabel{"other", "other", "SEGV"}) == 1);
}
