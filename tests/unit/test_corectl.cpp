#include "cli/catalog.hpp"
#include "cli/install.hpp"
#include "cli/options.hpp"
#include "cli/render.hpp"

#include <catch2/catch.hpp>

using namespace cli;

TEST_CASE("corectl options", "[corectl]") {
  auto o = parse_options({"--store=/s", "list", "--host", "a", "--host", "b", "-n5", "-r",
                          "--signal", "segv", "--json"});
  REQUIRE(o);
  CHECK(o->verb == "list");
  CHECK(o->store == "/s");
  CHECK(o->hosts == std::vector<std::string>{"a", "b"});
  CHECK(o->limit == 5);
  CHECK(o->reverse);
  CHECK(o->json);
  CHECK(parse_options({})->verb == "list");
  auto d = parse_options({"dump", "abc", "-o", "out"});
  REQUIRE(d);
  CHECK(d->args == std::vector<std::string>{"abc"});
  CHECK(d->output == "out");
  CHECK_FALSE(parse_options({"frobnicate"}));
  CHECK_FALSE(parse_options({"list", "--bogus"}));
  CHECK_FALSE(parse_options({"list", "-n"}));
  CHECK_FALSE(parse_options({"list", "-n", "x"}));
  CHECK_FALSE(parse_options({"list", "--json=1"}));
}

TEST_CASE("times for --since and --until", "[corectl]") {
  const int64_t now = 1763780000;
  CHECK(parse_when("2h", now) == now - 7200);
  CHECK(parse_when("3d", now) == now - 3 * 86400);
  CHECK(parse_when("90m", now) == now - 5400);
  CHECK(parse_when("2025-11-22T02:53:20Z", now) == now);
  CHECK(parse_when("now", now) == now);
  CHECK(parse_when("2025-11-22", now).has_value());
  CHECK(parse_when("2025-11-22 10:30", now).has_value());
  CHECK_FALSE(parse_when("soon", now));
  CHECK_FALSE(parse_when("2025-13-45", now));
}

TEST_CASE("filters", "[corectl]") {
  Crash c;
  c.hostname = "web1";
  c.executable = "/usr/bin/ruby";
  c.signal = 11;
  c.time = 100;
  Filter f;
  CHECK(f.matches(c));
  f.executables = {"ruby"};
  CHECK(f.matches(c));
  f.executables = {"/usr/bin/ruby"};
  CHECK(f.matches(c));
  f.executables = {"/usr/local/bin/ruby", "python"};
  CHECK_FALSE(f.matches(c));
  f.executables.clear();
  f.signals = {6, 11};
  CHECK(f.matches(c));
  f.since = 101;
  CHECK_FALSE(f.matches(c));
  f.since = 100;
  f.until = 100;
  CHECK(f.matches(c));
}

TEST_CASE("terminal safety and sizes", "[corectl]") {
  CHECK(printable("plain/ünïcode") == "plain/ünïcode");
  CHECK(printable("a\x1b[2Jb") == "a\\x1b[2Jb");
  CHECK(printable("c1\xc2\x9b") == "c1\\x9b");
  CHECK(printable("nl\n\x7f") == "nl\\x0a\\x7f");
  CHECK(human_size(0) == "0 B");
  CHECK(human_size(1536) == "1.5 KiB");
}

TEST_CASE("grouping by signature, with a labelled fallback", "[corectl]") {
  auto crash = [](std::string id, int64_t time, std::string host, std::string exe, int sig,
                  std::string signature) {
    Crash c;
    c.id = std::move(id);
    c.time = time;
    c.hostname = std::move(host);
    c.executable = std::move(exe);
    c.signal = sig;
    c.signature = std::move(signature);
    return c;
  };
  const std::vector<Crash> cs = {
      crash("a", 1, "h1", "/x", 11, "s1"), crash("b", 2, "h2", "/y", 11, "s1"),
      crash("c", 3, "h1", "/x", 6, ""), crash("d", 4, "h1", "/x", 6, "")};
  const auto g = group_crashes(cs);
  REQUIRE(g.size() == 2);
  CHECK(g[0].signature == "s1");
  CHECK(g[0].count == 2);
  CHECK(g[0].hosts == std::vector<std::string>{"h1", "h2"});
  CHECK(g[0].executables.size() == 2);
  CHECK(g[1].signature.empty());
  CHECK(g[1].count == 2);
  CHECK(g[1].first == 3);
  CHECK(g[1].last == 4);
}

TEST_CASE("install: pattern for the kernel, within 127 characters", "[corectl][install]") {
  CHECK(kernel_has_pidfd("6.16.0"));
  CHECK(kernel_has_pidfd("6.18.44-fc-v769"));
  CHECK(kernel_has_pidfd("7.0"));
  CHECK_FALSE(kernel_has_pidfd("6.15.9"));
  CHECK_FALSE(kernel_has_pidfd("5.10.0-28-amd64"));
  CHECK_FALSE(kernel_has_pidfd("garbage"));
  const auto p = handler_pattern("/usr/sbin/process-core", true);
  CHECK(p == "|/usr/sbin/process-core -P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E");
  CHECK(p.size() <= k_core_pattern_max);
  CHECK(handler_pattern("/usr/sbin/process-core", false).find("%F") == std::string::npos);
  const auto text = dropin_text(install_settings(p));
  CHECK(text.find("kernel.core_pattern = " + p + "\n") != std::string::npos);
  CHECK(text.find("kernel.core_pipe_limit = 0\n") != std::string::npos);
}

TEST_CASE("install: which core_pattern is ours", "[corectl][install]") {
  const std::string h = "/usr/sbin/process-core";
  const auto p = handler_pattern(h, true);
  CHECK(is_our_pattern(p, h, ""));
  CHECK(is_our_pattern(p, h, p));
  CHECK(is_our_pattern("|/opt/pc/bin/process-core -P%P", h, ""));
  CHECK(is_our_pattern("|/opt/x/pc %p", "/opt/x/pc", ""));
  CHECK(is_our_pattern("|/somewhere/else %p", h, "|/somewhere/else %p"));
  // Not a prefix match: another program whose path starts like ours is not ours.
  CHECK_FALSE(is_our_pattern("|/usr/sbin/process-core-evil %p", h, ""));
  CHECK_FALSE(is_our_pattern("|/usr/sbin/process-coreX", h, ""));
  CHECK_FALSE(is_our_pattern("|process-core", h, ""));
  CHECK_FALSE(is_our_pattern("|/usr/share/apport/apport -p%p", h, p));
  CHECK_FALSE(is_our_pattern("core", h, ""));
  CHECK_FALSE(is_our_pattern("/usr/sbin/process-core", h, ""));
}
