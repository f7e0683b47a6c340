#include "common/store/record_bound.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace common;

namespace {

Record sample() {
  Record r;
  r.id = "0123456789abcdef";
  r.time = "2026-12-01T00:00:00Z";
  r.hostname = "web1";
  r.executable = "/usr/bin/app";
  r.signal = 11;
  r.signal_name = "SEGV";
  r.core.reason = CoreReason::stored;
  r.store_host = "web1";
  r.store_exe = "usr!bin!app";
  return r;
}

} // namespace

TEST_CASE("a small record is left alone", "[record]") {
  Record r = sample();
  r.mappings = nlohmann::json::array({{{"path", "/lib/libc.so.6"}}});
  const std::string before = to_json_text(r);
  bound_record(r);
  CHECK(to_json_text(r) == before);
  CHECK(r.handler.cut.empty());
}

TEST_CASE("400 mapped files with long paths are cut to the bound, and the record says so",
          "[record]") {
  Record r = sample();
  for (int i = 0; i < 400; ++i) {
    r.mappings.push_back(
        {{"path", "/" + std::string(3900, static_cast<char>('a' + i % 26)) + std::to_string(i)},
         {"build_id", "00112233445566778899aabbccddeeff00112233"}});
  }
  r.crash = {{"module", "/usr/bin/app"}, {"frames", nlohmann::json::array()}};
  for (int i = 0; i < 64; ++i) {
    r.crash["frames"].push_back({{"module", std::string(4000, 'm')}, {"pc", "0x1"}});
  }
  r.cmdline = std::string(100000, 'c');
  REQUIRE(to_json_text(r).size() > 1 << 20);
  bound_record(r);
  const std::string text = to_json_text(r);
  CHECK(text.size() <= k_record_max);
  CHECK(r.cmdline.size() == 4096);
  CHECK(r.mappings.size() < 400);
  CHECK_FALSE(r.mappings.empty());
  auto said = [&](std::string_view what) {
    for (const auto& c : r.handler.cut) {
      if (c.starts_with(what)) {
        return true;
      }
    }
    return false;
  };
  CHECK(said("cmdline: 4096 of 100000 bytes kept"));
  CHECK(said("mappings: "));
  // What was cut survives a round trip through the reader.
  auto back = parse_record(text);
  REQUIRE(back);
  CHECK(back->handler.cut == r.handler.cut);
  CHECK(back->signal_name == "SEGV");
}

TEST_CASE("sections that cannot be cut small enough are removed", "[record]") {
  Record r = sample();
  r.container = {{"cgroup", std::string(300000, 'x')}};
  bound_record(r);
  CHECK(to_json_text(r).size() <= k_record_max);
  CHECK(r.container.empty());
  CHECK(r.handler.cut == std::vector<std::string>{"container removed"});
}

TEST_CASE("the package section's lists of long paths are cut with the mappings", "[record]") {
  Record r = sample();
  r.packages = {{"owners", nlohmann::json::array()},
                {"unowned", nlohmann::json::array()},
                {"complete", true}};
  for (int i = 0; i < 400; ++i) {
    const std::string path =
        "/" + std::string(3800, static_cast<char>('a' + i % 26)) + std::to_string(i);
    r.mappings.push_back({{"path", path}});
    r.packages["unowned"].push_back(path);
    r.packages["owners"].push_back({{"path", path}, {"package", "libx"}, {"version", "1"}});
  }
  REQUIRE(to_json_text(r).size() > 4 << 20);
  bound_record(r);
  CHECK(to_json_text(r).size() <= k_record_max);
  REQUIRE(r.packages.is_object());
  CHECK(r.packages["unowned"].size() < 400);
  CHECK(r.packages["owners"].size() < 400);
  CHECK(r.packages["complete"] == true);
  const auto said = [&](std::string_view what) {
    return std::any_of(r.handler.cut.begin(), r.handler.cut.end(),
                       [&](const std::string& c) { return c.starts_with(what); });
  };
  CHECK(said("packages.unowned: "));
  CHECK(said("packages.owners: "));
}
