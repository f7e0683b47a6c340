#include "common/store/record.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace common;

namespace {
Record sample() {
  Record r;
  r.id = "0123456789abcdef";
  r.time = format_time(1700000000);
  r.hostname = "web\"01\n";
  r.executable = "/usr/bin/ruby";
  r.signal = 11;
  r.signal_name = "SEGV";
  r.pid = 42;
  r.uid = 1000;
  r.comm = "ruby";
  r.core.present = true;
  r.core.reason = CoreReason::truncated;
  r.core.path = "web01/usr!bin!ruby/0123456789abcdef.core.zst";
  r.core.size = 10;
  r.core.stored_size = 5;
  r.core.truncated = true;
  r.core.access = CoreAccess::owner;
  r.crash["si_code_name"] = "SEGV_MAPERR";
  r.handler.warnings = {"w1"};
  return r;
}
} // namespace

TEST_CASE("a record round-trips through JSON", "[record]") {
  const Record r = sample();
  const std::string text = to_json_text(r);
  auto back = parse_record(text);
  REQUIRE(back);
  CHECK(back->id == r.id);
  CHECK(back->hostname == r.hostname);
  CHECK(back->pid == 42);
  CHECK_FALSE(back->gid);
  CHECK(back->core.reason == CoreReason::truncated);
  CHECK(back->core.access == CoreAccess::owner);
  CHECK(back->core.path == r.core.path);
  CHECK(back->crash["si_code_name"] == "SEGV_MAPERR");
  CHECK(back->handler.warnings == std::vector<std::string>{"w1"});
}

TEST_CASE("core.removed_before_upload is read, written back, and only when set", "[record]") {
  Record r = sample();
  CHECK(nlohmann::json::parse(to_json_text(r))["core"].count("removed_before_upload") == 0);
  r.core.removed = "2026-01-01T00:00:00Z";
  r.core.removed_before_upload = true;
  auto back = parse_record(to_json_text(r));
  REQUIRE(back);
  CHECK(back->core.removed_before_upload);
  CHECK(back->core.unknown.empty()); // a known key, not carried as an unknown one
  // A value of another type (the store's owner wrote it) is not taken for true.
  auto j = nlohmann::json::parse(to_json_text(r));
  j["core"]["removed_before_upload"] = "yes";
  back = parse_record(j.dump());
  REQUIRE(back);
  CHECK_FALSE(back->core.removed_before_upload);
}

TEST_CASE("the node section: written when known, read whatever older or hostile records hold",
          "[record]") {
  Record r = sample();
  CHECK(to_json(r).count("node") == 0); // nothing known, nothing written
  r.node = {{"machine_id", std::string(32, 'a')},
            {"hostname", "node\xff"
                         "1"}};
  const auto j = to_json(r);
  CHECK(j["node"]["machine_id"] == std::string(32, 'a'));
  CHECK(j["node"]["hostname"] == "node\xef\xbf\xbd"
                                 "1");
  auto back = parse_record(to_json_text(r));
  REQUIRE(back);
  CHECK(back->node["machine_id"] == std::string(32, 'a'));
  // Records of earlier versions have none; a node that is not an object is passed over.
  auto old = parse_record("{\"id\": \"x\", \"signal\": 11}");
  REQUIRE(old);
  CHECK(old->node.empty());
  auto odd = parse_record("{\"id\": \"x\", \"signal\": 11, \"node\": [1, 2]}");
  REQUIRE(odd);
  CHECK(odd->node.empty());
}

TEST_CASE("record JSON is valid UTF-8 whatever the kernel passed", "[record]") {
  Record r = sample();
  r.hostname = "bad\xff\xfehost";
  r.executable = "/tmp/\xc3(";
  r.crash["module"] = "/lib/\xff.so";
  const std::string text = to_json_text(r);
  const auto j = nlohmann::json::parse(text); // throws on invalid UTF-8
  CHECK(j["hostname"] == "bad\xef\xbf\xbd\xef\xbf\xbdhost");
  CHECK(j["crash"]["module"] == "/lib/\xef\xbf\xbd.so");
  CHECK(j["gid"].is_null());
  CHECK(j["core"]["reason"] == "truncated");
}

TEST_CASE("malformed records are errors, not exceptions", "[record]") {
  CHECK_FALSE(parse_record(""));
  CHECK_FALSE(parse_record("[1,2]"));
  CHECK_FALSE(parse_record("{\"id\": 5, \"signal\": 11}"));
  CHECK_FALSE(parse_record("{\"signal\": 11}"));
  CHECK_FALSE(parse_record("{\"id\": \"x\", \"signal\": 11, \"core\": {\"reason\": \"bogus\"}}"));
  CHECK_FALSE(parse_record("{\"id\": \"x\", \"signal\": 11, \"pid\": \"12\"}"));
  CHECK(parse_record("{\"id\": \"x\", \"signal\": 11}"));
}

TEST_CASE("RFC 3339 times", "[record]") {
  CHECK(format_time(0) == "1970-01-01T00:00:00Z");
  CHECK(format_time(1700000000) == "2023-11-14T22:13:20Z");
  CHECK(parse_time("2023-11-14T22:13:20Z") == 1700000000);
  CHECK(parse_time("2023-11-14T22:13:20.5Z") == 1700000000);
  CHECK_FALSE(parse_time("2023-11-14"));
  CHECK_FALSE(parse_time("2023-13-14T22:13:20Z"));
}
