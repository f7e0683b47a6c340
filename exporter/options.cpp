// The exporter's command line, on CLI11 like corectl's, with node_exporter's flag names.
#include "common/base/escape.hpp"
#include "exporter/exporter.hpp"
#include "exporter/http_server.hpp"

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace exporter {

namespace {

constexpr const char* k_description =
    "Serves crash counts from the process-core store as Prometheus metrics.";

constexpr const char* k_footer =
    "Exit status: 0 stopped by SIGTERM or SIGINT, 1 failure, 2 usage error. "
    "See process-core-exporter(8).";

// What CLI11 binds before Options is filled: the values it checks itself and those it cannot
// (a listen address, a log level) are checked afterwards, with our own messages.
struct Raw {
  std::vector<std::string> listen, listen_old;
  std::string log_level = "info", log_format = "logfmt";
};

// Every option takes exactly one value per occurrence: "--web.listen-address A B" is an
// address and an unknown argument, never two addresses.
void describe(CLI::App& app, Options& o, Raw& raw) {
  app.description(k_description);
  app.name("process-core-exporter");
  app.footer(k_footer);
  app.allow_extras(); // reported by parse_options, the first one by name
  app.get_formatter()->column_width(32);
  app.set_help_flag("-h,--help", "print this help and exit");
  app.add_flag("--version", o.version, "print the version and exit");
  app.add_option("--config", o.config_path,
                 "configuration (default /etc/process-core/process-core.conf)")
      ->type_name("FILE");
  app.add_option("--store", o.store, "store root (overrides the configuration's `store`)")
      ->type_name("DIR");
  app.add_option("--web.listen-address", raw.listen,
                 "serve here, repeatable ([::1]:19464, :19464 for all addresses);\n"
                 "overrides `listen` (default 127.0.0.1:19464)")
      ->type_name("ADDR:PORT")
      ->allow_extra_args(false);
  app.add_option("--listen", raw.listen_old, "the old name of --web.listen-address")
      ->type_name("ADDR:PORT")
      ->allow_extra_args(false);
  app.add_option("--web.telemetry-path", o.telemetry_path, "path of the metrics (default /metrics)")
      ->type_name("PATH");
  app.add_option("--web.config.file", o.web_config,
                 "TLS and basic authentication, exporter-toolkit format")
      ->type_name("FILE");
  app.add_flag("--no-store.index", o.no_index,
               "count from the record files alone: neither read nor write the store's index");
  app.add_option("--log.level", raw.log_level, "debug, info (default), warn or error")
      ->type_name("LEVEL");
  app.add_option("--log.format", raw.log_format,
                 "logfmt (default) or json; timestamped unless under journald")
      ->type_name("FORMAT");
}

} // namespace

std::string usage_text() {
  Options o;
  Raw raw;
  CLI::App app;
  describe(app, o, raw);
  return app.help();
}

common::Expected<Options> parse_options(const std::vector<std::string>& args) {
  Options o;
  Raw raw;
  CLI::App app;
  describe(app, o, raw);
  // CLI11 takes the arguments last to first.
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    o.help = true;
    return o;
  } catch (const CLI::ParseError& e) {
    return common::fail(common::printable(e.what()));
  }
  if (const auto extra = app.remaining(); !extra.empty()) {
    return common::fail("unknown argument '" + common::printable(extra.front()) + "'");
  }
  o.config_given = app.count("--config") > 0;
  o.listen_deprecated = !raw.listen_old.empty();
  // The addresses of each spelling in their order, the current spelling's first.
  for (const auto* list : {&raw.listen, &raw.listen_old}) {
    for (const auto& a : *list) {
      if (auto parsed = parse_listen_address(a); !parsed) {
        return std::unexpected(parsed.error());
      }
      o.listen.push_back(a);
    }
  }
  // "/" is the landing page and /-/ the probes: the metrics cannot live there.
  const std::string& path = o.telemetry_path;
  if (!path.starts_with('/') || path == "/" || path.starts_with("/-/")) {
    return common::fail("--web.telemetry-path needs a path like /metrics, got '" +
                        common::printable(path) + "'");
  }
  const auto level = common::parse_log_level(raw.log_level);
  if (!level) {
    return common::fail("--log.level takes debug, info, warn or error, not '" +
                        common::printable(raw.log_level) + "'");
  }
  o.log_level = *level;
  const auto format = common::parse_log_format(raw.log_format);
  if (!format) {
    return common::fail("--log.format takes logfmt or json, not '" +
                        common::printable(raw.log_format) + "'");
  }
  o.log_format = *format;
  return o;
}

} // namespace exporter
