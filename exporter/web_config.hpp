// The --web.config.file of the Prometheus exporter-toolkit: TLS and basic authentication.
#pragma once

#include "common/base/error.hpp"

#include <map>
#include <string>
#include <string_view>

namespace exporter {

// The subset of the exporter-toolkit format this exporter implements (see docs/exporter.md).
struct WebConfig {
  std::string cert_file;                    // tls_server_config.cert_file (PEM, chain allowed)
  std::string key_file;                     // tls_server_config.key_file (PEM)
  std::map<std::string, std::string> users; // basic_auth_users: name -> bcrypt hash

  bool tls() const { return !cert_file.empty(); }
};

// Parses the YAML text of a web configuration file. Keys the exporter-toolkit knows but this
// exporter does not implement (client certificates, TLS versions, headers) are errors, never
// silently ignored: a configuration that asks for them must not run without them.
common::Expected<WebConfig> parse_web_config(std::string_view yaml, const std::string& path);

// Reads and parses `path` (at most 1 MiB).
common::Expected<WebConfig> load_web_config(const std::string& path);

// True when `password` matches the crypt(3) `hash` (bcrypt `$2y$`/`$2b$`/`$2a$` as
// htpasswd -B writes). Comparison in constant time; any other hash format is refused.
bool password_matches(std::string_view password, const std::string& hash);

} // namespace exporter
