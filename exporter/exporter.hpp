// process-core-exporter: serves the store as Prometheus metrics (see docs/exporter.md).
#pragma once

#include "common/base/error.hpp"
#include "common/base/log_format.hpp"

#include <optional>
#include <string>
#include <vector>

namespace exporter {

// The command line; unset values come from the configuration file.
struct Options {
  std::string config_path;                 // --config (default: the shared configuration file)
  bool config_given = false;               // a missing --config file is an error, a default one not
  std::optional<std::string> store;        // --store DIR
  std::vector<std::string> listen;         // --web.listen-address ADDR:PORT, repeatable (--listen)
  bool listen_deprecated = false;          // the old --listen spelling was used
  std::string telemetry_path = "/metrics"; // --web.telemetry-path
  std::optional<std::string> web_config;   // --web.config.file FILE (TLS, basic auth)
  common::LogFormat log_format = common::LogFormat::logfmt;  // --log.format=logfmt|json
  spdlog::level::level_enum log_level = spdlog::level::info; // --log.level=debug|info|warn|error
  bool no_index = false;                                     // --no-store.index
  bool help = false;                                         // --help
  bool version = false;                                      // --version
};

// Parses the arguments after argv[0]; the error names the offending argument.
common::Expected<Options> parse_options(const std::vector<std::string>& args);

// What --help prints.
std::string usage_text();

// Runs the exporter until SIGTERM or SIGINT; returns the process exit status.
int run(const std::vector<std::string>& args);

} // namespace exporter
