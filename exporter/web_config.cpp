#include "exporter/web_config.hpp"

#include "common/base/io.hpp"

#include <crypt.h>
#include <fcntl.h>
#include <yaml.h>

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
  if (v->type != YAML_SCALAR_NODE) {
    return common::fail(where + " is not a string");
  }
  return scalar(v);
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
          return each_pair(doc.get(), v, in + " tls_server_config",
                           [&](const std::string& k, yaml_node_t* tv) -> common::Expected<void> {
                             const std::string where = in + " tls_server_config." + k;
                             if (k != "cert_file" && k != "key_file") {
                               return common::fail(where +
                                                   " is not supported (only cert_file and "
                                                   "key_file; see process-core-exporter(8))");
                             }
                             auto s = string_value(tv, where);
                             if (!s) {
                               return std::unexpected(s.error());
                             }
                             (k == "cert_file" ? config.cert_file : config.key_file) = *s;
                             return {};
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
  return config;
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
