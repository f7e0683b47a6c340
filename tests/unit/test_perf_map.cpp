#include "common/crash/perf_map.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using common::jit_signature_name;
using common::parse_perf_map_line;
using common::perf_map_names;

TEST_CASE("perf map lines: hex start, hex size, a name", "[perf_map]") {
  const auto e = parse_perf_map_line("7f7684023b80 378 JS:~parse /srv/app.js:2:15");
  REQUIRE(e);
  CHECK(e->start == 0x7f7684023b80);
  CHECK(e->size == 0x378);
  CHECK(e->name == "JS:~parse /srv/app.js:2:15");
  const auto x = parse_perf_map_line("0x1000 0x10 name with spaces\r");
  REQUIRE(x);
  CHECK(x->start == 0x1000);
  CHECK(x->name == "name with spaces");
  for (const char* bad : {"", "1000", "1000 10", "1000 10 ", "g000 10 x", "1000 0 x", "1000 -10 x",
                          "12345678901234567 10 x", "0x 10 x", " 1000 10 x"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_perf_map_line(bad));
  }
  const std::string long_name = "1000 10 " + std::string(10000, 'n');
  CHECK(parse_perf_map_line(long_name)->name.size() == common::k_perf_map_name);
}

TEST_CASE("an address is named by the last line that holds it", "[perf_map]") {
  const std::string map = "1000 100 old\n"
                          "2000 10 other\n"
                          "garbage line\n"
                          "\x01\x02\xff binary\n"
                          "1000 80 new\n"; // the JIT reused the start of old's code
  const std::vector<uint64_t> at = {0x1000, 0x107f, 0x1080, 0x10ff, 0x1100, 0x2005, 0x3000};
  const auto names = perf_map_names(map, at);
  CHECK(names.at(0x1000).name == "new");
  CHECK(names.at(0x107f).name == "new");
  CHECK(names.at(0x1080).name == "old");
  CHECK(names.at(0x1080).start == 0x1000);
  CHECK(names.at(0x10ff).name == "old");
  CHECK(names.at(0x2005).name == "other");
  CHECK_FALSE(names.contains(0x1100));
  CHECK_FALSE(names.contains(0x3000));
  CHECK(perf_map_names("", at).empty());
  CHECK(perf_map_names(map, {}).empty());
}

TEST_CASE("a line at the top of the address space does not wrap", "[perf_map]") {
  const auto names = perf_map_names("ffffffffffffff00 ffffffffffffffff top\n",
                                    std::vector<uint64_t>{0x10, UINT64_MAX});
  CHECK(names.size() == 1);
  CHECK(names.at(UINT64_MAX).name == "top");
}

TEST_CASE("many overlapping lines cost each address one naming", "[perf_map]") {
  std::string map;
  for (int i = 0; i < 100000; ++i) {
    map += "0 ffffffffffffffff everything\n";
  }
  std::vector<uint64_t> at;
  for (uint64_t i = 0; i < 4096; ++i) {
    at.push_back(i * 0x1000);
  }
  const auto names = perf_map_names(map, at);
  CHECK(names.size() == at.size());
}

TEST_CASE("a deadline in the past names nothing", "[perf_map]") {
  const auto names = perf_map_names("1000 10 x\n", std::vector<uint64_t>{0x1000},
                                    std::chrono::steady_clock::now() - std::chrono::seconds(1));
  CHECK(names.empty());
}

TEST_CASE("the signature's part of a JIT name", "[perf_map]") {
  CHECK(jit_signature_name("JS:~parse /srv/app/lib.js:2:15") == "parse lib.js");
  CHECK(jit_signature_name("JS:*parse /opt/app/lib.js:2:15") == "parse lib.js");
  CHECK(jit_signature_name("LazyCompile:^render file:///srv/x/view.mjs:30:1") == "render view.mjs");
  CHECK(jit_signature_name("JS:~ node:internal/main/run_main_module:1:1") == "run_main_module");
  CHECK(jit_signature_name("py::Handler.parse:/srv/app/lib.py") == "Handler.parse lib.py");
  CHECK(jit_signature_name("Builtin:ArgumentsAdaptorTrampoline") ==
        "Builtin:ArgumentsAdaptorTrampoline");
  CHECK(jit_signature_name("crash_in_jit") == "crash_in_jit");
}
