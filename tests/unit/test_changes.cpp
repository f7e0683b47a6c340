#include "common/packages/changes.hpp"

#include <catch2/catch.hpp>

using namespace common;
using nlohmann::json;

namespace {

json record(const std::string& version, const std::string& build_id) {
  return json::parse(R"({"packages": {"owners": [
      {"path": "/usr/lib/libcrashy.so.1", "package": "libcrashy1", "version": ")" +
                     version + R"(", "source": "dpkg"},
      {"path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "package": "libc6", "version": "2.36-9"}]},
    "mappings": [{"path": "/usr/lib/libcrashy.so.1", "build_id": ")" +
                     build_id + R"("},
                 {"path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "build_id": "aaaa"}]})");
}

} // namespace

TEST_CASE("changes between two crashes: versions and build-ids", "[changes]") {
  const auto before = record("1.0-1", "3f1a00112233445566778899");
  const auto after = record("2.0-1", "9c0200112233445566778899");
  const auto changes = diff_records(before, after);
  REQUIRE(changes.size() == 2);
  CHECK(changes[0].kind == ChangeKind::package);
  CHECK(changes[0].subject == "libcrashy1");
  CHECK(changes[0].from == "1.0-1");
  CHECK(changes[0].to == "2.0-1");
  CHECK(changes[1].kind == ChangeKind::build_id);
  CHECK(describe(changes) ==
        "libcrashy1 1.0-1 → 2.0-1, /usr/lib/libcrashy.so.1 build-id 3f1a00112233… → "
        "9c0200112233…");
  CHECK(to_json(changes)[1]["kind"] == "build_id");
  CHECK(diff_records(before, before).empty());
  CHECK(diff_records(before, after, 1).size() == 1);
}

TEST_CASE("changes of malformed records are left out", "[changes]") {
  const auto good = record("1.0-1", "aa");
  CHECK(diff_records(json::parse(R"({"packages": 5, "mappings": {"x": 1}})"), good).size() == 2);
  CHECK(
      diff_records(good, json::parse(R"({"packages": {"owners": [1, {"package": 2}]}})")).empty());
  CHECK(diff_records(json::array(), json(nullptr)).empty());
}

TEST_CASE("package manager log lines naming a package", "[changes]") {
  const std::string log = "2026-12-01 10:00:00 install libcrashy1:amd64 <none> 1.0-1\n"
                          "2026-12-01 10:00:00 install libcrashy1-dev:amd64 <none> 1.0-1\n"
                          "2026-12-02 11:00:00 upgrade libcrashy1:amd64 1.0-1 2.0-1\n"
                          "2026-12-02 11:00:00 status installed xlibcrashy1:amd64 2.0-1\n"
                          "Upgrade: libcrashy1:amd64 (1.0-1, 2.0-1)\n";
  const auto lines = package_log_lines(log, {"libcrashy1"});
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].find("install libcrashy1:amd64") != std::string::npos);
  CHECK(lines[1].find("upgrade") != std::string::npos);
  CHECK(lines[2].starts_with("Upgrade:"));
  CHECK(package_log_lines(log, {"libcrashy1"}, 1).size() == 1);
  CHECK(package_log_lines(log, {"other"}).empty());
}
