// config_keys: prints the configuration table (common/config) as JSON, one object per key in the
// table's order: name, kind, bounds, rule, default, doc. The packaging test checks the documented
// sample and process-core(8) against it.
#include "common/config/config.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <utility>

namespace {

const char* kind_name(common::ConfigKind kind) {
  switch (kind) {
  case common::ConfigKind::text:
    return "text";
  case common::ConfigKind::number:
    return "number";
  case common::ConfigKind::size:
    return "size";
  case common::ConfigKind::duration:
    return "duration";
  case common::ConfigKind::disk_amount:
    return "disk_amount";
  }
  return "?";
}

const char* rule_name(common::ConfigRule rule) {
  switch (rule) {
  case common::ConfigRule::none:
    return "none";
  case common::ConfigRule::absolute_path:
    return "absolute_path";
  case common::ConfigRule::absolute_path_or_empty:
    return "absolute_path_or_empty";
  case common::ConfigRule::not_root:
    return "not_root";
  case common::ConfigRule::address:
    return "address";
  }
  return "?";
}

} // namespace

int main() {
  nlohmann::json out = nlohmann::json::array();
  for (const common::ConfigKey& key : common::config_keys()) {
    nlohmann::json row = {{"name", key.name},
                          {"kind", kind_name(key.kind)},
                          {"rule", rule_name(key.rule)},
                          {"default", key.default_value},
                          {"doc", key.doc}};
    if (key.kind == common::ConfigKind::number || key.kind == common::ConfigKind::size ||
        key.kind == common::ConfigKind::duration) {
      row["min"] = key.min;
      row["max"] = key.max;
    }
    out.push_back(std::move(row));
  }
  std::puts(out.dump(2).c_str());
  return 0;
}
