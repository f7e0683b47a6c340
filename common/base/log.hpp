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
// protocol), else the message alone to syslog (/dev/log), else to /dev/kmsg, where it can be
// read with dmesg even on a host with neither. No send blocks: a logger whose queue stays full
// is passed over for the next transport (see LoggerWait), and a line no transport takes is
// dropped: the log is best effort, the record store is the durable account of every crash.
// The kernel keeps a record of at most about 1000 bytes: a longer message goes to /dev/kmsg as
// `short_message` when that fits, else cut at a character boundary and marked as cut, so that
// each kmsg record is one complete line. Under LogTarget::stderr the fields are dropped.
void log_event(spdlog::level::level_enum level, std::string_view message,
               std::span<const LogField> fields, std::string_view short_message = {});

// The longest line process-core writes to /dev/kmsg, its "<pri>ident[pid]: " prefix included.
inline constexpr size_t k_kmsg_max = 976;
// What goes to /dev/kmsg for `message` in at most `room` bytes (see log_event): the message,
// else the short form, else the one given cut at a UTF-8 character boundary with a marker.
std::string kmsg_text(std::string_view message, std::string_view short_message, size_t room);

// Sets how long log lines may wait for a full logger queue from now on (LoggerWait::bounded at
// the start).
void set_logger_wait(LoggerWait wait);

} // namespace common
