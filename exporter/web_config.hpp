// The --web.config.file of the Prometheus exporter-toolkit: TLS (on GnuTLS) and basic
// authentication.
#pragma once

#include "common/base/error.hpp"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace exporter {

// tls_server_config.client_auth_type, with the exporter-toolkit's (Go's) names.
enum class ClientAuth {
  none,               // NoClientCert (the default)
  request,            // RequestClientCert: asked for, not required, not verified
  require_any,        // RequireAnyClientCert: required, not verified
  verify_if_given,    // VerifyClientCertIfGiven: verified against client_ca_file when sent
  require_and_verify, // RequireAndVerifyClientCert: required and verified
};

// tls_server_config.min_version / max_version: "TLS10" … "TLS13".
enum class TlsVersion { tls10, tls11, tls12, tls13 };

// The subset of the exporter-toolkit format this exporter implements (see docs/exporter.md).
struct WebConfig {
  std::string cert_file;                      // tls_server_config.cert_file (PEM, chain allowed)
  std::string key_file;                       // tls_server_config.key_file (PEM)
  std::string client_ca_file;                 // tls_server_config.client_ca_file (PEM)
  ClientAuth client_auth = ClientAuth::none;  // tls_server_config.client_auth_type
  TlsVersion min_version = TlsVersion::tls12; // the exporter-toolkit default
  TlsVersion max_version = TlsVersion::tls13; // the newest GnuTLS 3.7 speaks
  std::vector<std::string> cipher_suites;     // Go names; empty: GnuTLS's NORMAL set
  std::map<std::string, std::string> users;   // basic_auth_users: name -> bcrypt hash

  bool tls() const { return !cert_file.empty(); }
};

// Parses the YAML text of a web configuration file. Keys the exporter-toolkit knows but this
// exporter does not implement (curve preferences, HTTP/2, headers) are errors, never silently
// ignored: a configuration that asks for them must not run without them.
common::Expected<WebConfig> parse_web_config(std::string_view yaml, const std::string& path);

// Reads and parses `path` (at most 1 MiB).
common::Expected<WebConfig> load_web_config(const std::string& path);

// The GnuTLS priority string for min_version, max_version and cipher_suites, e.g.
// "NORMAL:-VERS-ALL:+VERS-TLS1.2:+VERS-TLS1.3". An error names a suite GnuTLS cannot offer.
common::Expected<std::string> gnutls_priorities(const WebConfig& web);

// True when `password` matches the crypt(3) `hash` (bcrypt `$2y$`/`$2b$`/`$2a$` as
// htpasswd -B writes). Comparison in constant time; any other hash format is refused.
bool password_matches(std::string_view password, const std::string& hash);

} // namespace exporter
