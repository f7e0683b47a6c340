#include "common/store/names.hpp"

#include <catch2/catch.hpp>

#include <set>

using namespace common;

TEST_CASE("%E decoding", "[names]") {
  CHECK(decode_exe("!usr!local!bin!ruby") == "/usr/local/bin/ruby");
  std::string exe = "/tmp/a.out (deleted)";
  CHECK(strip_deleted_suffix(exe));
  CHECK(exe == "/tmp/a.out");
  std::string plain = "/bin/true";
  CHECK_FALSE(strip_deleted_suffix(plain));
}

TEST_CASE("%E with '!' in a file name never decodes into . or ..", "[names]") {
  // The kernel leaves a '!' in a name as it is: decoding would climb to /usr/bin/passwd.
  CHECK(decode_exe("!tmp!a!..!..!..!usr!bin!passwd") == "!tmp!a!..!..!..!usr!bin!passwd");
  CHECK(decode_exe("!tmp!x!.!y") == "!tmp!x!.!y");
  CHECK(decode_exe("!tmp!a!b") == "/tmp/a/b"); // ambiguous, but no way up: decoded
  CHECK(decode_exe("!tmp!..x!.y") == "/tmp/..x/.y");
}

TEST_CASE("plain names map without a hash", "[names]") {
  CHECK(host_component("web01.example.com") == "web01.example.com");
  CHECK(exe_component("/usr/local/bin/ruby") == "usr!local!bin!ruby");
  CHECK(exe_component("/usr/bin/g++-12") == "usr!bin!g++-12");
}

TEST_CASE("hostile names become one safe, distinct component", "[names]") {
  const std::vector<std::string> hosts = {
      "..",       ".", "/",   "../../etc", "a/b", "a\"b", "a\nb", std::string(300, 'x'),
      "\xff\xfe", "",  "-rf", "a b",       "a_b", "a!b",  "~",    ".hidden",
  };
  std::set<std::string> seen;
  for (const auto& h : hosts) {
    const std::string c = host_component(h);
    INFO(h);
    CHECK(is_safe_component(c));
    CHECK(c.find('/') == std::string::npos);
    CHECK(c != ".");
    CHECK(c != "..");
    CHECK(c.size() <= 64 + 13);
    seen.insert(c);
  }
  CHECK(seen.size() == hosts.size()); // no two hostile names share a directory
  // Distinct long names that share a prefix stay apart.
  CHECK(host_component(std::string(300, 'x')) != host_component(std::string(301, 'x')));
}

TEST_CASE("executable components", "[names]") {
  CHECK(exe_component("/tmp/my app") != exe_component("/tmp/my_app"));
  CHECK(exe_component("/a!b") != exe_component("/a/b"));
  CHECK(exe_component("relative") != exe_component("/relative"));
  CHECK(is_safe_component(exe_component("/tmp/../etc/passwd")));
  CHECK(is_safe_component(exe_component("")));
  CHECK(exe_component(std::string(500, 'y')).size() <= 120 + 13);
}
