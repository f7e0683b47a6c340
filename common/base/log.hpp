// Logging: a thin layer over spdlog that picks the sink each binary needs.
#pragma once

#include <spdlog/common.h>

#include <span>
#include <string>
#include <string_view>

namespace common {

enum class LogTarget {
  syslog, // the handler (stderr closed by the kernel): journal, else syslog, else /dev/kmsg
  stderr, // the exporter (journald captures it) and corectl
};

// Where the system logger delivered the last message (LogTarget::syslog only).
enum class LogTransport { journal, syslog, kmsg, none };

// Installs the default spdlog logger; `ident` names the program in the journal and syslog.
void init_logging(std::string_view ident, LogTarget target);

// One journal field: NAME (upper case, digits, underscores) and its value.
struct LogField {
  std::string name;
  std::string value;
};

// Logs `message` with `fields` attached: as journal fields when journald runs (libsystemd's
// sd_journal_send), else the message alone to syslog (/dev/log), else to /dev/kmsg, so a crash
// line is never lost on a host with neither. Under LogTarget::stderr the fields are dropped.
void log_event(spdlog::level::level_enum level, std::string_view message,
               std::span<const LogField> fields);

} // namespace common
