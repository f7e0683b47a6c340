#include "exporter/crash_state.hpp"
#include "exporter/metrics.hpp"
#include "exporter/serializer.hpp"
#include "exporter/store_watcher.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>
#include <prometheus/text_serializer.h>

#include <set>

using namespace exporter;
using common::SeriesKey;

namespace {

uint64_t count_of(const Snapshot& s, const SeriesKey& k) {
  for (const auto& e : s.series) {
    if (e.labels == k) {
      return e.count;
    }
  }
  return 0;
}

const auto k_none = [](uint64_t, uint32_t) { return true; };

} // namespace

TEST_CASE("record ids round-trip as numbers", "[crash_state]") {
  CHECK(parse_record_id("00000000000000ff") == 255u);
  CHECK(format_record_id(255) == "00000000000000ff");
  CHECK(format_record_id(*parse_record_id("0123456789abcdef")) == "0123456789abcdef");
  CHECK_FALSE(parse_record_id("0123456789ABCDEF"));
  CHECK_FALSE(parse_record_id("short"));
}

TEST_CASE("counts are ledger plus live records not pending", "[crash_state]") {
  CrashState st(0);
  const SeriesKey k{"h", "/bin/a", "SEGV", true};
  st.add_record(1, 0, k, 100, 10, 20);
  st.add_record(2, 0, k, 200, 10, 0);
  CHECK_FALSE(st.add_record(2, 0, k, 200, 10, 0)); // a second event for the same file
  st.settle();
  auto snap = st.snapshot();
  CHECK(count_of(snap, k) == 2);
  CHECK(snap.series.at(0).last_crash == 200);
  CHECK(snap.hosts.at(0).stored_bytes == 40);

  SECTION("retirement through the ledger keeps the count at every step") {
    common::Ledger l;
    l.counts[k] = 1;
    l.pending.insert(format_record_id(1));
    st.set_ledger(l, k_none); // step 1: counted in the ledger, pending
    st.settle();
    CHECK(count_of(st.snapshot(), k) == 2);
    st.remove_record(1, 0); // step 2: the record goes
    st.settle();
    CHECK(count_of(st.snapshot(), k) == 2);
    l.pending.clear(); // step 3: no longer pending
    st.set_ledger(l, k_none);
    st.settle();
    CHECK(count_of(st.snapshot(), k) == 2);
    st.add_record(3, 0, k, 300, 10, 0);
    st.settle();
    CHECK(count_of(st.snapshot(), k) == 3);
  }
  SECTION("a ledger read late (already past step 3) does not count twice") {
    common::Ledger l;
    l.counts[k] = 1; // record 1 retired and no longer pending; its IN_DELETE still queued
    st.set_ledger(l, [](uint64_t id, uint32_t) { return id != 1; });
    st.settle();
    CHECK(count_of(st.snapshot(), k) == 2);
    st.remove_record(1, 0); // the queued deletion: a no-op now
    st.settle();
    CHECK(count_of(st.snapshot(), k) == 2);
  }
  SECTION("a record deleted outside the ledger does not lower the counter") {
    st.remove_record(2, 0);
    st.settle();
    CHECK(count_of(st.snapshot(), k) == 2);
    st.add_record(4, 0, k, 400, 10, 0); // and a later crash still counts
    st.settle();
    CHECK(count_of(st.snapshot(), k) == 3);
  }
  SECTION("a full rescan drops what is gone, keeps what is there") {
    st.begin_rescan();
    st.touch(1);
    st.end_rescan();
    st.settle();
    auto s = st.snapshot();
    CHECK(s.records == 1);
    CHECK(count_of(s, k) == 2);
  }
  SECTION("core removal lowers bytes, not counts") {
    st.set_core_bytes(1, 0, 0);
    st.settle();
    auto s = st.snapshot();
    CHECK(s.hosts.at(0).stored_bytes == 20);
    CHECK(count_of(s, k) == 2);
  }
}

TEST_CASE("executables beyond the cap fold into other, earliest first", "[crash_state]") {
  CrashState st(2);
  // Added out of time order: the fold follows the earliest crash, not the scan order.
  st.add_record(1, 0, {"h", "/bin/late", "SEGV", true}, 300, 1, 0);
  st.add_record(2, 1, {"h", "/bin/early", "SEGV", true}, 100, 1, 0);
  st.add_record(3, 2, {"h", "/bin/middle", "ABRT", false}, 200, 1, 0);
  st.add_record(4, 3, {"g", "/bin/late", "SEGV", true}, 300, 1, 0); // another host: own cap
  st.settle();
  auto s = st.snapshot();
  CHECK(count_of(s, {"h", "/bin/early", "SEGV", true}) == 1);
  CHECK(count_of(s, {"h", "/bin/middle", "ABRT", false}) == 1);
  CHECK(count_of(s, {"h", "other", "SEGV", true}) == 1);
  CHECK(count_of(s, {"g", "/bin/late", "SEGV", true}) == 1);
  for (const auto& h : s.hosts) {
    CHECK(h.folded_executables == (h.hostname == "h" ? 1u : 0u));
  }
  // A new executable after start-up goes to "other" too; known ones keep their label.
  st.add_record(5, 4, {"h", "/bin/new", "SEGV", true}, 50, 1, 0);
  st.add_record(6, 1, {"h", "/bin/early", "SEGV", true}, 400, 1, 0);
  st.settle();
  s = st.snapshot();
  CHECK(count_of(s, {"h", "other", "SEGV", true}) == 2);
  CHECK(count_of(s, {"h", "/bin/early", "SEGV", true}) == 2);

  SECTION("the ledger's earliest time keeps a retired executable's place") {
    CrashState again(2);
    common::Ledger l;
    l.counts[{"h", "/bin/early", "SEGV", true}] = 2;
    l.times[{"h", "/bin/early", "SEGV", true}] = {100, 400};
    again.set_ledger(l, k_none);
    again.add_record(1, 0, {"h", "/bin/late", "SEGV", true}, 300, 1, 0);
    again.add_record(3, 2, {"h", "/bin/middle", "ABRT", false}, 200, 1, 0);
    again.add_record(5, 4, {"h", "/bin/new", "SEGV", true}, 500, 1, 0);
    again.settle();
    auto t = again.snapshot();
    CHECK(count_of(t, {"h", "/bin/early", "SEGV", true}) == 2);
    CHECK(count_of(t, {"h", "/bin/middle", "ABRT", false}) == 1);
    CHECK(count_of(t, {"h", "other", "SEGV", true}) == 2);
  }
}

TEST_CASE("hostnames beyond the host cap fold into other, totals kept", "[crash_state]") {
  CrashState st(2, 3);
  uint64_t id = 1;
  // Ten hosts, one crash each, first crashes at times 100..1000 (added newest first).
  for (int i = 9; i >= 0; --i) {
    const std::string host = "host-" + std::to_string(i);
    st.add_record(id++, 0, {host, "/bin/a", "SEGV", true}, 100 * (i + 1), 1, 0);
  }
  // Folded hosts' executables count against the cap of "other" like any host's.
  st.add_record(id++, 0, {"host-9", "/bin/b", "SEGV", true}, 2000, 1, 0);
  st.add_record(id++, 0, {"host-8", "/bin/c", "SEGV", true}, 2000, 1, 0);
  st.settle();
  auto s = st.snapshot();
  CHECK(count_of(s, {"host-0", "/bin/a", "SEGV", true}) == 1);
  CHECK(count_of(s, {"host-2", "/bin/a", "SEGV", true}) == 1);
  CHECK(count_of(s, {"host-3", "/bin/a", "SEGV", true}) == 0);
  CHECK(count_of(s, {"other", "/bin/a", "SEGV", true}) == 7);
  CHECK(count_of(s, {"other", "/bin/c", "SEGV", true}) == 1); // host-8 sorts before host-9
  CHECK(count_of(s, {"other", "other", "SEGV", true}) == 1);
  CHECK(s.folded_hosts == 7);
  uint64_t total = 0;
  std::set<std::string> hosts;
  for (const auto& e : s.series) {
    total += e.count;
    hosts.insert(e.labels.hostname);
  }
  CHECK(total == 12);
  CHECK(hosts.size() == 4);
  for (const auto& h : s.hosts) {
    CHECK((h.hostname == "other" || h.hostname <= "host-2"));
  }
  // A new host later: counted, under "other"; known hosts keep their label.
  st.add_record(id++, 0, {"late", "/bin/a", "SEGV", true}, 50, 1, 0);
  st.add_record(id++, 0, {"host-1", "/bin/a", "SEGV", true}, 3000, 1, 0);
  st.settle();
  s = st.snapshot();
  CHECK(count_of(s, {"other", "/bin/a", "SEGV", true}) == 8);
  CHECK(count_of(s, {"host-1", "/bin/a", "SEGV", true}) == 2);
  CHECK(s.folded_hosts == 8);
}

TEST_CASE("label values carry no raw control characters", "[crash_state]") {
  CrashState st(0);
  // The crashing program names its executable and its container's hostname.
  st.add_record(1, 0, {"web\x1b]0;x\a-1", "/usr/bin/q'$(id>&2)'x\x1b", "SEGV", true}, 100, 10, 0);
  // A name that is already the escaped text shares the series instead of duplicating it.
  st.add_record(2, 0, {"web\x1b]0;x\a-1", "/usr/bin/q'$(id>&2)'x\\x1b", "SEGV", true}, 200, 10, 0);
  st.settle();
  const auto s = st.snapshot();
  REQUIRE(s.series.size() == 1);
  CHECK(s.series[0].labels ==
        SeriesKey{"web\\x1b]0;x\\x07-1", "/usr/bin/q'$(id>&2)'x\\x1b", "SEGV", true});
  CHECK(s.series[0].count == 2);
  REQUIRE(s.hosts.size() == 1);
  CHECK(s.hosts[0].hostname == "web\\x1b]0;x\\x07-1");
  CHECK(s.hosts[0].stored_bytes == 20);
}

TEST_CASE("skipped files are counted by reason", "[crash_state]") {
  CrashState st(0);
  st.set_skipped("h/a/x.json", SkipReason::malformed);
  st.set_skipped("h/a/notes.txt", SkipReason::foreign);
  st.set_skipped("h/a/y.json", SkipReason::malformed);
  st.set_skipped("h/a/y.json", std::nullopt);
  auto s = st.snapshot();
  CHECK(s.skipped[static_cast<size_t>(SkipReason::malformed)] == 1);
  CHECK(s.skipped[static_cast<size_t>(SkipReason::foreign)] == 1);
  CHECK(s.skipped[static_cast<size_t>(SkipReason::io)] == 0);
}

TEST_CASE("metric families carry the documented names and labels", "[crash_state]") {
  CrashState st(0);
  st.add_record(1, 0, {"web-1", "/usr/bin/ruby", "SEGV", true}, 1700000000, 4096, 8192);
  st.settle();
  const std::string text = prometheus::TextSerializer().Serialize(to_families(st.snapshot()));
  CHECK_THAT(text, Catch::Contains("# TYPE processcore_coredumps_total counter"));
  CHECK_THAT(text, Catch::Contains(
                       "processcore_coredumps_total{core_present=\"true\",executable=\"/usr/bin/"
                       "ruby\",hostname=\"web-1\",signal=\"SEGV\"} 1"));
  CHECK_THAT(text, Catch::Contains("processcore_stored_bytes{hostname=\"web-1\"} 12288"));
  CHECK_THAT(text, Catch::Contains("processcore_build_info{version="));
  CHECK_THAT(text, Catch::Contains("processcore_records_unreadable{reason=\"malformed\"} 0"));
}

TEST_CASE("the watcher reports a store it cannot list, and one record over the limit",
          "[crash_state][store_watcher]") {
  const auto io = static_cast<size_t>(SkipReason::io);
  const auto malformed = static_cast<size_t>(SkipReason::malformed);
  SECTION("a readdir() that fails on the root") {
    const common::UniqueFd gone(test::reaped_proc_dir());
    REQUIRE(gone);
    CrashState state(0);
    std::mutex mutex;
    auto watcher =
        StoreWatcher::create("/proc/self/fd/" + std::to_string(gone.get()), state, mutex);
    REQUIRE(watcher);
    (*watcher)->scan();
    CHECK(state.snapshot().skipped[io] == 1);
    CHECK(state.is_skipped("."));
  }
  SECTION("records at the readers' limit and one byte over it") {
    test::TempDir dir;
    auto store = common::Store::open(dir.str());
    REQUIRE(store);
    REQUIRE(store->open_exe_dir("h", "usr!bin!app"));
    auto record = [](const std::string& id, size_t size) {
      std::string text = R"({"id": ")" + id +
                         R"(", "hostname": "h", "executable": "/usr/bin/app",)" +
                         R"( "signal": 11, "signal_name": "SEGV"})";
      text.append(size - text.size(), ' ');
      return text;
    };
    test::spit(dir.path() / "h/usr!bin!app/00000000000000a1.json",
               record("00000000000000a1", common::k_max_record_bytes));
    test::spit(dir.path() / "h/usr!bin!app/00000000000000a2.json",
               record("00000000000000a2", common::k_max_record_bytes + 1));
    CrashState state(0);
    std::mutex mutex;
    auto watcher = StoreWatcher::create(dir.str(), state, mutex);
    REQUIRE(watcher);
    (*watcher)->scan();
    const Snapshot s = state.snapshot();
    CHECK(s.records == 2);
    CHECK(s.skipped[malformed] == 1);
    CHECK(s.skipped[io] == 0);
    CHECK(state.is_skipped("h/usr!bin!app/00000000000000a2.json"));
    CHECK(count_of(s, SeriesKey{"h", "/usr/bin/app", "SEGV", false}) == 1);
    CHECK(count_of(s, SeriesKey{"h", "/usr/bin/app", "unknown", false}) == 1); // by its place
  }
}

namespace {

// A ledger of `hosts` × `exes` executables with two series each, some names with control
// characters and quotes, crash times spread so that the per-host cap folds some of them.
common::Ledger big_ledger(int hosts, int exes) {
  common::Ledger l;
  for (int h = 0; h < hosts; ++h) {
    for (int e = 0; e < exes; ++e) {
      const std::string host = "node-" + std::to_string(h) + (h == 1 ? "\x1b[1m" : "");
      const std::string exe = "/usr/lib/app" + std::to_string(h) + "/bin/service-" +
                              std::to_string(e) + (e == 3 ? "\"q\"\n\\" : "");
      for (int s = 0; s < 2; ++s) {
        const SeriesKey k{host, exe, s == 0 ? "SEGV" : "ABRT", (e + s) % 2 == 0};
        l.counts[k] = static_cast<uint64_t>(1 + (h * 7 + e * 3 + s) % 11);
        l.times[k] = {1000 + (e * 37 + h * 11) % 500, 5000 + e + h};
      }
    }
  }
  l.pending.insert(format_record_id(7));
  return l;
}

std::string exposition(const CrashState& st) {
  return MetricsStream(st.snapshot(), {}, Format::text, Compression::none).read_all();
}

} // namespace

TEST_CASE("a ledger streamed from the store exports what the whole ledger does", "[crash_state]") {
  const common::Ledger l = big_ledger(6, 40);
  test::TempDir dir;
  auto store = common::Store::open(dir.str());
  REQUIRE(store);
  REQUIRE(common::write_ledger(*store, l));

  auto fill = [](CrashState& st) {
    st.add_record(7, 0, {"node-0", "/usr/lib/app0/bin/service-0", "SEGV", true}, 900, 10, 0);
    st.add_record(8, 0, {"node-2", "/bin/new", "BUS", false}, 6000, 10, 5);
  };
  CrashState whole(25, 4, 150);
  fill(whole);
  whole.set_ledger(l, k_none);
  whole.settle();
  CrashState streamed(25, 4, 150);
  fill(streamed);
  REQUIRE(streamed.load_ledger(
      [&](const common::LedgerVisitor& v) { return common::scan_store_ledger(*store, v); },
      k_none));
  streamed.settle();
  // The same series split into two entries each, in reverse order: counts add up.
  CrashState split(25, 4, 150);
  fill(split);
  REQUIRE(split.load_ledger(
      [&](const common::LedgerVisitor& v) -> common::Expected<void> {
        for (auto it = l.counts.rbegin(); it != l.counts.rend(); ++it) {
          const auto& t = l.times.at(it->first);
          v.series({it->first, it->second / 2, {t.first, t.first}});
          v.series({it->first, it->second - it->second / 2, {t.last, t.last}});
        }
        v.pending(format_record_id(7));
        return {};
      },
      k_none));
  split.settle();

  const std::string text = exposition(whole);
  CHECK(text.size() > 20000);
  CHECK(exposition(streamed) == text);
  CHECK(exposition(split) == text);
  // Byte for byte what prometheus-cpp writes for the same snapshot.
  CHECK(text == prometheus::TextSerializer().Serialize(to_families(whole.snapshot())));
  CHECK(whole.snapshot().folded_series > 0);
  CHECK(streamed.is_pending(7));
}

TEST_CASE("a ledger read that fails part-way changes nothing", "[crash_state]") {
  CrashState st(1, 0, 0);
  const SeriesKey a{"h", "/bin/a", "SEGV", true};
  st.add_record(1, 0, a, 100, 10, 0);
  common::Ledger l;
  l.counts[a] = 3;
  st.set_ledger(l, k_none);
  st.settle();
  const std::string before = exposition(st);

  auto r = st.load_ledger(
      [&](const common::LedgerVisitor& v) -> common::Expected<void> {
        v.series({{"h2", "/bin/z", "NEWSIG", false}, 5, {50, 60}}); // new host, executable, signal
        v.series({a, 100, {1, 2}});
        v.pending(format_record_id(1));
        return common::fail("truncated ledger");
      },
      k_none);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "truncated ledger");
  CHECK_FALSE(st.is_pending(1));
  st.settle();
  CHECK(exposition(st) == before);
  CHECK(st.snapshot().hosts.size() == 1);

  // The executable the failed read brought took no label: the next one is still counted under
  // its own name only if the cap allows, and /bin/a holds the one slot of host h.
  st.add_record(2, 0, {"h", "/bin/b", "SEGV", true}, 50, 10, 0);
  st.settle();
  CHECK(count_of(st.snapshot(), {"h", "other", "SEGV", true}) == 1);
  CHECK(count_of(st.snapshot(), a) == 4);
}
