#include "handler/core_args.hpp"

#include <catch2/catch.hpp>

using common::parse_core_args;
using Args = std::vector<std::string>;

TEST_CASE("minimal form: %h %s %E", "[core_args]") {
  const auto a = parse_core_args({"web01", "11", "!usr!local!bin!ruby"});
  CHECK(a.hostname == "web01");
  CHECK(a.signal == 11);
  CHECK(a.exe_raw == "!usr!local!bin!ruby");
  CHECK_FALSE(a.pid);
  CHECK(a.warnings.empty());
}

TEST_CASE("recommended form with every specifier", "[core_args]") {
  const auto a = parse_core_args({"-P1234", "-I1235", "-u1000", "-g1001", "-t1700000000",
                                  "-c18446744073709551615", "-d1", "-F3", "--", "web01", "6",
                                  "!usr!bin!python3"});
  CHECK(a.pid == 1234);
  CHECK(a.tid == 1235);
  CHECK(a.uid == 1000);
  CHECK(a.gid == 1001);
  CHECK(a.time == 1700000000);
  CHECK(a.rlimit == UINT64_MAX);
  CHECK(a.dump_mode == 1);
  CHECK(a.pidfd == 3);
  CHECK(a.hostname == "web01");
  CHECK(a.signal == 6);
  CHECK(a.exe_raw == "!usr!bin!python3");
  CHECK(a.warnings.empty());
}

TEST_CASE("a kernel without %F (before 6.16) leaves -F%F as -F: no pidfd, said once", "[core_args]") {
  // The kernel expands an unknown specifier to nothing: "-F%F" arrives as "-F".
  const auto a = parse_core_args(
      {"-P1234", "-u1000", "-c0", "-d1", "-F", "--", "web01", "11", "!usr!bin!app"});
  CHECK(a.pid == 1234);
  CHECK_FALSE(a.pidfd);
  CHECK(a.hostname == "web01");
  CHECK(a.exe_raw == "!usr!bin!app");
  REQUIRE(a.warnings.size() == 1);
  CHECK(a.warnings[0].find("does not expand %F") != std::string::npos);
}

TEST_CASE("an executable split on spaces (pre-5.3 kernels) is joined", "[core_args]") {
  const auto a = parse_core_args({"h", "11", "!tmp!my", "crashy", "app"});
  CHECK(a.exe_raw == "!tmp!my crashy app");
  const auto b = parse_core_args({"-P1", "--", "h", "11", "!tmp!a", "b"});
  CHECK(b.exe_raw == "!tmp!a b");
  CHECK(b.pid == 1);
}

TEST_CASE("hostnames that look like options stay hostnames", "[core_args]") {
  SECTION("minimal form, hostname -P5") {
    const auto a = parse_core_args({"-P5", "11", "!bin!x"});
    CHECK(a.hostname == "-P5");
    CHECK_FALSE(a.pid);
    CHECK(a.signal == 11);
  }
  SECTION("minimal form, hostname --") {
    const auto a = parse_core_args({"--", "11", "!bin!x"});
    CHECK(a.hostname == "--");
    CHECK(a.signal == 11);
    CHECK(a.exe_raw == "!bin!x");
  }
  SECTION("recommended form, hostname --") {
    const auto a = parse_core_args({"-P7", "--", "--", "11", "!bin!x"});
    CHECK(a.pid == 7);
    CHECK(a.hostname == "--");
    CHECK(a.exe_raw == "!bin!x");
  }
  SECTION("options without --, hostname --config=...") {
    // A container's hostname must never choose the handler's configuration.
    const auto a = parse_core_args({"-P7", "--config=/tmp/evil.conf", "11", "!usr!bin!app"});
    CHECK(a.pid == 7);
    CHECK_FALSE(a.config_path);
    CHECK(a.hostname == "--config=/tmp/evil.conf");
    CHECK(a.exe_raw == "!usr!bin!app");
    const auto b = parse_core_args({"--config=/etc/real.conf", "--store=/x", "11", "!bin!x"});
    CHECK(b.config_path == "/etc/real.conf");
    CHECK_FALSE(b.store_path);
    CHECK(b.hostname == "--store=/x");
    const auto c = parse_core_args({"--config", "/etc/real.conf", "--config", "11", "!bin!x"});
    CHECK(c.config_path == "/etc/real.conf");
    CHECK(c.hostname == "--config");
  }
  SECTION("hostname --help or --version never ends a capture") {
    for (const char* host : {"--help", "-h", "--version"}) {
      const auto a = parse_core_args({"-P7", host, "11", "!bin!x"});
      CHECK_FALSE(a.help);
      CHECK_FALSE(a.version);
      CHECK(a.hostname == host);
      const auto m = parse_core_args({host, "6", "!bin!x"});
      CHECK_FALSE(m.help);
      CHECK(m.hostname == host);
    }
  }
  SECTION("recommended form, hostname --store") {
    const auto a = parse_core_args({"-P7", "--", "--store", "11", "!bin!x"});
    CHECK(a.hostname == "--store");
    CHECK_FALSE(a.store_path);
  }
}

TEST_CASE("malformed and unknown arguments become warnings, never failures", "[core_args]") {
  SECTION("bad numbers") {
    const auto a = parse_core_args({"-Pabc", "-F", "-d1", "--", "h", "11", "!x"});
    CHECK_FALSE(a.pid);
    CHECK_FALSE(a.pidfd);
    CHECK(a.dump_mode == 1);
    CHECK(a.warnings.size() == 2);
  }
  SECTION("unknown option and empty argument before --") {
    const auto a = parse_core_args({"-X5", "", "-P9", "--", "h", "11", "!x"});
    CHECK(a.pid == 9);
    CHECK(a.hostname == "h");
    CHECK(a.warnings.size() == 2);
  }
  SECTION("bad signal") {
    const auto a = parse_core_args({"h", "SEGV", "!x"});
    CHECK_FALSE(a.signal);
    CHECK(a.hostname == "h");
    CHECK_FALSE(a.warnings.empty());
  }
  SECTION("nothing at all") {
    const auto a = parse_core_args({});
    CHECK_FALSE(a.signal);
    CHECK_FALSE(a.warnings.empty());
  }
}

TEST_CASE("our own options", "[core_args]") {
  const auto a = parse_core_args({"--config", "/etc/x.conf", "--store=/srv/s", "h", "4", "!x"});
  CHECK(a.config_path == "/etc/x.conf");
  CHECK(a.store_path == "/srv/s");
  CHECK(a.signal == 4);
  CHECK(parse_core_args({"--help"}).help);
  CHECK(parse_core_args({"--version"}).version);
}

TEST_CASE("from the kernel, --config and --store only as core_pattern spells them", "[core_args]") {
  // Linux < 5.3 splits the expanded pattern: the hostname "--store=/x h" becomes two arguments,
  // which read exactly like an option before the hostname.
  auto a = parse_core_args({"--store=/x", "h", "11", "!bin!a"});
  REQUIRE(a.store_path == "/x");
  common::keep_pattern_options(a, "|/usr/local/sbin/process-core %h %s %E\n");
  CHECK_FALSE(a.store_path);
  CHECK(a.warnings.back().find("not written in core_pattern") != std::string::npos);

  auto b = parse_core_args({"--config=/etc/pc.conf", "--store", "/var/s", "--", "h", "11", "!a"});
  common::keep_pattern_options(b, "|/p --config=/etc/pc.conf --store /var/s -- %h %s %E");
  CHECK(b.config_path == "/etc/pc.conf");
  CHECK(b.store_path == "/var/s");

  // The right option name with another value, or a value that a specifier expands into.
  auto c = parse_core_args({"--config=/tmp/evil", "--", "h", "11", "!a"});
  common::keep_pattern_options(c, "|/p --config=/etc/pc.conf -- %h %s %E");
  CHECK(c.config_path == "/etc/pc.conf"); // the pattern's own value, not the crash's
  CHECK(c.warnings.back().find("'/tmp/evil'") != std::string::npos);

  // Crash data repeating an option after the administrator's (a split %E, or --config=%h)
  // does not erase the administrator's value.
  auto e = parse_core_args({"--config=/etc/pc.conf", "--config=evil.conf", "--store", "/s", "--",
                            "evil.conf", "11", "!a"});
  REQUIRE(e.config_path == "evil.conf");
  common::keep_pattern_options(e, "|/p --config=/etc/pc.conf --config=%h --store /s -- %h %s %E");
  CHECK(e.config_path == "/etc/pc.conf");
  CHECK(e.store_path == "/s");
  auto d = parse_core_args({"--store", "x", "--", "h", "11", "!a"});
  common::keep_pattern_options(d, "|/p --store %h -- %h %s %E");
  CHECK_FALSE(d.store_path);
}
