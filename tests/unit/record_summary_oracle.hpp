// The summary the full reader's parse implies, for checking read_record_summary() against it
// (unit test and fuzz target; header-only, so the fuzz build compiles it with its own flags).
#pragma once

#include "common/store/record.hpp"
#include "common/store/record_summary.hpp"

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <optional>
#include <string_view>
#include <utility>

namespace test {

using common::JsonKind;
using common::RecordSummary;
using common::SummaryValue;
using nlohmann::json;

// What the summary should hold for the node at `path` of `j` (absent when any step is missing
// or not an object).
inline SummaryValue expected_at(const json& j, std::initializer_list<const char*> path) {
  const json* node = &j;
  for (const char* key : path) {
    if (!node->is_object()) {
      return {};
    }
    auto it = node->find(key);
    if (it == node->end()) {
      return {};
    }
    node = &*it;
  }
  SummaryValue v;
  switch (node->type()) {
  case json::value_t::null:
    v.kind = JsonKind::null;
    break;
  case json::value_t::boolean:
    v.kind = JsonKind::boolean;
    v.boolean = node->get<bool>();
    break;
  case json::value_t::number_integer:
    v.kind = JsonKind::integer;
    v.integer = node->get<int64_t>();
    break;
  case json::value_t::number_unsigned:
    v.kind = JsonKind::unsigned_integer;
    v.unsigned_integer = node->get<uint64_t>();
    break;
  case json::value_t::number_float:
    v.kind = JsonKind::floating;
    v.floating = node->get<double>();
    break;
  case json::value_t::string:
    v.kind = JsonKind::string;
    v.text = node->get<std::string>();
    break;
  case json::value_t::object:
    v.kind = JsonKind::object;
    break;
  case json::value_t::array:
    v.kind = JsonKind::array;
    break;
  default:
    break;
  }
  return v;
}

// The DOM of record text when the full reader accepts it as an object (parse_record_json(): the
// size and depth bounds, then nlohmann), else nullopt: what read_record_summary() must accept.
inline std::optional<json> full_reader_object(std::string_view text) {
  auto j = common::parse_record_json(text);
  if (!j || !j->is_object()) {
    return std::nullopt;
  }
  return std::move(*j);
}

// The summary nlohmann's parse implies, built path by path.
inline RecordSummary summary_from(const json& j) {
  RecordSummary s;
  s.schema = expected_at(j, {"schema"});
  s.id = expected_at(j, {"id"});
  s.time = expected_at(j, {"time"});
  s.hostname = expected_at(j, {"hostname"});
  s.executable = expected_at(j, {"executable"});
  s.executable_deleted = expected_at(j, {"executable_deleted"});
  s.signal = expected_at(j, {"signal"});
  s.signal_name = expected_at(j, {"signal_name"});
  s.pid = expected_at(j, {"pid"});
  s.uid = expected_at(j, {"uid"});
  s.comm = expected_at(j, {"comm"});
  s.core.self = expected_at(j, {"core"});
  s.core.present = expected_at(j, {"core", "present"});
  s.core.reason = expected_at(j, {"core", "reason"});
  s.core.size = expected_at(j, {"core", "size"});
  s.core.stored_size = expected_at(j, {"core", "stored_size"});
  s.core.truncated = expected_at(j, {"core", "truncated"});
  s.core.removed = expected_at(j, {"core", "removed"});
  s.core.path = expected_at(j, {"core", "path"});
  s.crash.self = expected_at(j, {"crash"});
  s.crash.signature = expected_at(j, {"crash", "signature"});
  s.crash.signature_chain = expected_at(j, {"crash", "signature_chain"});
  s.crash.symbol = expected_at(j, {"crash", "symbol"});
  s.crash.symbol_name = expected_at(j, {"crash", "symbol", "name"});
  s.crash.symbol_offset = expected_at(j, {"crash", "symbol", "offset"});
  s.crash.module = expected_at(j, {"crash", "module"});
  s.crash.module_offset = expected_at(j, {"crash", "module_offset"});
  s.crash.si_code_name = expected_at(j, {"crash", "si_code_name"});
  s.crash.fault_address = expected_at(j, {"crash", "fault_address"});
  s.store.self = expected_at(j, {"store"});
  s.store.host = expected_at(j, {"store", "host"});
  s.store.executable = expected_at(j, {"store", "executable"});
  return s;
}

} // namespace test
