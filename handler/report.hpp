// The crash as the log reports it: the one crash line (of the run's own record and of the one the
// watchdog writes in its place), the core's outcome in it, and the journal fields beside it.
#pragma once

#include "common/base/log.hpp"
#include "common/store/record.hpp"

#include <string>
#include <vector>

namespace handler {

// What became of the core: "<reason> (<size> → <stored size>): <error>".
std::string outcome_text(const common::CoreInfo& core);

// "Process <pid> (<executable>) of host <host> crashed with SIG<name>[ at <site>]: core
// <outcome>; <tail>", the site from the record's crash section when it has one. `tail` says where
// the record went, or why the watchdog wrote it. Valid UTF-8, not yet escaped for the log.
std::string crash_line(const common::Record& r, const std::string& tail);

// The crash line's journal fields: ours (PROCESS_CORE_*) and systemd-coredump's (COREDUMP_*,
// under both MESSAGE_IDs), see docs/record.md. `where` is the crash line's tail.
std::vector<common::LogField> journal_fields(const common::Record& r, const std::string& where,
                                             const std::string& store_root);

// The run's last words (step 10): each warning, then the crash line with its journal fields, at
// info level when the record was `written`; otherwise at error level with the whole record, as
// the log is all that is left of the crash.
void log_crash(const common::Record& r, const std::vector<std::string>& warnings,
               const std::string& where, const std::string& store_root, bool written);

} // namespace handler
