#include "common/packages/debian_version.hpp"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

using namespace common;

namespace {

// What dpkg itself says of `a` < `b` (-1), == (0), > (1); 2 when dpkg cannot run.
int dpkg_says(const std::string& a, const std::string& b) {
  auto run = [&](const char* op) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      execlp("dpkg", "dpkg", "--compare-versions", a.c_str(), op, b.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 127;
  };
  const int lt = run("lt");
  if (lt == 127 || lt == 2) {
    return 2;
  }
  if (lt == 0) {
    return -1;
  }
  return run("eq") == 0 ? 0 : 1;
}

int sign(int v) {
  return (v > 0) - (v < 0);
}

} // namespace

TEST_CASE("Debian versions split as dpkg splits them", "[debian_version]") {
  auto v = parse_debian_version("1:2.36-9+deb12u4");
  REQUIRE(v);
  CHECK(v->epoch == 1);
  CHECK(v->upstream == "2.36");
  CHECK(v->revision == "9+deb12u4");
  v = parse_debian_version("1.0-rc1-2");
  REQUIRE(v);
  CHECK(v->upstream == "1.0-rc1");
  CHECK(v->revision == "2");
  CHECK_FALSE(parse_debian_version(""));
  CHECK_FALSE(parse_debian_version("a1.0"));
  CHECK_FALSE(parse_debian_version("1.0 2"));
  CHECK_FALSE(parse_debian_version("x:1.0"));
  CHECK_FALSE(parse_debian_version("1.0-"));
  CHECK_FALSE(parse_debian_version("1.0\x01"));
}

TEST_CASE("Debian version order: tilde, letters, digit runs, epochs", "[debian_version]") {
  CHECK(compare_debian_versions("1.0~rc1", "1.0") < 0);
  CHECK(compare_debian_versions("1.0", "1.0+b1") < 0);
  CHECK(compare_debian_versions("1.0a", "1.0+") < 0);
  CHECK(compare_debian_versions("1.10", "1.9") > 0);
  CHECK(compare_debian_versions("1:0.1", "9.9") > 0);
  CHECK(compare_debian_versions("1.0-1", "1.0-01") == 0);
  CHECK(compare_debian_versions("2.0-1", "1.0-1") > 0);
  CHECK(compare_debian_versions("1.000000000000000000000000002", "1.1") > 0);
  // An unparsable version never sorts after a real one.
  CHECK(compare_debian_versions("garbage", "0.1") < 0);
  CHECK(compare_debian_versions("0.1", "garbage") > 0);
}

TEST_CASE("Debian version order is dpkg --compare-versions'", "[debian_version]") {
  const std::vector<std::string> versions = {"0",
                                             "0.1",
                                             "1.0",
                                             "1.0~",
                                             "1.0~~",
                                             "1.0~rc1",
                                             "1.0~rc1-1",
                                             "1.0-1",
                                             "1.0-1~bpo",
                                             "1.0-1.1",
                                             "1.0-1+b1",
                                             "1.0+dfsg-1",
                                             "1.0a",
                                             "1.0A",
                                             "1.0.0",
                                             "1.00",
                                             "1.01",
                                             "1.1",
                                             "1.10",
                                             "1.9",
                                             "1:0.9",
                                             "2:0",
                                             "1.0-0",
                                             "10",
                                             "9.99999",
                                             "2.0-1",
                                             "2.0~beta.1",
                                             "2.0-10",
                                             "2.0-9",
                                             "1.2.3+git20240101.abc-2",
                                             "0.0.0-0",
                                             "3.0.11-1~deb12u2",
                                             "3.0.13-1~deb12u1"};
  if (dpkg_says("1.0", "1.0") == 2) {
    WARN("skipped: dpkg is not installed");
    return;
  }
  for (size_t i = 0; i < versions.size(); ++i) {
    for (size_t j = i; j < versions.size(); ++j) {
      const std::string& a = versions[i];
      const std::string& b = versions[j];
      INFO(a << " vs " << b);
      CHECK(sign(compare_debian_versions(a, b)) == dpkg_says(a, b));
    }
  }
}
