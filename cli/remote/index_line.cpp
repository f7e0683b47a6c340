// The index line reader (index_line.hpp).
#include "cli/remote/index_line.hpp"

#include "common/base/json_bounds.hpp"
#include "common/base/parse.hpp"
#include "common/base/signals.hpp"
#include "common/store/names.hpp"
#include "common/store/record.hpp"
#include "common/store/store.hpp"

#include <nlohmann/json.hpp>

#include <optional>

namespace cli {

namespace {

using nlohmann::json;

std::string join_key(const std::string& prefix, const std::string& rest) {
  return prefix.empty() ? rest : prefix + "/" + rest;
}

// A string member of an index line; nullopt when absent or of another type.
std::optional<std::string> text_of(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || !it->is_string()) {
    return std::nullopt;
  }
  return it->get<std::string>();
}

} // namespace

std::expected<IndexLine, std::string> read_index_line(std::string_view text,
                                                      const std::string& node_of_object,
                                                      const std::string& prefix) {
  if (text.size() > k_max_index_line) {
    return std::unexpected("a line longer than " + std::to_string(k_max_index_line) + " bytes");
  }
  // An index line is flat: deep nesting is hostile (a DOM's recursive walks overflow the stack).
  if (auto bad = common::json_bounds_error(text, k_max_index_line, 4); !bad.empty()) {
    return std::unexpected(bad);
  }
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return std::unexpected("not a JSON object");
  }
  IndexLine l;
  Crash& c = l.crash;
  auto id = text_of(j, "id");
  auto node = text_of(j, "node");
  auto host = text_of(j, "host");
  auto exe = text_of(j, "exe");
  if (!id || !common::is_record_id(*id)) {
    return std::unexpected("no record id");
  }
  if (!node || *node != node_of_object) {
    return std::unexpected("the crash " + *id + " names another node than its index's");
  }
  if (!host || !exe || !common::is_safe_component(*host) || !common::is_safe_component(*exe)) {
    return std::unexpected("the crash " + *id + " has no safe host and executable names");
  }
  const std::string base = join_key(prefix, *node + "/" + *host + "/" + *exe + "/" + *id);
  if (text_of(j, "record") != base + std::string(common::k_record_suffix)) {
    return std::unexpected("the crash " + *id + " names a record key that is not its own");
  }
  auto core = text_of(j, "core");
  if (!core || (!core->empty() && *core != base + std::string(common::k_core_suffix))) {
    return std::unexpected("the crash " + *id + " names a core key that is not its own");
  }
  l.core = !core->empty();
  c.id = *id;
  c.host_dir = *host;
  c.exe_dir = *exe;
  auto time = text_of(j, "time");
  auto hostname = text_of(j, "hostname");
  auto executable = text_of(j, "executable");
  auto signal = text_of(j, "signal");
  auto signature = text_of(j, "signature");
  const auto size = j.find("core_size");
  if (!time || !hostname || !executable || !signal || !signature || size == j.end() ||
      !size->is_number_unsigned()) {
    return std::unexpected("the crash " + *id + " lacks a field of the index's format");
  }
  c.time = common::parse_time(*time).value_or(0);
  c.hostname = std::move(*hostname);
  c.executable = std::move(*executable);
  c.signal_name = std::move(*signal);
  c.signal = common::parse_signal(c.signal_name).value_or(0);
  c.signature = std::move(*signature);
  c.core_size = size->get<uint64_t>();
  c.core_file = l.core;
  if (!j.contains("core_reason")) {
    return l;
  }
  // The summary's fields, all of them with their types, or the line is malformed.
  auto comm = text_of(j, "comm");
  auto reason = text_of(j, "core_reason");
  auto site = text_of(j, "site");
  auto flag = [&](const char* name) -> std::optional<bool> {
    const auto it = j.find(name);
    return it != j.end() && it->is_boolean() ? std::optional(it->get<bool>()) : std::nullopt;
  };
  auto number = [&](const char* name, std::optional<int64_t>& out) {
    const auto it = j.find(name);
    if (it == j.end() || it->is_null()) {
      return true;
    }
    if (!it->is_number_integer()) {
      return false;
    }
    out = it->get<int64_t>();
    return true;
  };
  const auto signo = j.find("signo");
  const auto dump_size = j.find("core_dump_size");
  const auto deleted = flag("executable_deleted");
  const auto present = flag("core_present");
  const auto removed = flag("core_removed");
  if (!comm || !reason || !site || !deleted || !present || !removed || signo == j.end() ||
      !signo->is_number_integer() || signo->get<int64_t>() < 0 || signo->get<int64_t>() > 1024 ||
      dump_size == j.end() || !dump_size->is_number_unsigned() || !number("pid", c.pid) ||
      !number("uid", c.uid)) {
    return std::unexpected("the crash " + *id + " has a malformed summary");
  }
  c.signal = static_cast<int>(signo->get<int64_t>());
  c.core_size = dump_size->get<uint64_t>();
  c.comm = std::move(*comm);
  c.core_reason = common::parse_core_reason(*reason).value_or(common::CoreReason::error);
  c.site = std::move(*site);
  c.executable_deleted = *deleted;
  c.core_present = *present;
  c.core_removed = *removed;
  l.summary = true;
  return l;
}

} // namespace cli
