#include "handler/report.hpp"

#include "common/base/escape.hpp"
#include "common/base/path.hpp"
#include "common/base/units.hpp"
#include "common/crash/crash_json.hpp"
#include "process_core_version.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace handler {

namespace {

// MESSAGE_ID of the crash line in the journal (documented in docs/record.md).
constexpr std::string_view k_crash_message_id = "dbba4d8a928544e79ac34a21f9399051";
// systemd-coredump's catalog MESSAGE_ID ("Process … dumped core."): the line carries it too,
// so coredumpctl, `journalctl MESSAGE_ID=…` queries and log pipelines made for
// systemd-coredump find process-core's crashes. A journal field may be given twice.
constexpr std::string_view k_coredump_message_id = "fc2e22bc6ee647b6b90729ab34a250b1";

} // namespace

std::string outcome_text(const common::CoreInfo& core) {
  std::string text = std::string(common::to_string(core.reason));
  if (core.present) {
    text +=
        " (" + common::human_size(core.size) + " → " + common::human_size(core.stored_size) + ")";
  }
  if (!core.error.empty()) {
    text += ": " + core.error;
  }
  return text;
}

std::string crash_line(const common::Record& r, const std::string& tail) {
  const std::string pid = r.pid ? std::to_string(*r.pid) : "?";
  std::string site;
  if (auto module = r.crash.find("module"); module != r.crash.end() && module->is_string()) {
    const auto found = r.crash.find("symbol");
    const nlohmann::json sym = found != r.crash.end() ? *found : nlohmann::json();
    site =
        " at " +
        (sym.is_object()
             ? sym.value("name", std::string()) + "+" + sym.value("offset", std::string("0x0"))
             : module->get<std::string>() + "+" + r.crash.value("module_offset", std::string("?")));
    if (sym.is_object()) {
      site += " (" + module->get<std::string>() + ")";
    }
  }
  return fmt::format("Process {} ({}) of host {} crashed with SIG{}{}{}: core {}; {}", pid,
                     common::to_valid_utf8(r.executable), common::to_valid_utf8(r.hostname),
                     r.signal_name, common::crash_cause_detail(r.crash),
                     common::to_valid_utf8(site), outcome_text(r.core), tail);
}

std::string crash_line_short(const common::Record& r, bool written) {
  const std::string_view exe = common::base_name(r.executable);
  // 64 bytes at most, then escaped: at most 4 bytes each.
  std::string name = common::to_valid_utf8(exe.substr(0, std::min<size_t>(exe.size(), 64)));
  return common::printable(fmt::format(
      "Process {} ({}) crashed with SIG{}: core {}; record {}{}",
      r.pid ? std::to_string(*r.pid) : "?", name, r.signal_name.substr(0, 16),
      common::to_string(r.core.reason), r.id.substr(0, 64), written ? "" : ", not written"));
}

// The crash line's journal fields: ours (PROCESS_CORE_*) and systemd-coredump's (COREDUMP_*,
// under both MESSAGE_IDs), see docs/record.md. Values are printable: journalctl shows them to
// operators as they are.
std::vector<common::LogField> journal_fields(const common::Record& r, const std::string& where,
                                             const std::string& store_root) {
  // `journalctl MESSAGE_ID=…` finds every crash process-core logged, by either id.
  std::vector<common::LogField> f = {{"MESSAGE_ID", std::string(k_crash_message_id)},
                                     {"MESSAGE_ID", std::string(k_coredump_message_id)}};
  auto add = [&](const char* name, const std::string& value) {
    if (!value.empty()) {
      f.push_back({name, common::printable(value)});
    }
  };
  auto number = [](const auto& value) { return value ? std::to_string(*value) : std::string(); };
  std::string unit;
  if (auto it = r.container.find("unit"); it != r.container.end() && it->is_string()) {
    unit = it->get<std::string>();
  }
  add("PROCESS_CORE_RECORD_ID", r.id);
  add("PROCESS_CORE_HOSTNAME", common::to_valid_utf8(r.hostname));
  add("PROCESS_CORE_EXECUTABLE", common::to_valid_utf8(r.executable));
  add("PROCESS_CORE_SIGNAL", std::to_string(r.signal));
  add("PROCESS_CORE_SIGNAL_NAME", r.signal_name);
  add("PROCESS_CORE_PID", number(r.pid));
  add("PROCESS_CORE_UID", number(r.uid));
  add("PROCESS_CORE_COMM", common::to_valid_utf8(r.comm));
  add("PROCESS_CORE_CORE", std::string(common::to_string(r.core.reason)));
  // The record's path when the tail names one (the run's "record <path>", the watchdog's
  // "<what>; record <path>").
  const size_t record_at = where.rfind("record /");
  add("PROCESS_CORE_RECORD", record_at != std::string::npos ? where.substr(record_at + 7) : where);
  if (auto it = r.crash.find("signature"); it != r.crash.end() && it->is_string()) {
    add("PROCESS_CORE_SIGNATURE", it->get<std::string>());
  }
  add("PROCESS_CORE_UNIT", unit);
  // systemd-coredump's names and formats (its coredump.c): what coredumpctl list/info read.
  add("COREDUMP_PID", number(r.pid));
  add("COREDUMP_UID", number(r.uid));
  add("COREDUMP_GID", number(r.gid));
  add("COREDUMP_SIGNAL", std::to_string(r.signal));
  add("COREDUMP_SIGNAL_NAME", r.signal_name.empty() ? "" : "SIG" + r.signal_name);
  add("COREDUMP_EXE", common::to_valid_utf8(r.executable));
  add("COREDUMP_COMM", common::to_valid_utf8(r.comm));
  add("COREDUMP_CMDLINE", common::to_valid_utf8(r.cmdline));
  add("COREDUMP_HOSTNAME", common::to_valid_utf8(r.hostname));
  add("COREDUMP_RLIMIT", number(r.rlimit_core));
  add("COREDUMP_UNIT", unit);
  if (const auto t = common::parse_time(r.time)) {
    add("COREDUMP_TIMESTAMP", std::to_string(*t * 1000000)); // microseconds, as systemd's
  }
  // The stored core is a zstd frame, which coredumpctl's dump and debug decompress by the
  // file's .zst ending; without it coredumpctl says the core is missing.
  if (r.core.present && !r.core.path.empty()) {
    add("COREDUMP_FILENAME", store_root + "/" + r.core.path);
  }
  return f;
}

CrashLog crash_log(const common::Record& r, const std::string& where, const std::string& store_root,
                   bool written) {
  CrashLog log;
  log.message = common::printable(crash_line(r, where));
  log.fields = journal_fields(r, where, store_root);
  log.short_message = crash_line_short(r, written);
  if (!written) {
    // The record could not be stored: the log is all that is left of this crash, so it gets
    // the whole record.
    log.level = spdlog::level::err;
    log.message += ": " + to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return log;
}

CrashLog watchdog_log(const common::Record& r, const std::string& what,
                      const std::string& record_path, const std::string& store_root, bool written) {
  CrashLog log = crash_log(
      r, what + (written ? "; record " + record_path : std::string("; record NOT written")),
      store_root, written);
  // A run that outlived its deadline is an error even when its record was written.
  log.level = spdlog::level::err;
  return log;
}

void emit(const CrashLog& log) {
  common::log_event(log.level, log.message, log.fields, log.short_message);
}

void stamp_record(common::Record& r, const std::vector<std::string>& warnings, double duration_ms) {
  r.handler.version = PROCESS_CORE_VERSION;
  r.handler.warnings = warnings;
  r.handler.duration_ms = duration_ms;
}

void log_crash(const common::Record& r, const std::vector<std::string>& warnings,
               const std::string& where, const std::string& store_root, bool written) {
  for (const auto& w : warnings) {
    spdlog::warn("{}: {}", r.id, common::printable(w));
  }
  emit(crash_log(r, where, store_root, written));
}

} // namespace handler
