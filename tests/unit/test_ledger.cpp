#include "common/store/ledger.hpp"
#include "common/store/record.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

using namespace common;

namespace {

// Writes a minimal record <root>/<host>/<exe>/<id>.json (and a core) and returns its item.
RetireItem put_record(const test::TempDir& dir, const std::string& host, const std::string& exe,
                      const std::string& id, const std::string& signal = "SEGV") {
  const auto d = dir.path() / host / exe;
  std::filesystem::create_directories(d);
  Record r;
  r.id = id;
  r.hostname = host;
  r.executable = "/usr/bin/" + exe;
  r.signal = signal == "SEGV" ? 11 : 6;
  r.signal_name = signal;
  r.time = "2026-01-02T03:04:05Z";
  r.core.present = true;
  r.core.reason = CoreReason::stored;
  test::spit(d / (id + ".json"), to_json_text(r));
  test::spit(d / (id + ".core.zst"), "core");
  return RetireItem{host, exe, id, series_of(r), *parse_time(r.time)};
}

} // namespace

TEST_CASE("ledger text round-trips", "[ledger]") {
  Ledger l;
  const SeriesKey k{"web-1", "/usr/bin/ruby", "SEGV", true};
  l.counts[k] = 7;
  l.times[k] = SeriesTimes{100, 200};
  l.pending.insert("0123456789abcdef");
  auto back = parse_ledger(ledger_to_text(l));
  REQUIRE(back);
  CHECK(back->counts == l.counts);
  CHECK(back->pending == l.pending);
  CHECK(back->times.at(k).first == 100);
  CHECK(back->times.at(k).last == 200);
}

TEST_CASE("ledgers written before the streaming reader are read the same", "[ledger]") {
  // What the DOM-based writer produced: keys sorted, so "pending" comes before the series.
  const std::string old = R"({
 "pending": [
  "00000000000000a1"
 ],
 "schema": 1,
 "series": [
  {
   "core_present": true,
   "count": 7,
   "executable": "/usr/bin/ruby",
   "first": 100,
   "hostname": "web-1",
   "last": 200,
   "signal": "SEGV"
  },
  {
   "core_present": false,
   "count": 2,
   "executable": "/usr/bin/ruby",
   "hostname": "web-1",
   "signal": "ABRT"
  }
 ]
}
)";
  auto l = parse_ledger(old);
  REQUIRE(l);
  const SeriesKey segv{"web-1", "/usr/bin/ruby", "SEGV", true};
  const SeriesKey abrt{"web-1", "/usr/bin/ruby", "ABRT", false};
  CHECK(l->counts.at(segv) == 7);
  CHECK(l->counts.at(abrt) == 2);
  CHECK(l->times.at(segv).first == 100);
  CHECK(l->times.at(segv).last == 200);
  CHECK(l->pending == std::set<std::string>{"00000000000000a1"});
  // And what the streaming writer produces reads back to the same ledger.
  auto again = parse_ledger(ledger_to_text(*l));
  REQUIRE(again);
  CHECK(again->counts == l->counts);
  CHECK(again->pending == l->pending);
}

TEST_CASE("the streaming reader hands over entries in file order, skipping unknown keys",
          "[ledger]") {
  const std::string text = R"({"x": {"deep": [[1, 2], {"a": null}]}, "schema": 1,
    "series": [{"hostname": "h", "executable": "/e", "signal": "SEGV", "core_present": true,
                "count": 3, "future": [1, {"b": 2}]},
               {"hostname": "h", "executable": "/e", "signal": "SEGV", "core_present": true,
                "count": 4}],
    "pending": ["a", "b"], "y": "z"})";
  std::vector<uint64_t> counts;
  std::vector<std::string> ids;
  auto s = scan_ledger(text, {[&](LedgerSeries&& e) { counts.push_back(e.count); },
                              [&](std::string&& id) { ids.push_back(id); }});
  REQUIRE(s);
  CHECK(counts == std::vector<uint64_t>{3, 4});
  CHECK(ids == std::vector<std::string>{"a", "b"});
  // Duplicated series add up, as they always did.
  CHECK(parse_ledger(text)->counts.at(SeriesKey{"h", "/e", "SEGV", true}) == 7);
  CHECK(parse_ledger(R"({"schema": 1, "series": null, "pending": null})"));
}

TEST_CASE("the streaming reader bounds depth and tokens, not the file", "[ledger]") {
  const std::string deep =
      R"({"schema": 1, "x": )" + std::string(100, '[') + std::string(100, ']') + "}";
  auto d = parse_ledger(deep);
  REQUIRE_FALSE(d);
  CHECK(d.error().message == "ledger is nested deeper than 64 levels");
  CHECK(parse_ledger(std::string(1000000, '[')).error().message ==
        "ledger is nested deeper than 64 levels");
  const std::string long_name = R"({"schema": 1, "series": [{"hostname": ")" +
                                std::string(k_max_ledger_token + 100, 'h') +
                                R"(", "executable": "/e", "signal": "SEGV", "core_present": true,
                                "count": 1}]})";
  auto t = parse_ledger(long_name);
  REQUIRE_FALSE(t);
  CHECK(t.error().message.find("token longer than") != std::string::npos);
  // Many entries are no problem: memory is per entry.
  Ledger many;
  for (int i = 0; i < 20000; ++i) {
    many.counts[SeriesKey{"h" + std::to_string(i), "/e", "SEGV", true}] = 1;
  }
  auto back = parse_ledger(ledger_to_text(many));
  REQUIRE(back);
  CHECK(back->counts.size() == 20000);
}

TEST_CASE("malformed ledgers are errors, a missing one is empty", "[ledger]") {
  CHECK_FALSE(parse_ledger("not json"));
  CHECK_FALSE(parse_ledger(R"({"schema": 1, "series": [{"hostname": 3}]})"));
  CHECK_FALSE(parse_ledger(R"({"schema": 99})"));
  CHECK_FALSE(parse_ledger(R"({"series": []})")); // no schema
  CHECK_FALSE(parse_ledger(R"([1, 2])"));
  CHECK_FALSE(parse_ledger(R"({"schema": 1, "series": [{"hostname": "h"}]})")); // fields missing
  CHECK_FALSE(parse_ledger(R"({"schema": 1, "pending": [1]})"));
  CHECK_FALSE(parse_ledger(R"({"schema": 1, "series": [{"hostname": "h", "executable": "/e",
      "signal": "SEGV", "core_present": true, "count": -1}]})"));
  CHECK_FALSE(parse_ledger(R"({"schema": 1} trailing)"));
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  auto l = read_ledger(*store);
  REQUIRE(l);
  CHECK(l->counts.empty());
  test::spit(dir.path() / k_ledger_name, "{broken");
  CHECK_FALSE(read_ledger(*store));
}

TEST_CASE("series_of uses the record's labels", "[ledger]") {
  Record r;
  r.hostname = "h";
  r.executable = "/bin/x";
  r.signal = 6;
  r.core.present = false;
  CHECK(series_of(r) == SeriesKey{"h", "/bin/x", "ABRT", false});
  r.signal_name = "SEGV";
  CHECK(series_of(r).signal == "SEGV");
}

TEST_CASE("retire_records counts each crash once and removes its files", "[ledger]") {
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  const auto a = put_record(dir, "h", "a", "00000000000000a1");
  const auto b = put_record(dir, "h", "a", "00000000000000a2");
  const auto c = put_record(dir, "h", "b", "00000000000000b1", "ABRT");
  test::spit(dir.path() / "h/a/00000000000000a1.report", "a runtime's crash report");

  auto removed = retire_records(*store, {a, b});
  REQUIRE(removed);
  CHECK(*removed == 2);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "h/a/00000000000000a1.json"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "h/a/00000000000000a1.core.zst"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "h/a/00000000000000a1.report"));
  CHECK(std::filesystem::exists(dir.path() / "h/a")); // directories stay for the handler

  auto l = read_ledger(*store);
  REQUIRE(l);
  CHECK(l->counts.at(a.key) == 2);
  CHECK(l->pending.empty());
  CHECK(l->times.at(a.key).first == a.time);

  SECTION("retiring the same items again counts nothing") {
    auto again = retire_records(*store, {a, b});
    REQUIRE(again);
    CHECK(*again == 0);
    CHECK(read_ledger(*store)->counts.at(a.key) == 2);
  }
  SECTION("a pending id left by an interrupted run is not counted twice") {
    Ledger interrupted = *l;
    interrupted.counts[c.key] += 1;
    interrupted.pending.insert(c.id);
    REQUIRE(write_ledger(*store, interrupted));
    auto r = retire_records(*store, {c});
    REQUIRE(r);
    CHECK(*r == 1);
    auto after = read_ledger(*store);
    CHECK(after->counts.at(c.key) == 1);
    CHECK(after->pending.empty());
  }
  SECTION("stale pending ids are dropped once their record is gone") {
    Ledger stale = *l;
    stale.pending.insert("00000000000000ff"); // no such record
    stale.pending.insert(c.id);               // still there: must stay pending
    REQUIRE(write_ledger(*store, stale));
    const auto d = put_record(dir, "h", "b", "00000000000000b2", "ABRT");
    REQUIRE(retire_records(*store, {d}));
    auto after = read_ledger(*store);
    CHECK(after->pending == std::set<std::string>{c.id});
  }
}

TEST_CASE("retire_records rewrites the ledger as a stream, keeping what it does not touch",
          "[ledger]") {
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  const auto a = put_record(dir, "h", "a", "00000000000000a1");
  // An earlier ledger: another series, our series already counted once, a pending id of a
  // record still there, and pending listed first.
  test::spit(dir.path() / k_ledger_name, R"({"pending": ["00000000000000a1"], "schema": 1,
    "series": [{"hostname": "old", "executable": "/x", "signal": "ABRT", "core_present": false,
                "count": 5, "first": 10, "last": 20},
               {"hostname": "h", "executable": "/usr/bin/a", "signal": "SEGV",
                "core_present": true, "count": 1}]})");
  const auto b = put_record(dir, "h", "a", "00000000000000a2");
  auto removed = retire_records(*store, {a, b});
  REQUIRE(removed);
  CHECK(*removed == 2);
  auto l = read_ledger(*store);
  REQUIRE(l);
  CHECK(l->counts.at(SeriesKey{"old", "/x", "ABRT", false}) == 5);
  CHECK(l->times.at(SeriesKey{"old", "/x", "ABRT", false}).last == 20);
  CHECK(l->counts.at(a.key) == 2); // a was pending (counted), b is new
  CHECK(l->pending.empty());

  SECTION("a corrupt ledger stops the retirement before anything is removed") {
    const auto c = put_record(dir, "h", "a", "00000000000000a3");
    test::spit(dir.path() / k_ledger_name, R"({"schema": 1, "series": [{"hostname": 1}]})");
    CHECK_FALSE(retire_records(*store, {c}));
    CHECK(std::filesystem::exists(dir.path() / "h/a/00000000000000a3.json"));
  }
}

TEST_CASE("a ledger that is a FIFO is an error, not a hang", "[ledger]") {
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  REQUIRE(::mkfifo((dir.path() / k_ledger_name).c_str(), 0640) == 0);
  CHECK_FALSE(read_ledger(*store));
}

TEST_CASE("a ledger written by root belongs to the store owner", "[ledger]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root to give files away");
    return;
  }
  test::TempDir dir;
  // nobody:nogroup stands in for the store user.
  REQUIRE(::chown(dir.str().c_str(), 65534, 65534) == 0);
  auto store = Store::open(dir.str());
  REQUIRE(store);
  REQUIRE(write_ledger(*store, Ledger{}));
  struct stat st {};
  REQUIRE(::stat((dir.path() / k_ledger_name).c_str(), &st) == 0);
  CHECK(st.st_uid == 65534);
  CHECK(st.st_gid == 65534);
  CHECK((st.st_mode & 0777) == 0640);
  CHECK(read_ledger(*store));
}
