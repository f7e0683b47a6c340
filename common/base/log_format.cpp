#include "common/base/log_format.hpp"

#include "common/base/parse.hpp"

#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace common {

namespace {

// exporter-toolkit's level names; spdlog's critical is logged as error, trace as debug.
std::string_view level_name(spdlog::level::level_enum level) {
  switch (level) {
  case spdlog::level::trace:
  case spdlog::level::debug:
    return "debug";
  case spdlog::level::info:
    return "info";
  case spdlog::level::warn:
    return "warn";
  default:
    return "error";
  }
}

// A logfmt value: bare when it has no blank, quote, equals sign or control character, else in
// double quotes with \, " and controls escaped (go-logfmt's rules, which log readers expect).
std::string logfmt_value(std::string_view v) {
  const bool bare = !v.empty() && v.find_first_of(" =\"\\") == std::string_view::npos &&
                    std::all_of(v.begin(), v.end(), [](char c) {
                      return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
                    });
  if (bare) {
    return std::string(v);
  }
  std::string out = "\"";
  for (char c : v) {
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        static constexpr char k_hex[] = "0123456789abcdef";
        out += "\\u00";
        out += k_hex[(static_cast<unsigned char>(c) >> 4) & 0xf];
        out += k_hex[static_cast<unsigned char>(c) & 0xf];
      } else {
        out += c;
      }
    }
  }
  return out + "\"";
}

} // namespace

std::optional<LogFormat> parse_log_format(std::string_view name) {
  if (name == "logfmt") {
    return LogFormat::logfmt;
  }
  if (name == "json") {
    return LogFormat::json;
  }
  return std::nullopt;
}

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  if (name == "debug") {
    return spdlog::level::debug;
  }
  if (name == "info") {
    return spdlog::level::info;
  }
  if (name == "warn") {
    return spdlog::level::warn;
  }
  if (name == "error") {
    return spdlog::level::err;
  }
  return std::nullopt;
}

std::string format_log_line(LogFormat format, spdlog::level::level_enum level,
                            std::string_view timestamp, std::string_view message) {
  if (format == LogFormat::json) {
    nlohmann::ordered_json line;
    if (!timestamp.empty()) {
      line["ts"] = timestamp;
    }
    line["level"] = level_name(level);
    line["msg"] = message;
    // Invalid UTF-8 becomes U+FFFD rather than an exception: a log line is never lost.
    return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string out;
  if (!timestamp.empty()) {
    out = "ts=" + logfmt_value(timestamp) + " ";
  }
  out += "level=";
  out += level_name(level);
  out += " msg=" + logfmt_value(message);
  return out;
}

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) {
    return false;
  }
  const std::string_view text(stream);
  const size_t colon = text.find(':');
  struct stat st {};
  if (colon == std::string_view::npos || ::fstat(STDERR_FILENO, &st) != 0) {
    return false;
  }
  const auto dev = parse_number<uint64_t>(text.substr(0, colon));
  const auto ino = parse_number<uint64_t>(text.substr(colon + 1));
  return dev && ino && *dev == static_cast<uint64_t>(st.st_dev) &&
         *ino == static_cast<uint64_t>(st.st_ino);
}

} // namespace common
