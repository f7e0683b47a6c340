// The crash as the log reports it: the one crash line (of the run's own record and of the one the
// watchdog writes in its place), the core's outcome in it, and the journal fields beside it.
#pragma once

#include "common/base/log.hpp"
#include "common/store/record.hpp"

#include <spdlog/common.h>

#include <string>
#include <vector>

namespace handler {

// What became of the core: "<reason> (<size> → <stored size>): <error>".
std::string outcome_text(const common::CoreInfo& core);

// "Process <pid> (<executable>) of host <host> crashed with SIG<name>[ at <site>]: core
// <outcome>; <tail>", the site from the record's crash section when it has one. `tail` says where
// the record went, or why the watchdog wrote it. Valid UTF-8, not yet escaped for the log.
std::string crash_line(const common::Record& r, const std::string& tail);

// The crash line's short form, for /dev/kmsg when the whole line does not fit in the kernel's
// record: "Process <pid> (<executable's name, cut to 64 bytes>) crashed with SIG<name>: core
// <reason>; record <id>[, not written]" — printable, and at most a few hundred bytes whatever
// the record holds.
std::string crash_line_short(const common::Record& r, bool written);

// The crash line's journal fields: ours (PROCESS_CORE_*) and systemd-coredump's (COREDUMP_*,
// under both MESSAGE_IDs), see docs/record.md. `where` is the crash line's tail.
std::vector<common::LogField> journal_fields(const common::Record& r, const std::string& where,
                                             const std::string& store_root);

// One crash line ready for the log: its level, the line, the journal fields and the short form
// for /dev/kmsg (see common::log_event).
struct CrashLog {
  spdlog::level::level_enum level = spdlog::level::info;
  std::string message;
  std::vector<common::LogField> fields;
  std::string short_message;
};

// The crash line of a record that was `written` (at info level) or not (at error level, with
// the whole record appended: the log is all that is left of the crash). `where` is its tail.
CrashLog crash_log(const common::Record& r, const std::string& where, const std::string& store_root,
                   bool written);

// The crash line the watchdog logs when a run outlived its deadline: at error level, `what`
// (the step that ran out of time), then where the record went (`record_path`) or that it could
// not be written, with the same journal fields and short form as the run's own.
CrashLog watchdog_log(const common::Record& r, const std::string& what,
                      const std::string& record_path, const std::string& store_root, bool written);

// Sends a crash line to the log.
void emit(const CrashLog& log);

// Stamps the record's handler section as a run ends, or as the watchdog would end it: this
// handler's version, the run's `warnings` and its duration. The record is bounded afterwards.
void stamp_record(common::Record& r, const std::vector<std::string>& warnings, double duration_ms);

// The run's last words (step 10): each warning, then the crash line with its journal fields, at
// info level when the record was `written`; otherwise at error level with the whole record, as
// the log is all that is left of the crash.
void log_crash(const common::Record& r, const std::vector<std::string>& warnings,
               const std::string& where, const std::string& store_root, bool written);

} // namespace handler
