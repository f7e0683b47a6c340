// The exporter's own log lines in the formats Prometheus exporters use (exporter-toolkit's
// --log.format): logfmt and JSON, with a timestamp unless journald already stamps them.
#pragma once

#include <spdlog/common.h>

#include <optional>
#include <string>
#include <string_view>

namespace common {

enum class LogFormat { logfmt, json };

// The format named `name` ("logfmt", "json"); nullopt for anything else.
std::optional<LogFormat> parse_log_format(std::string_view name);

// The level named `name` as exporter-toolkit spells them ("debug", "info", "warn", "error");
// nullopt for anything else.
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// One log line without its newline: `ts=… level=info msg="…"` or {"ts":…,"level":…,"msg":…}.
// `timestamp` is RFC 3339 UTC with milliseconds, or empty for none. Values are quoted and
// escaped as each format requires, so a message never splits into two lines or forges a key.
std::string format_log_line(LogFormat format, spdlog::level::level_enum level,
                            std::string_view timestamp, std::string_view message);

// Whether stderr is connected to journald (JOURNAL_STREAM names stderr's device and inode, as
// systemd sets it): the journal stamps lines itself, so they carry no timestamp of their own.
bool stderr_is_journal();

} // namespace common
