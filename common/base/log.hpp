// Logging: a thin layer over spdlog that picks the sink each binary needs.
#pragma once

#include "common/base/log_format.hpp"

#include <spdlog/common.h>

#include <span>
#include <string>
#include <string_view>

namespace common {

enum class LogTarget {
  syslog, // the handler (stderr closed by the kernel): journal, else syslog, else /dev/kmsg
  stderr, // the exporter (journald captures it) and corectl
};

// Whether a line may wait (briefly) for a logger whose socket queue is full.
enum class LoggerWait {
  bounded, // up to half a second, then the next transport
  never,   // the logger is the crashed process (journald, PID 1): its queue will not drain
};

// Installs the default spdlog logger; `ident` names the program in the journal and syslog.
// LogTarget::stderr writes logfmt lines (see set_log_format), stamped unless journald reads them.
void init_logging(std::string_view ident, LogTarget target);

// The format of LogTarget::stderr's lines from now on (logfmt at the start).
void set_log_format(LogFormat format);

// One journal field: NAME (upper case, digits, underscores) and its value.
struct LogField {
  std::string name;
  std::string value;
};

// Logs `message` with `fields` attached: as journal fields when journald runs (its native
// protocol), else the message alone to syslog (/dev/log), else to /dev/kmsg, so a crash line is
// never lost on a host with neither. No send blocks: a logger whose queue stays full is passed
// over for the next transport (see LoggerWait). Under LogTarget::stderr the fields are dropped.
void log_event(spdlog::level::level_enum level, std::string_view message,
               std::span<const LogField> fields);

// Sets how long log lines may wait for a full logger queue from now on (LoggerWait::bounded at
// the start).
void set_logger_wait(LoggerWait wait);

} // namespace common
