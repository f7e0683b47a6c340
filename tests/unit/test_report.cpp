#include "common/base/units.hpp"
#include "handler/report.hpp"
#include "process_core_version.hpp"

#include <catch2/catch.hpp>

#include <string>

using handler::crash_line;
using handler::journal_fields;
using handler::outcome_text;

namespace {

common::Record crash() {
  common::Record r;
  r.id = "4d65897c0a1b4c2d8e9f00112233aabb";
  r.pid = 4242;
  r.uid = 1000;
  r.gid = 1000;
  r.hostname = "web01";
  r.executable = "/usr/bin/crasher";
  r.comm = "crasher";
  r.signal = 11;
  r.signal_name = "SEGV";
  r.core.present = true;
  r.core.reason = common::CoreReason::stored;
  r.core.size = 3 << 20;
  r.core.stored_size = 200 << 10;
  r.core.path = "web01/crasher/4d65897c0a1b4c2d8e9f00112233aabb.core.zst";
  return r;
}

std::string stored_text() {
  return "stored (" + common::human_size(3 << 20) + " → " + common::human_size(200 << 10) + ")";
}

std::vector<std::string> values(const std::vector<common::LogField>& fields,
                                const std::string& name) {
  std::vector<std::string> out;
  for (const auto& f : fields) {
    if (f.name == name) {
      out.push_back(f.value);
    }
  }
  return out;
}

} // namespace

TEST_CASE("the outcome text says what became of the core", "[report]") {
  common::Record r = crash();
  CHECK(outcome_text(r.core) == stored_text());
  r.core.error = "cut at max_core_size";
  r.core.reason = common::CoreReason::truncated;
  CHECK(outcome_text(r.core) == "truncated (" + common::human_size(3 << 20) + " → " +
                                    common::human_size(200 << 10) + "): cut at max_core_size");
  common::CoreInfo none;
  none.reason = common::CoreReason::busy;
  none.error = "2 captures already running (max_captures): recorded without reading the core";
  CHECK(outcome_text(none) ==
        "busy: 2 captures already running (max_captures): recorded without reading the core");
}

TEST_CASE("one crash line names the site by symbol, by module, or not at all", "[report]") {
  common::Record r = crash();
  const std::string tail = "record /var/lib/process-core/web01/crasher/x.json";
  SECTION("before the analysis (the watchdog's record): no site") {
    CHECK(crash_line(r, tail) == "Process 4242 (/usr/bin/crasher) of host web01 crashed with "
                                 "SIGSEGV: core " +
                                     stored_text() + "; " + tail);
  }
  SECTION("a symbol: name+offset (module)") {
    r.crash = {{"module", "/usr/lib/libc.so.6"},
               {"module_offset", "0x2a1f0"},
               {"symbol", {{"name", "abort"}, {"offset", "0x1c"}}}};
    CHECK(crash_line(r, tail) == "Process 4242 (/usr/bin/crasher) of host web01 crashed with "
                                 "SIGSEGV at abort+0x1c (/usr/lib/libc.so.6): core " +
                                     stored_text() + "; " + tail);
  }
  SECTION("no symbol: module+offset") {
    r.crash = {{"module", "/usr/lib/libc.so.6"}, {"module_offset", "0x2a1f0"}, {"symbol", nullptr}};
    CHECK(crash_line(r, tail) == "Process 4242 (/usr/bin/crasher) of host web01 crashed with "
                                 "SIGSEGV at /usr/lib/libc.so.6+0x2a1f0: core " +
                                     stored_text() + "; " + tail);
  }
  SECTION("a module that is not a string is no site; an unknown pid is ?") {
    r.crash = {{"module", 7}, {"symbol", {{"name", "abort"}}}};
    r.pid.reset();
    CHECK(crash_line(r, tail) == "Process ? (/usr/bin/crasher) of host web01 crashed with "
                                 "SIGSEGV: core " +
                                     stored_text() + "; " + tail);
  }
  SECTION("the kernel's strings come out valid UTF-8") {
    r.executable = "/usr/bin/cr\xff"
                   "asher";
    r.hostname = "web\xc3";
    const std::string line = crash_line(r, tail);
    CHECK(line.find('\xff') == std::string::npos);
    CHECK(line.starts_with("Process 4242 (/usr/bin/cr"));
    CHECK(line.find("asher) of host web") != std::string::npos);
  }
}

TEST_CASE("the crash line's journal fields are ours and systemd-coredump's", "[report]") {
  common::Record r = crash();
  r.crash = {{"signature", "v2:abcdef"}};
  const auto f = journal_fields(r, "record /var/lib/process-core/web01/crasher/x.json",
                                "/var/lib/process-core");
  CHECK(values(f, "MESSAGE_ID") == std::vector<std::string>{"dbba4d8a928544e79ac34a21f9399051",
                                                            "fc2e22bc6ee647b6b90729ab34a250b1"});
  CHECK(values(f, "PROCESS_CORE_RECORD") ==
        std::vector<std::string>{"/var/lib/process-core/web01/crasher/x.json"});
  CHECK(values(f, "PROCESS_CORE_SIGNATURE") == std::vector<std::string>{"v2:abcdef"});
  CHECK(values(f, "COREDUMP_SIGNAL_NAME") == std::vector<std::string>{"SIGSEGV"});
  CHECK(values(f, "COREDUMP_PID") == std::vector<std::string>{"4242"});
  CHECK(values(f, "COREDUMP_FILENAME") ==
        std::vector<std::string>{"/var/lib/process-core/" + r.core.path});
  SECTION("no core, no record: no file names, and the reason why") {
    r.core.present = false;
    r.core.path.clear();
    const auto g = journal_fields(r, "record NOT written (no store)", "/var/lib/process-core");
    CHECK(values(g, "COREDUMP_FILENAME").empty());
    CHECK(values(g, "PROCESS_CORE_RECORD") ==
          std::vector<std::string>{"record NOT written (no store)"});
    r.pid.reset();
    CHECK(values(journal_fields(r, "x", "/s"), "COREDUMP_PID").empty());
  }
}

TEST_CASE("the crash line's short form fits the kernel log whatever the record holds", "[report]") {
  common::Record r = crash();
  CHECK(handler::crash_line_short(r, true) ==
        "Process 4242 (crasher) crashed with SIGSEGV: core stored; record "
        "4d65897c0a1b4c2d8e9f00112233aabb");
  CHECK(handler::crash_line_short(r, false).ends_with(", not written"));
  // The longest executable name and the worst escaping still leave a short line.
  r.executable = "/" + std::string(4096, '\x1b');
  const std::string s = handler::crash_line_short(r, true);
  CHECK(s.size() < 400);
  CHECK(s.find('\x1b') == std::string::npos);
}

TEST_CASE("a kmsg line is whole, its short form, or cut at a character and marked", "[log]") {
  CHECK(common::kmsg_text("short", "s", 10) == "short");
  CHECK(common::kmsg_text("a much longer line", "short form", 12) == "short form");
  // No short form that fits: cut, never inside a UTF-8 character, and said so.
  const std::string cut = common::kmsg_text("ééééééééééééééé", "", 16);
  CHECK(cut.size() <= 16);
  CHECK(cut.ends_with(" [cut]"));
  CHECK(cut == "ééééé [cut]");
  CHECK(common::kmsg_text(std::string(5000, 'x'), "", common::k_kmsg_max).size() <=
        common::k_kmsg_max);
}

TEST_CASE("the watchdog's crash line has the run's journal fields and short form", "[report]") {
  const common::Record r = crash();
  const std::string path = "/var/lib/process-core/web01/crasher/" + r.id + ".json";
  const std::string what = "analysis stopped at analysis_timeout (30 s)";

  const handler::CrashLog written =
      handler::watchdog_log(r, what, path, "/var/lib/process-core", true);
  CHECK(written.level == spdlog::level::err);
  CHECK(written.message == "Process 4242 (/usr/bin/crasher) of host web01 crashed with SIGSEGV: "
                           "core " +
                               stored_text() + "; " + what + "; record " + path);
  CHECK(values(written.fields, "MESSAGE_ID").size() == 2);
  CHECK(values(written.fields, "PROCESS_CORE_RECORD") == std::vector<std::string>{path});
  CHECK(values(written.fields, "PROCESS_CORE_RECORD_ID") == std::vector<std::string>{r.id});
  CHECK(values(written.fields, "COREDUMP_FILENAME") ==
        std::vector<std::string>{"/var/lib/process-core/" + r.core.path});
  CHECK(written.short_message == handler::crash_line_short(r, true));

  const handler::CrashLog lost =
      handler::watchdog_log(r, what, path, "/var/lib/process-core", false);
  CHECK(lost.level == spdlog::level::err);
  CHECK(lost.message.find(what + "; record NOT written: {") != std::string::npos);
  CHECK(lost.message.find("\"id\":\"" + r.id + "\"") != std::string::npos); // the whole record
  CHECK(lost.short_message.ends_with(", not written"));
  CHECK(values(lost.fields, "PROCESS_CORE_RECORD") ==
        std::vector<std::string>{what + "; record NOT written"});

  SECTION("the run's own line differs only in level and tail") {
    const handler::CrashLog run =
        handler::crash_log(r, "record " + path, "/var/lib/process-core", true);
    CHECK(run.level == spdlog::level::info);
    CHECK(run.fields.size() == written.fields.size());
    CHECK(run.short_message == written.short_message);
  }
}

TEST_CASE("one stamp of the handler section for the run and the watchdog", "[report]") {
  common::Record r = crash();
  handler::stamp_record(r, {"a warning"}, 12.5);
  CHECK(r.handler.version == PROCESS_CORE_VERSION);
  CHECK(r.handler.warnings == std::vector<std::string>{"a warning"});
  CHECK(r.handler.duration_ms == 12.5);
}
