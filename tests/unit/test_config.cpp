#include "common/config/config.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

using namespace common;

TEST_CASE("configuration keys and defaults", "[config]") {
  const auto r = parse_config(R"(
# comment
store = /srv/cores
user = crashes      # trailing comment
compression_level = 3
max_core_size = 2G
keep_free = 5%
max_use = 500M
rate_limit_burst = 3
rate_limit_interval = 60
)");
  CHECK(r.warnings.empty());
  CHECK(r.config.store == "/srv/cores");
  CHECK(r.config.user == "crashes");
  CHECK(r.config.compression_level == 3);
  CHECK(r.config.max_core_size == 2ULL << 30);
  CHECK(r.config.keep_free.percent == 5);
  CHECK(r.config.max_use.bytes == 500ULL << 20);
  CHECK(r.config.max_use.percent == 0);
  CHECK(r.config.rate_limit_burst == 3);
  CHECK(r.config.rate_limit_interval == 60);
}

TEST_CASE("bad lines warn and keep defaults", "[config]") {
  const auto r = parse_config("store = relative\ncompression_level = 99\nbogus = 1\nnoequals\n");
  CHECK(r.warnings.size() == 4);
  const Config defaults;
  CHECK(r.config.store == defaults.store);
  CHECK(r.config.compression_level == defaults.compression_level);
}

TEST_CASE("disk amounts", "[config]") {
  DiskAmount pct{0, 10};
  CHECK(pct.resolve(1000) == 100);
  CHECK(pct.resolve(100ULL << 40, 4ULL << 30) == 4ULL << 30);
  DiskAmount abs{123, 0};
  CHECK(abs.resolve(1000) == 123);
}

TEST_CASE("load_config: missing file", "[config]") {
  CHECK(load_config("/nonexistent/pc.conf", MissingOk::yes).has_value());
  CHECK_FALSE(load_config("/nonexistent/pc.conf", MissingOk::no).has_value());
}

TEST_CASE("the store user is never root", "[config]") {
  for (const char* user : {"root", "0", ""}) {
    const auto r = parse_config(std::string("user = ") + user + "\n");
    CHECK(r.config.user == "process-core");
    REQUIRE(r.warnings.size() == 1);
    CHECK(r.warnings[0].find("for 'user'") != std::string::npos);
  }
  CHECK(parse_config("user = crashes\n").config.user == "crashes");
}

TEST_CASE("load_config: a file others could write is ignored", "[config]") {
  test::TempDir dir;
  const auto path = dir.path() / "pc.conf";
  test::spit(path, "store = /evil\nuser = crashes\n");
  ::chmod(path.c_str(), 0644);
  auto ok = load_config(path.string(), MissingOk::no);
  REQUIRE(ok.has_value());
  CHECK(ok->config.store == "/evil");
  for (mode_t mode : {mode_t{0664}, mode_t{0646}, mode_t{0666}}) {
    ::chmod(path.c_str(), mode);
    auto r = load_config(path.string(), MissingOk::no);
    REQUIRE(r.has_value());
    CHECK(r->config.store == Config{}.store);
    REQUIRE(r->warnings.size() == 1);
    CHECK(r->warnings[0].find("writable by group or others") != std::string::npos);
  }
  if (::geteuid() == 0) {
    ::chmod(path.c_str(), 0644);
    REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
    auto r = load_config(path.string(), MissingOk::no);
    REQUIRE(r.has_value());
    CHECK(r->config.store == Config{}.store);
    CHECK(r->warnings.at(0).find("owned by uid 65534") != std::string::npos);
  }
  std::filesystem::remove(path);
  ::mkfifo(path.c_str(), 0644);
  CHECK_FALSE(load_config(path.string(), MissingOk::no).has_value()); // no wait on a FIFO
}

TEST_CASE("load_config: drop-ins in PATH.d, in name order, over the file", "[config]") {
  test::TempDir dir;
  const auto path = dir.path() / "pc.conf";
  const auto d = dir.path() / "pc.conf.d";
  test::spit(path, "store = /main\nlisten = 127.0.0.1:1\nrate_limit_burst = 7\n");
  std::filesystem::create_directory(d);
  ::chmod(d.c_str(), 0755);
  test::spit(d / "50-listen.conf", "# kept on an upgrade\nlisten = 127.0.0.1:9464\n");
  test::spit(d / "90-store.conf", "store = /dropin\nbogus = 1\n");
  test::spit(d / "10-first.conf", "store = /first\n");
  // Not drop-ins: other endings, hidden files, what editors leave behind.
  test::spit(d / "README", "store = /readme\n");
  test::spit(d / ".hidden.conf", "store = /hidden\n");
  test::spit(d / "99-x.conf~", "store = /backup\n");
  for (const char* name : {"50-listen.conf", "90-store.conf", "10-first.conf"}) {
    ::chmod((d / name).c_str(), 0644);
  }
  ::chmod(path.c_str(), 0644);
  auto r = load_config(path.string(), MissingOk::no);
  REQUIRE(r.has_value());
  CHECK(r->config.store == "/dropin");         // 90 after 10: the last one wins
  CHECK(r->config.listen == "127.0.0.1:9464"); // over the file's
  CHECK(r->config.rate_limit_burst == 7);      // the file's, untouched by the drop-ins
  REQUIRE(r->warnings.size() == 1);
  CHECK(r->warnings[0] == "90-store.conf line 2: unknown key 'bogus'");
  CHECK(r->text.find("listen = 127.0.0.1:9464") != std::string::npos);
  CHECK(r->text.find("/readme") == std::string::npos);

  SECTION("without the file, the drop-ins still apply") {
    std::filesystem::remove(path);
    auto m = load_config(path.string(), MissingOk::yes);
    REQUIRE(m.has_value());
    CHECK(m->config.store == "/dropin");
    CHECK(m->config.rate_limit_burst == Config{}.rate_limit_burst);
  }
  SECTION("a directory others could write is ignored, a bad drop-in skipped") {
    ::chmod(d.c_str(), 0757);
    auto w = load_config(path.string(), MissingOk::no);
    REQUIRE(w.has_value());
    CHECK(w->config.store == "/main");
    REQUIRE(w->warnings.size() == 1);
    CHECK(w->warnings[0].find("writable by group or others") != std::string::npos);
    ::chmod(d.c_str(), 0755);
    ::chmod((d / "90-store.conf").c_str(), 0666);
    std::filesystem::create_directory(d / "60-dir.conf");
    ::mkfifo((d / "70-fifo.conf").c_str(), 0644);
    auto b = load_config(path.string(), MissingOk::no);
    REQUIRE(b.has_value());
    CHECK(b->config.store == "/first");
    REQUIRE(b->warnings.size() == 3);
    CHECK(b->warnings[0].find("60-dir.conf': not a regular file; skipped") != std::string::npos);
    CHECK(b->warnings[1].find("70-fifo.conf") != std::string::npos); // never waited on
    CHECK(b->warnings[2].find("90-store.conf' (writable by group or others)") != std::string::npos);
  }
}

TEST_CASE("admission and deadline keys", "[config]") {
  const auto r = parse_config("max_captures = 3\nruntime_dir = /run/pc-test\n"
                              "capture_timeout = 2m\nanalysis_timeout = 5\n"
                              "max_captures_per_user = 2\n");
  CHECK(r.warnings.empty());
  CHECK(r.config.max_captures == 3);
  CHECK(r.config.max_captures_per_user == 2);
  CHECK(Config{}.max_captures_per_user < Config{}.max_captures);
  CHECK(r.config.runtime_dir == "/run/pc-test");
  CHECK(r.config.capture_timeout == 120);
  CHECK(r.config.analysis_timeout == 5);
  // No captures at all, or a handler without an end, are refused.
  const auto bad = parse_config("max_captures = 0\ncapture_timeout = 0\nanalysis_timeout = 2d\n"
                                "runtime_dir = run\nmax_captures_per_user = 0\n");
  CHECK(bad.warnings.size() == 5);
  const Config defaults;
  CHECK(bad.config.max_captures == defaults.max_captures);
  CHECK(bad.config.max_captures_per_user == defaults.max_captures_per_user);
  CHECK(bad.config.capture_timeout == defaults.capture_timeout);
  CHECK(bad.config.analysis_timeout == defaults.analysis_timeout);
  CHECK(bad.config.runtime_dir == defaults.runtime_dir);
}

TEST_CASE("kernel_log: a path or empty", "[config]") {
  CHECK(Config{}.kernel_log == "/dev/kmsg");
  CHECK(parse_config("kernel_log =\n").config.kernel_log.empty());
  CHECK(parse_config("kernel_log = /tmp/k\n").config.kernel_log == "/tmp/k");
  CHECK(parse_config("kernel_log = k\n").warnings.size() == 1);
}

TEST_CASE("honour_rlimit_core: yes or no", "[config]") {
  CHECK(Config{}.honour_rlimit_core);
  CHECK_FALSE(parse_config("honour_rlimit_core = no\n").config.honour_rlimit_core);
  CHECK_FALSE(parse_config("honour_rlimit_core = false\n").config.honour_rlimit_core);
  CHECK(parse_config("honour_rlimit_core = no\nhonour_rlimit_core = yes\n")
            .config.honour_rlimit_core);
  const auto bad = parse_config("honour_rlimit_core = maybe\n");
  CHECK(bad.warnings.size() == 1);
  CHECK(bad.config.honour_rlimit_core);
}

TEST_CASE("analysis_memory_limit: a size between 1 MiB and 64 GiB", "[config]") {
  CHECK(Config{}.analysis_memory_limit == 512ULL << 20);
  const auto r = parse_config("analysis_memory_limit = 1G\n");
  CHECK(r.warnings.empty());
  CHECK(r.config.analysis_memory_limit == 1ULL << 30);
  for (const char* bad : {"analysis_memory_limit = 4K\n", "analysis_memory_limit = 1T\n",
                          "analysis_memory_limit = lots\n"}) {
    const auto b = parse_config(bad);
    CHECK(b.warnings.size() == 1);
    CHECK(b.config.analysis_memory_limit == Config{}.analysis_memory_limit);
  }
}

TEST_CASE("the table: one row per key, every default valid and what Config{} holds", "[config]") {
  const auto keys = config_keys();
  REQUIRE(keys.size() == 38);
  std::string all_defaults;
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO(keys[i].name);
    CHECK_FALSE(keys[i].doc.empty());
    for (size_t j = i + 1; j < keys.size(); ++j) {
      CHECK(keys[i].name != keys[j].name);
      CHECK_FALSE(keys[i].field == keys[j].field); // no two keys set the same field
    }
    Config c;
    CHECK(apply_config_value(keys[i], keys[i].default_value, c));
    CHECK(c == Config{});
    all_defaults += std::string(keys[i].name) + " = " + std::string(keys[i].default_value) + "\n";
  }
  // The sample with every line uncommented changes nothing.
  const auto r = parse_config(all_defaults);
  CHECK(r.warnings.empty());
  CHECK(r.config == Config{});
}

TEST_CASE("the defaults are the ones documented before the table", "[config]") {
  const Config c;
  CHECK(c.store == "/var/lib/process-core");
  CHECK(c.user == "process-core");
  CHECK(c.compression_level == 1);
  CHECK(c.compression_threads == 1);
  CHECK(c.max_core_size == 16ULL << 30);
  CHECK(c.honour_rlimit_core);
  CHECK(c.python_stacks);
  CHECK(c.keep_free == DiskAmount{0, 15});
  CHECK(c.max_use == DiskAmount{0, 10});
  CHECK(c.rate_limit_burst == 10);
  CHECK(c.rate_limit_interval == 3600);
  CHECK(c.max_captures == 8);
  CHECK(c.max_captures_per_user == 4);
  CHECK(c.runtime_dir == "/run/process-core");
  CHECK(c.capture_timeout == 300);
  CHECK(c.analysis_timeout == 30);
  CHECK(c.analysis_memory_limit == 512ULL << 20);
  CHECK(c.max_executables_per_host == 200);
  CHECK(c.max_hosts == 500);
  CHECK(c.max_series == 50000);
  CHECK(c.kernel_log == "/dev/kmsg");
  CHECK(c.max_records == 10000);
  CHECK(c.max_record_age == 0);
  // Not 9464, the OpenTelemetry SDKs' Prometheus exporter port.
  CHECK(c.listen == "127.0.0.1:19464");
}

TEST_CASE("every bound in the table is enforced, and a refused value changes nothing", "[config]") {
  for (const ConfigKey& key : config_keys()) {
    if (key.kind != ConfigKind::number) {
      continue;
    }
    INFO(key.name);
    const auto line = [&](uint64_t v) {
      return std::string(key.name) + " = " + std::to_string(v) + "\n";
    };
    CHECK(parse_config(line(key.min)).warnings.empty());
    CHECK(parse_config(line(key.max)).warnings.empty());
    if (key.min > 0) {
      const auto r = parse_config(line(key.min - 1));
      CHECK(r.warnings.size() == 1);
      CHECK(r.config == Config{});
    }
    if (key.max < UINT64_MAX) {
      const auto r = parse_config(line(key.max + 1));
      REQUIRE(r.warnings.size() == 1);
      CHECK(r.warnings[0] == "line 1: invalid value '" + std::to_string(key.max + 1) + "' for '" +
                                 std::string(key.name) + "', keeping the default");
      CHECK(r.config == Config{});
    }
    CHECK(parse_config(std::string(key.name) + " = -1\n").config == Config{});
    CHECK(parse_config(std::string(key.name) + " = 1x\n").warnings.size() == 1);
  }
  // Every value of a number key fits its field: the largest is stored exactly.
  CHECK(parse_config("rate_limit_interval = 31622400\n").config.rate_limit_interval == 31622400);
  CHECK(parse_config("max_records = 18446744073709551615\n").config.max_records == UINT64_MAX);
}

TEST_CASE("warnings keep their wording", "[config]") {
  const auto r = parse_config("\nbogus = 1\nnoequals\nlisten = nocolon\nlisten = [::1]:9464\n");
  REQUIRE(r.warnings.size() == 3);
  CHECK(r.warnings[0] == "line 2: unknown key 'bogus'");
  CHECK(r.warnings[1] == "line 3: expected 'key = value'");
  CHECK(r.warnings[2] == "line 4: invalid value 'nocolon' for 'listen', keeping the default");
  CHECK(r.config.listen == "[::1]:9464");
}
