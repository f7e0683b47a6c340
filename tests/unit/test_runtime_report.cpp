#include "handler/runtime_report.hpp"

#include <catch2/catch.hpp>

#include <string>

using handler::report_candidates;

namespace {

std::string block(std::initializer_list<std::string> items) {
  std::string out;
  for (const auto& s : items) {
    out += s;
    out += '\0';
  }
  return out;
}

} // namespace

TEST_CASE("runtime report: the JVM's -XX:ErrorFile, else hs_err_pid<pid>.log", "[runtime_report]") {
  const auto implicit = report_candidates(block({"PATH=/bin"}), block({"java", "-Xint", "X.java"}),
                                          "/usr/lib/jvm/java-17-openjdk-amd64/bin/java", 42);
  REQUIRE(implicit.size() == 2);
  CHECK(implicit[0].runtime == "jvm");
  CHECK(implicit[0].path == "hs_err_pid42.log");
  CHECK(implicit[0].implicit);
  CHECK(implicit[1].path == "/tmp/hs_err_pid42.log");

  const auto named =
      report_candidates(block({"JAVA_TOOL_OPTIONS=-Xmx1g -XX:ErrorFile=/var/log/app/err_%p.log"}),
                        block({"/opt/app/bin/launcher"}), "/opt/app/bin/launcher", 7);
  REQUIRE(named.size() == 1);
  CHECK(named[0].named == "/var/log/app/err_%p.log");
  CHECK(named[0].path == "/var/log/app/err_7.log");
  CHECK_FALSE(named[0].implicit);

  // Another specifier than %p and %%: not guessed, left for the reader to refuse.
  const auto odd = report_candidates({}, block({"java", "-XX:ErrorFile=/tmp/%t.log"}), "java", 7);
  REQUIRE(odd.size() == 1);
  CHECK(odd[0].path.empty());
}

TEST_CASE("runtime report: RUBY_CRASH_REPORT", "[runtime_report]") {
  const auto r = report_candidates(block({"RUBY_CRASH_REPORT=crash-%p-%%.log"}),
                                   block({"ruby", "x.rb"}), "/usr/bin/ruby3.3", 99);
  REQUIRE(r.size() == 1);
  CHECK(r[0].runtime == "ruby");
  CHECK(r[0].path == "crash-99-%.log");
  // A pipe to a program is no file.
  const auto pipe = report_candidates(block({"RUBY_CRASH_REPORT=|logger"}), {}, "/usr/bin/ruby", 1);
  REQUIRE(pipe.size() == 1);
  CHECK(pipe[0].path.empty());
  CHECK(report_candidates(block({"RUBY_CRASH_REPORT="}), {}, "/usr/bin/ruby", 1).empty());
  CHECK(report_candidates(block({"HOME=/root"}), block({"ruby"}), "/usr/bin/ruby", 1).empty());
}

TEST_CASE("runtime report: Node's --report-on-fatalerror", "[runtime_report]") {
  SECTION("a directory: the newest report of this pid is looked for") {
    const auto r = report_candidates(
        block({"NODE_OPTIONS=--report-on-fatalerror --report-directory=/var/crash"}),
        block({"node", "app.js"}), "/usr/bin/node", 5);
    REQUIRE(r.size() == 1);
    CHECK(r[0].runtime == "node");
    CHECK(r[0].node_dir);
    CHECK(r[0].path == "/var/crash");
  }
  SECTION("a file name in argv") {
    const auto r = report_candidates({},
                                     block({"node", "--report-on-fatalerror", "--report-directory",
                                            "out", "--report-filename=r.json", "app.js"}),
                                     "/usr/bin/node", 5);
    REQUIRE(r.size() == 1);
    CHECK_FALSE(r[0].node_dir);
    CHECK(r[0].path == "out/r.json");
  }
  SECTION("reports to stdout or without a trigger: nothing") {
    CHECK(report_candidates({},
                            block({"node", "--report-on-fatalerror", "--report-filename=stdout"}),
                            "/usr/bin/node", 5)
              .empty());
    CHECK(report_candidates({}, block({"node", "--report-directory=/x"}), "/usr/bin/node", 5)
              .empty());
  }
}
