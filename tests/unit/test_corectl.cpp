#include "cli/catalog/catalog.hpp"
#include "cli/catalog/match.hpp"
#include "cli/catalog/when.hpp"
#include "cli/context.hpp"
#include "cli/options.hpp"
#include "cli/output/render.hpp"
#include "cli/verbs/install.hpp"
#include "cli/verbs/verbs.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <cerrno>

using namespace cli;

TEST_CASE("corectl options", "[corectl]") {
  auto o = parse_options({"--store=/s", "list", "--host", "a", "--host", "b", "-n5", "-r",
                          "--signal", "segv", "--json", "3756"});
  REQUIRE(o);
  CHECK(o->verb == "list");
  CHECK(o->store == "/s");
  CHECK(o->hosts == std::vector<std::string>{"a", "b"});
  CHECK(o->limit == 5);
  CHECK(o->reverse);
  CHECK(o->json == JsonMode::short_);
  CHECK(o->matches == std::vector<std::string>{"3756"}); // a bare --json takes no word
  CHECK(parse_options({})->verb == "list");
  // No verb: the options are list's.
  auto implicit = parse_options({"--host", "web1"});
  REQUIRE(implicit);
  CHECK(implicit->verb == "list");
  CHECK(implicit->hosts == std::vector<std::string>{"web1"});
  auto d = parse_options({"dump", "abc", "-o", "out"});
  REQUIRE(d);
  CHECK(d->matches == std::vector<std::string>{"abc"});
  CHECK(d->output == "out");
  // coredumpctl's -q, -F and -A; -q is everyone's, -F list's, -A debug's.
  auto q = parse_options({"-q", "list", "-F", "COREDUMP_EXE"});
  REQUIRE(q);
  CHECK(q->quiet);
  CHECK(q->field == "COREDUMP_EXE");
  CHECK(parse_options({"debug", "--quiet"})->quiet);
  auto a = parse_options({"debug", "-A", "-batch -ex bt", "ruby"});
  REQUIRE(a);
  CHECK(a->debugger_args == "-batch -ex bt");
  CHECK(a->matches == std::vector<std::string>{"ruby"});
  CHECK(parse_options({"-A", "-ex bt", "debug"})->debugger_args == "-ex bt");
  CHECK_FALSE(parse_options({"info", "-A", "x"}));
  CHECK_FALSE(parse_options({"info", "-F", "x"}));
  CHECK_FALSE(parse_options({"list", "-F", "id", "--json"}));
  // --file: one core outside the store, for info, dump and debug, without matches or filters.
  CHECK(parse_options({"info", "--file", "/tmp/core"})->file == "/tmp/core");
  CHECK(parse_options({"--file=/tmp/core", "debug"})->file == "/tmp/core");
  CHECK(parse_options({"dump", "--file", "c", "-o", "x"})->output == "x");
  CHECK_FALSE(parse_options({"list", "--file", "c"}));
  CHECK_FALSE(parse_options({"info", "--file", "c", "ruby"}));
  CHECK_FALSE(parse_options({"debug", "--file", "c", "--host", "h"}));
  // Global options work after the verb, verb options only after their verb.
  auto g = parse_options({"info", "--store", "/s", "--json=pretty", "-1", "--no-legend"});
  REQUIRE(g);
  CHECK(g->store == "/s");
  CHECK(g->json == JsonMode::pretty);
  CHECK(g->limit == 1);
  CHECK(g->no_legend);
  CHECK(parse_options({"list", "--json=off"})->json == JsonMode::off);
  CHECK(parse_options({"--no-pager", "groups"})->no_pager);
  // Options before the verb, as corectl took them before it had per-verb options.
  auto before = parse_options({"--json", "--host", "web1", "--store", "/s", "-n2", "groups", "x"});
  REQUIRE(before);
  CHECK(before->verb == "groups");
  CHECK(before->json == JsonMode::short_);
  CHECK(before->hosts == std::vector<std::string>{"web1"});
  CHECK(before->store == "/s");
  CHECK(before->limit == 2);
  CHECK(before->matches == std::vector<std::string>{"x"});
  CHECK_FALSE(parse_options({"--dry-run", "list"})); // still not list's option
  CHECK_FALSE(parse_options({"frobnicate", "list"}));
  CHECK_FALSE(parse_options({"list", "--bogus"}));
  CHECK_FALSE(parse_options({"list", "-n"}));
  CHECK_FALSE(parse_options({"list", "-n", "x"}));
  CHECK_FALSE(parse_options({"list", "--json=1"}));
  CHECK_FALSE(parse_options({"list", "-1", "-n", "3"}));
  // An option of another verb is an error, not silently ignored.
  CHECK_FALSE(parse_options({"vacuum", "--json"}));
  CHECK(
      parse_options({"vacuum", "--host", "x", "-U", "7d", "UID=1000"})); // vacuum aimed by filters
  CHECK_FALSE(parse_options({"list", "--dry-run"}));
  CHECK_FALSE(parse_options({"list", "-o", "f"}));
  CHECK_FALSE(parse_options({"dump", "--json"}));
  CHECK_FALSE(parse_options({"install", "--exe", "x"}));
  // A mistyped verb is an error that names the verb meant, never a match of an implied list.
  auto typo = parse_options({"inf", "c0ffee00"});
  REQUIRE_FALSE(typo);
  CHECK(typo.error().find("Unknown verb 'inf', did you mean 'info'?") != std::string::npos);
  auto unknown = parse_options({"--store", "/s", "frobnicate"});
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().find("Unknown verb 'frobnicate'") != std::string::npos);
  CHECK(unknown.error().find("did you mean") == std::string::npos);
  CHECK_FALSE(parse_options({"--host", "web1", "ruby"}));
  CHECK(parse_options({"--host", "list"})); // an option's value is no verb
  CHECK(parse_options({"--host", "web1"})->verb == "list");
  CHECK(parse_options({"-S", "-2h", "list", "ruby"})->verb == "list");
  auto hostile = parse_options({"\x1b]0;pwned\x07"});
  REQUIRE_FALSE(hostile);
  CHECK(hostile.error().find('\x1b') == std::string::npos);
  CHECK(parse_options({"-D", "/srv/store", "inf"}).error().find("'inf'") != std::string::npos);
  CHECK(*parse_options({"-D", "/srv/store", "list"})->store == "/srv/store");
  // -n takes a number and says so in one short line.
  auto limit = parse_options({"list", "-n", "abc"});
  REQUIRE_FALSE(limit);
  CHECK(limit.error() == "-n takes a number of crashes, not 'abc'");
  CHECK(parse_options({"list", "-n", "3"})->limit == 3u);
  CHECK_FALSE(parse_options({"list", "-n", "-3"}));
  // Per-verb help.
  auto h = parse_options({"dump", "--help"});
  REQUIRE(h);
  CHECK(h->help_text.find("--output") != std::string::npos);
  CHECK(h->help_text.find("--dry-run") == std::string::npos);
  auto top = parse_options({"--help"});
  REQUIRE(top);
  CHECK(top->help_text.find("vacuum") != std::string::npos);
}

TEST_CASE("times for --since and --until", "[corectl]") {
  ::setenv("TZ", "UTC", 1);
  ::tzset();
  const int64_t now = 1763780000; // 2025-11-22T02:53:20Z
  const int64_t midnight = 1763769600;
  CHECK(parse_when("2h", now) == now - 7200);
  CHECK(parse_when("-2h", now) == now - 7200);
  CHECK(parse_when("+2h", now) == now + 7200);
  CHECK(parse_when("2 hours ago", now) == now - 7200);
  CHECK(parse_when("2h ago", now) == now - 7200);
  CHECK(parse_when("10min", now) == now - 600);
  CHECK(parse_when("1h30min", now) == now - 5400);
  CHECK(parse_when("1h 30m ago", now) == now - 5400);
  CHECK(parse_when("3d", now) == now - 3 * 86400);
  CHECK(parse_when("90m", now) == now - 5400);
  CHECK(parse_when("1 week", now) == now - 604800);
  CHECK(parse_when("2025-11-22T02:53:20Z", now) == now);
  CHECK(parse_when("2025-11-22T04:53:20+02:00", now) == now);
  CHECK(parse_when("2025-11-22 02:53:20 UTC", now) == now);
  CHECK(parse_when("@1763780000", now) == now);
  CHECK(parse_when("now", now) == now);
  CHECK(parse_when("today", now) == midnight);
  CHECK(parse_when("yesterday", now) == midnight - 86400);
  CHECK(parse_when("tomorrow", now) == midnight + 86400);
  CHECK(parse_when("yesterday 14:00", now) == midnight - 86400 + 14 * 3600);
  CHECK(parse_when("today 08:00:30", now) == midnight + 8 * 3600 + 30);
  CHECK(parse_when("08:00", now) == midnight + 8 * 3600);
  CHECK(parse_when("2025-11-22", now) == midnight);
  CHECK(parse_when("2025-11-22 10:30", now) == midnight + 10 * 3600 + 1800);
  CHECK(parse_when("2025-11-22T10:30:15", now) == midnight + 10 * 3600 + 1815);
  CHECK_FALSE(parse_when("soon", now));
  CHECK_FALSE(parse_when("", now));
  CHECK_FALSE(parse_when("2 parsecs ago", now));
  CHECK_FALSE(parse_when("yesterdayish", now));
  CHECK_FALSE(parse_when("25:00", now));
  CHECK_FALSE(parse_when("2025-13-45", now));
  CHECK_FALSE(parse_when("2025-02-31", now));
  CHECK_FALSE(parse_when("99999999999999999999h", now));
  CHECK_FALSE(parse_when("4294967297y", now)); // no overflow, whatever the span
  CHECK(parse_when("4294967296y", now).has_value());
  CHECK_FALSE(parse_when(std::string(100, '1') + "s", now));
  // coredumpctl's and journalctl's own output, fractions and zone names (systemd.time(7)).
  CHECK(parse_when("Sat 2025-11-22 02:53:20 UTC", now) == now);
  CHECK(parse_when("saturday 2025-11-22 02:53", now) == now - 20);
  CHECK(parse_when("Sat 2025-11-22", now) == midnight);
  CHECK_FALSE(parse_when("Tue 2025-11-22 02:53:20 UTC", now)); // not a Tuesday
  CHECK(parse_when("2025-11-22 02:53:20.999999", now) == now);
  CHECK(parse_when("2025-11-22T02:53:20.5Z", now) == now);
  CHECK(parse_when("2025-11-22 03:53:20 Europe/Berlin", now) == now);
  CHECK(parse_when("Sat 2025-11-22 03:53:20.25 Europe/Berlin", now) == now);
  CHECK(parse_when("2025-11-22 00:53:20 Etc/GMT+2", now) == now); // POSIX sign: 2 h west
  CHECK_FALSE(parse_when("2025-11-22 03:53:20 Mars/Olympus", now));
  CHECK_FALSE(parse_when("2025-11-22 03:53:20 ../../etc/passwd", now));
  CHECK_FALSE(parse_when("2025-11-22 03:53:20 zone.tab", now));
  // Local time follows TZ, and the local zone's abbreviations name it.
  ::setenv("TZ", "Europe/Berlin", 1);
  ::tzset();
  CHECK(parse_when("Sat 2025-11-22 03:53:20 CET", now) == now);
  ::setenv("TZ", "Europe/Berlin", 1);
  ::tzset();
  CHECK(parse_when("2025-11-22 03:53:20", now) == now);
  ::setenv("TZ", "UTC", 1);
  ::tzset();
}

TEST_CASE("positional matches", "[corectl]") {
  CHECK(classify_match("3756") == MatchKind::pid);
  CHECK(classify_match("4194304") == MatchKind::pid);
  CHECK(classify_match("12345678") == MatchKind::id);
  CHECK(classify_match("c0ffee00") == MatchKind::id);
  CHECK(classify_match("C0FFEE00A1B2C3D4") == MatchKind::id);
  CHECK(classify_match("c0ffee") == MatchKind::name); // short hex: a name ("dead", "cafe")
  CHECK(classify_match("segvme") == MatchKind::name);
  CHECK(classify_match("/usr/bin/ruby") == MatchKind::executable);
  CHECK(classify_match("PID=1") == MatchKind::field);
  CHECK(classify_match("a=b=c") == MatchKind::field);
  CHECK(classify_match("=x") == MatchKind::name);
  CHECK(only_ids({"c0ffee00", "ID=0123"}));
  CHECK_FALSE(only_ids({"c0ffee00", "3756"}));
  CHECK_FALSE(only_ids({}));
  {
    Filter u;
    REQUIRE(
        add_matches({"UNIT=a.service", "COREDUMP_UNIT=b.service", "_SYSTEMD_UNIT=c.service"}, u));
    CHECK(u.units == std::vector<std::string>{"a.service", "b.service", "c.service"});
    CHECK(u.matches_unit(nlohmann::json{{"unit", "b.service"}}));
    CHECK_FALSE(u.matches_unit(nlohmann::json{{"unit", "d.service"}}));
    CHECK_FALSE(u.matches_unit(nlohmann::json::object()));
    CHECK_FALSE(u.matches_unit(nlohmann::json{{"unit", 7}}));
    CHECK(Filter{}.matches_unit(nlohmann::json::object()));
  }

  Filter f;
  REQUIRE(add_matches({"3756", "segvme", "/usr/bin/ruby", "UID=1000", "COREDUMP_COMM=x",
                       "SIGNAL=segv", "host=web1", "ID=ABC", "SIGNATURE=5A1E"},
                      f));
  CHECK(f.pids == std::vector<int64_t>{3756});
  CHECK(f.names == std::vector<std::string>{"segvme"});
  CHECK(f.executables == std::vector<std::string>{"/usr/bin/ruby"});
  CHECK(f.uids == std::vector<int64_t>{1000});
  CHECK(f.comms == std::vector<std::string>{"x"});
  CHECK(f.signals == std::vector<int>{11});
  CHECK(f.hosts == std::vector<std::string>{"web1"});
  CHECK(f.ids == std::vector<std::string>{"abc"});
  CHECK(f.signatures == std::vector<std::string>{"5a1e"});
  Filter bad;
  CHECK_FALSE(add_matches({"COLOUR=red"}, bad));
  CHECK_FALSE(add_matches({"PID=x"}, bad));
  CHECK_FALSE(add_matches({"PID=-1"}, bad));
  CHECK_FALSE(add_matches({"ID=xyz"}, bad));
  CHECK_FALSE(add_matches({"SIGNAL=SIGNOPE"}, bad));
  CHECK_FALSE(add_matches({"UID="}, bad));

  Crash c;
  c.id = "c0ffee00a1b2c3d4";
  c.executable = "/usr/bin/segvme";
  c.comm = "worker-1";
  c.pid = 3756;
  c.uid = 1000;
  c.signal = 11;
  auto matches = [&](std::vector<std::string> words) {
    Filter m;
    REQUIRE(add_matches(words, m));
    return m.matches(c);
  };
  CHECK(matches({"3756"}));
  CHECK(matches({"3756", "3757"}));        // one field: OR
  CHECK_FALSE(matches({"3756", "UID=0"})); // two fields: AND
  CHECK(matches({"segvme"}));
  CHECK(matches({"worker-1"}));
  CHECK_FALSE(matches({"COMM=segvme"}));
  CHECK(matches({"/usr/bin/segvme", "c0ffee00"}));
  CHECK_FALSE(matches({"/usr/segvme"}));
  CHECK_FALSE(matches({"c0ffee01"}));
  CHECK_FALSE(matches({"SIGNATURE=5a"})); // no signature: no match
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

TEST_CASE("names match as they are shown, escapes and all", "[corectl]") {
  Crash c;
  c.hostname = "web\x1b[31m1";
  c.executable = "/usr/bin/q\x1bx";
  Filter f;
  f.executables = {"/usr/bin/q\\x1bx"}; // what corectl, the labels and the alerts show
  CHECK(f.matches(c));
  f.executables = {"q\\x1bx"};
  CHECK(f.matches(c));
  f.executables = {"/usr/bin/q\x1bx"}; // the true name
  CHECK(f.matches(c));
  f.executables = {"/usr/bin/q\\x1by"};
  CHECK_FALSE(f.matches(c));
  f.executables.clear();
  f.hosts = {"web\\x1b[31m1"};
  CHECK(f.matches(c));
  c.executable = "/usr/bin/q\\x1bx"; // a real backslash is shown as itself
  f.hosts.clear();
  f.executables = {"/usr/bin/q\\x1bx"};
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

TEST_CASE("vacuum refuses a store whose listing fails part-way", "[corectl][vacuum]") {
  // A real readdir() error (not an open or permission failure): the store root is a /proc
  // directory whose process is gone. Deciding on a partial listing would remove the wrong cores.
  const common::UniqueFd gone(test::reaped_proc_dir());
  REQUIRE(gone);
  Context ctx;
  auto store = common::Store::open("/proc/self/fd/" + std::to_string(gone.get()));
  REQUIRE(store);
  ctx.store.emplace(std::move(*store));
  const Catalog cat = load_catalog(*ctx.store, Filter{}, Cache::no);
  CHECK(cat.problems.unreadable == 1);
  CHECK(cat.problems.first.find("Failed to list store") != std::string::npos);
  CHECK(cat.problems.first.find("No such file or directory") != std::string::npos);
  CHECK(cmd_vacuum(ctx) == Exit::failure);
  const auto found = resolve_id(*ctx.store, "0123");
  REQUIRE_FALSE(found);
  CHECK(found.error().message.find("Failed to list store") != std::string::npos);
}
