#include "exporter/web_config.hpp"

#include "common/base/io.hpp"

#include <crypt.h>
#include <fcntl.h>
#include <yaml.h>

#include <algorithm>
#include <memory>

namespace exporter {

namespace {

constexpr size_t k_max_file = 1 << 20;
// bcrypt hashes are 60 characters; crypt_r also caps passwords, this bounds the work before it.
constexpr size_t k_max_password = 1024;

// libyaml's document API: one tree, freed by the deleter.
struct DocumentDeleter {
  void operator()(yaml_document_t* d) const {
    yaml_document_delete(d);
    delete d;
  }
};
using Document = std::unique_ptr<yaml_document_t, DocumentDeleter>;

std::string scalar(yaml_node_t* n) {
  return {reinterpret_cast<const char*>(n->data.scalar.value), n->data.scalar.length};
}

template <typename F>
common::Expected<void> each_pair(yaml_document_t* doc, yaml_node_t* map, const std::string& where,
                                 F&& f) {
  if (map == nullptr || map->type != YAML_MAPPING_NODE) {
    return common::fail(where + " is not a mapping");
  }
  for (auto* p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; ++p) {
    yaml_node_t* key = yaml_document_get_node(doc, p->key);
    yaml_node_t* value = yaml_document_get_node(doc, p->value);
    if (key == nullptr || value == nullptr || key->type != YAML_SCALAR_NODE) {
      return common::fail(where + " has a key that is not a string");
    }
    if (auto r = f(scalar(key), value); !r) {
      return r;
    }
  }
  return {};
}

common::Expected<std::string> string_value(yaml_node_t* v, const std::string& where) {
  if (v == nullptr || v->type != YAML_SCALAR_NODE) {
    return common::fail(where + " is not a string");
  }
  return scalar(v);
}

} // namespace

namespace {

// Go's cipher suite names, as the exporter-toolkit takes them, and the GnuTLS priority items
// that offer each: key exchange, cipher and MAC. GnuTLS priorities are not a list of suites but
// of parts, so the union of the parts listed is offered (a combination of listed parts that Go
// would not offer can be negotiated too). The TLS 1.3 names only select ciphers.
struct Suite {
  std::string_view go;
  std::string_view kx; // empty for TLS 1.3 suites
  std::string_view cipher;
  std::string_view mac;
};
constexpr Suite k_suites[] = {
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA", "AES-128-GCM", "AEAD"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA", "AES-256-GCM", "AEAD"},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA", "AES-128-GCM", "AEAD"},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA", "AES-256-GCM", "AEAD"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA", "CHACHA20-POLY1305", "AEAD"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA", "CHACHA20-POLY1305", "AEAD"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA", "CHACHA20-POLY1305", "AEAD"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA", "CHACHA20-POLY1305", "AEAD"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA", "AES-128-CBC", "SHA1"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA", "AES-256-CBC", "SHA1"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA", "AES-128-CBC", "SHA1"},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA", "AES-256-CBC", "SHA1"},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", "RSA", "AES-128-GCM", "AEAD"},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", "RSA", "AES-256-GCM", "AEAD"},
    {"TLS_AES_128_GCM_SHA256", "", "AES-128-GCM", "AEAD"},
    {"TLS_AES_256_GCM_SHA384", "", "AES-256-GCM", "AEAD"},
    {"TLS_CHACHA20_POLY1305_SHA256", "", "CHACHA20-POLY1305", "AEAD"},
};

constexpr std::pair<std::string_view, TlsVersion> k_versions[] = {
    {"TLS10", TlsVersion::tls10},
    {"TLS11", TlsVersion::tls11},
    {"TLS12", TlsVersion::tls12},
    {"TLS13", TlsVersion::tls13},
};

constexpr std::pair<std::string_view, ClientAuth> k_client_auth[] = {
    {"NoClientCert", ClientAuth::none},
    {"RequestClientCert", ClientAuth::request},
    {"RequireAnyClientCert", ClientAuth::require_any},
    {"VerifyClientCertIfGiven", ClientAuth::verify_if_given},
    {"RequireAndVerifyClientCert", ClientAuth::require_and_verify},
};

template <typename T, size_t N>
common::Expected<T> lookup(const std::pair<std::string_view, T> (&table)[N],
                           const std::string& value, const std::string& where) {
  for (const auto& [name, v] : table) {
    if (name == value) {
      return v;
    }
  }
  std::string names;
  for (const auto& [name, v] : table) {
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  return common::fail(where + ": " + common::quoted(value) + " is not one of " + names);
}

common::Expected<void> tls_key(WebConfig& config, yaml_document_t* doc, const std::string& k,
                               yaml_node_t* v, const std::string& where) {
  if (k == "cipher_suites") {
    if (v->type != YAML_SEQUENCE_NODE) {
      return common::fail(where + " is not a list");
    }
    for (auto* item = v->data.sequence.items.start; item < v->data.sequence.items.top; ++item) {
      auto s = string_value(yaml_document_get_node(doc, *item), where);
      if (!s) {
        return std::unexpected(s.error());
      }
      const bool known = std::any_of(std::begin(k_suites), std::end(k_suites),
                                     [&](const Suite& suite) { return suite.go == *s; });
      if (!known) {
        return common::fail(where + ": " + common::quoted(*s) +
                            " is not a cipher suite GnuTLS offers");
      }
      config.cipher_suites.push_back(*s);
    }
    return {};
  }
  auto s = string_value(v, where);
  if (!s) {
    return std::unexpected(s.error());
  }
  if (k == "cert_file") {
    config.cert_file = *s;
  } else if (k == "key_file") {
    config.key_file = *s;
  } else if (k == "client_ca_file") {
    config.client_ca_file = *s;
  } else if (k == "client_auth_type") {
    auto a = lookup(k_client_auth, *s, where);
    if (!a) {
      return std::unexpected(a.error());
    }
    config.client_auth = *a;
  } else if (k == "min_version" || k == "max_version") {
    auto t = lookup(k_versions, *s, where);
    if (!t) {
      return std::unexpected(t.error());
    }
    (k == "min_version" ? config.min_version : config.max_version) = *t;
  } else {
    return common::fail(where + " is not supported (only cert_file, key_file, client_ca_file, "
                                "client_auth_type, min_version, max_version and cipher_suites; see "
                                "process-core-exporter(8))");
  }
  return {};
}

} // namespace

common::Expected<WebConfig> parse_web_config(std::string_view yaml, const std::string& path) {
  const std::string in = common::quoted(path);
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    return common::fail("Failed to read " + in + ": out of memory");
  }
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(yaml.data()),
                               yaml.size());
  Document doc(new yaml_document_t{});
  const bool loaded = yaml_parser_load(&parser, doc.get()) != 0;
  const std::string problem = parser.problem != nullptr ? parser.problem : "invalid YAML";
  const size_t line = parser.problem_mark.line + 1;
  yaml_parser_delete(&parser);
  if (!loaded) {
    delete doc.release(); // libyaml leaves a document it failed to load uninitialised
    return common::fail("Failed to parse " + in + " line " + std::to_string(line) + ": " + problem);
  }
  WebConfig config;
  yaml_node_t* root = yaml_document_get_root_node(doc.get());
  if (root == nullptr) {
    return config; // an empty file: plain HTTP, no authentication
  }
  auto r = each_pair(
      doc.get(), root, in, [&](const std::string& key, yaml_node_t* v) -> common::Expected<void> {
        if (key == "tls_server_config") {
          return each_pair(
              doc.get(), v, in + " tls_server_config", [&](const std::string& k, yaml_node_t* tv) {
                return tls_key(config, doc.get(), k, tv, in + " tls_server_config." + k);
              });
        }
        if (key == "basic_auth_users") {
          return each_pair(doc.get(), v, in + " basic_auth_users",
                           [&](const std::string& user, yaml_node_t* hv) -> common::Expected<void> {
                             auto s = string_value(hv, in + " basic_auth_users." + user);
                             if (!s) {
                               return std::unexpected(s.error());
                             }
                             if (!s->starts_with("$2a$") && !s->starts_with("$2b$") &&
                                 !s->starts_with("$2y$")) {
                               return common::fail(in + " basic_auth_users." + user +
                                                   " is not a bcrypt hash (htpasswd -nBC 10 \"\")");
                             }
                             config.users[user] = *s;
                             return {};
                           });
        }
        return common::fail(in + " " + key + " is not supported (only tls_server_config and " +
                            "basic_auth_users; see process-core-exporter(8))");
      });
  if (!r) {
    return std::unexpected(r.error());
  }
  if (config.cert_file.empty() != config.key_file.empty()) {
    return common::fail(in + " tls_server_config needs both cert_file and key_file");
  }
  if (!config.tls() && (config.client_auth != ClientAuth::none || !config.client_ca_file.empty() ||
                        !config.cipher_suites.empty())) {
    return common::fail(in + " tls_server_config needs cert_file and key_file");
  }
  // GnuTLS asks for a client certificate only with a CA list to send: every type but
  // NoClientCert needs client_ca_file here (Go needs it only for the verifying types).
  if (config.client_auth != ClientAuth::none && config.client_ca_file.empty()) {
    return common::fail(in + " tls_server_config.client_auth_type needs client_ca_file");
  }
  if (config.client_auth == ClientAuth::none && !config.client_ca_file.empty()) {
    return common::fail(in + " tls_server_config.client_ca_file needs a client_auth_type that " +
                        "asks for certificates (RequireAndVerifyClientCert)");
  }
  if (config.min_version > config.max_version) {
    return common::fail(in + " tls_server_config.min_version is above max_version");
  }
  return config;
}

common::Expected<std::string> gnutls_priorities(const WebConfig& web) {
  std::string p = "NORMAL:-VERS-ALL";
  for (const auto& [name, v] : k_versions) {
    if (v >= web.min_version && v <= web.max_version) {
      p += name == "TLS10"   ? ":+VERS-TLS1.0"
           : name == "TLS11" ? ":+VERS-TLS1.1"
           : name == "TLS12" ? ":+VERS-TLS1.2"
                             : ":+VERS-TLS1.3";
    }
  }
  if (!web.cipher_suites.empty()) {
    p += ":-CIPHER-ALL:-MAC-ALL:-KX-ALL";
    std::vector<std::string_view> added;
    for (const auto& name : web.cipher_suites) {
      const auto* suite = std::find_if(std::begin(k_suites), std::end(k_suites),
                                       [&](const Suite& s) { return s.go == name; });
      if (suite == std::end(k_suites)) {
        return common::fail(common::quoted(name) + " is not a cipher suite GnuTLS offers");
      }
      for (std::string_view part : {suite->kx, suite->cipher, suite->mac}) {
        if (!part.empty() && std::find(added.begin(), added.end(), part) == added.end()) {
          added.push_back(part);
          p += ":+" + std::string(part);
        }
      }
    }
  }
  return p;
}

common::Expected<WebConfig> load_web_config(const std::string& path) {
  auto text = common::read_file(AT_FDCWD, path, k_max_file);
  if (!text) {
    return std::unexpected(text.error());
  }
  return parse_web_config(*text, path);
}

bool password_matches(std::string_view password, const std::string& hash) {
  if (password.size() > k_max_password || password.find('\0') != std::string_view::npos ||
      !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))) {
    return false;
  }
  auto data = std::make_unique<crypt_data>();
  const std::string pw(password);
  const char* out = crypt_r(pw.c_str(), hash.c_str(), data.get());
  if (out == nullptr || out[0] == '*') {
    return false;
  }
  const std::string_view got(out);
  if (got.size() != hash.size()) {
    return false;
  }
  unsigned char diff = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff |= static_cast<unsigned char>(got[i] ^ hash[i]);
  }
  return diff == 0;
}

} // namespace exporter
