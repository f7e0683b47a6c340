#include "cli/output/fields.hpp"

#include "common/base/escape.hpp"

namespace cli {

namespace {

using nlohmann::json;

constexpr size_t k_max_depth = 8;
constexpr size_t k_max_field = 128;

std::optional<std::string> number(const auto& value) {
  return value ? std::optional(std::to_string(*value)) : std::nullopt;
}

std::optional<std::string> text(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional(common::printable(s));
}

// A record key path: "crash.signature" → crash["signature"].
std::optional<std::string> by_path(const json& record, std::string_view path) {
  const json* at = &record;
  while (!path.empty()) {
    const size_t dot = path.find('.');
    const std::string key(path.substr(0, dot));
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    if (!at->is_object()) {
      return std::nullopt;
    }
    const auto it = at->find(key);
    if (it == at->end()) {
      return std::nullopt;
    }
    at = &*it;
  }
  if (at->is_null()) {
    return std::nullopt;
  }
  if (at->is_string()) {
    return common::printable(at->get_ref<const std::string&>());
  }
  return common::printable(at->dump(-1, ' ', false, json::error_handler_t::replace));
}

} // namespace

bool is_field_name(std::string_view field) {
  if (field.empty() || field.size() > k_max_field) {
    return false;
  }
  if (field.starts_with("COREDUMP_")) {
    for (size_t start = 0; start < k_coredump_fields.size();) {
      size_t end = k_coredump_fields.find(", ", start);
      if (end == std::string_view::npos) {
        end = k_coredump_fields.size();
      }
      if (k_coredump_fields.substr(start, end - start) == field) {
        return true;
      }
      start = end + 2;
    }
    return false;
  }
  size_t depth = 1;
  char previous = '.';
  for (char ch : field) {
    if (ch == '.') {
      if (previous == '.' || ++depth > k_max_depth) {
        return false;
      }
    } else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
      return false;
    }
    previous = ch;
  }
  return previous != '.';
}

std::optional<std::string> field_value(const FullRecord& full, std::string_view field,
                                       const std::string& core_path) {
  const common::Record& r = full.record;
  if (!field.starts_with("COREDUMP_")) {
    return by_path(full.json, field);
  }
  // systemd-coredump's names and formats, as the handler logs them (docs/record.md).
  const std::string_view name = field.substr(9);
  if (name == "PID") {
    return number(r.pid);
  }
  if (name == "UID") {
    return number(r.uid);
  }
  if (name == "GID") {
    return number(r.gid);
  }
  if (name == "SIGNAL") {
    return std::to_string(r.signal);
  }
  if (name == "SIGNAL_NAME") {
    return r.signal_name.empty() ? std::nullopt : text("SIG" + r.signal_name);
  }
  if (name == "EXE") {
    return text(r.executable);
  }
  if (name == "COMM") {
    return text(r.comm);
  }
  if (name == "CMDLINE") {
    return text(r.cmdline);
  }
  if (name == "HOSTNAME") {
    return text(r.hostname);
  }
  if (name == "RLIMIT") {
    return number(r.rlimit_core);
  }
  if (name == "UNIT") {
    return by_path(full.json, "container.unit");
  }
  if (name == "TIMESTAMP") {
    const auto t = common::parse_time(r.time);
    return t ? std::optional(std::to_string(*t * 1000000)) : std::nullopt;
  }
  if (name == "FILENAME") {
    return text(core_path);
  }
  return std::nullopt;
}

} // namespace cli
