#include "common/base/log_format.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using common::format_log_line;
using common::LogFormat;

TEST_CASE("logfmt lines quote and escape what needs it", "[log_format]") {
  CHECK(format_log_line(LogFormat::logfmt, spdlog::level::info, "2026-12-02T02:40:00.123Z",
                        "scanned 3 records") ==
        "ts=2026-12-02T02:40:00.123Z level=info msg=\"scanned 3 records\"");
  CHECK(format_log_line(LogFormat::logfmt, spdlog::level::warn, "", "ready") ==
        "level=warn msg=ready");
  // No second line, no forged key, no raw control character.
  CHECK(
      format_log_line(LogFormat::logfmt, spdlog::level::err, "", "a\nlevel=info msg=\"x\"\\\x1b") ==
      "level=error msg=\"a\\nlevel=info msg=\\\"x\\\"\\\\\\u001b\"");
  CHECK(format_log_line(LogFormat::logfmt, spdlog::level::critical, "", "") ==
        "level=error msg=\"\"");
  CHECK(format_log_line(LogFormat::logfmt, spdlog::level::trace, "", "k=v") ==
        "level=debug msg=\"k=v\"");
}

TEST_CASE("JSON lines are one object each, whatever the bytes", "[log_format]") {
  const std::string line = format_log_line(LogFormat::json, spdlog::level::info,
                                           "2026-12-02T02:40:00.123Z", "a\n\"b\" \xff");
  CHECK(line.find('\n') == std::string::npos);
  const auto j = nlohmann::json::parse(line);
  CHECK(j["ts"] == "2026-12-02T02:40:00.123Z");
  CHECK(j["level"] == "info");
  CHECK(j["msg"] == "a\n\"b\" \xef\xbf\xbd");
  CHECK_FALSE(nlohmann::json::parse(format_log_line(LogFormat::json, spdlog::level::warn, "", "x"))
                  .contains("ts"));
}

TEST_CASE("log formats and levels by exporter-toolkit's names", "[log_format]") {
  CHECK(common::parse_log_format("logfmt") == LogFormat::logfmt);
  CHECK(common::parse_log_format("json") == LogFormat::json);
  CHECK_FALSE(common::parse_log_format("JSON"));
  CHECK(common::parse_log_level("debug") == spdlog::level::debug);
  CHECK(common::parse_log_level("warn") == spdlog::level::warn);
  CHECK(common::parse_log_level("error") == spdlog::level::err);
  CHECK_FALSE(common::parse_log_level("warning"));
}
