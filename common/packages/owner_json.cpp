// The record's `packages` section.
#include "common/packages/owner_json.hpp"

#include "common/base/escape.hpp"

namespace common {

using nlohmann::json;

json to_json(const Ownership& o) {
  json owners = json::array();
  for (const auto& w : o.owners) {
    json e = {{"path", to_valid_utf8(w.path)},
              {"package", to_valid_utf8(w.package)},
              {"version", to_valid_utf8(w.version)},
              {"source", std::string(to_string(w.source))}};
    if (!w.arch.empty()) {
      e["arch"] = to_valid_utf8(w.arch);
    }
    owners.push_back(std::move(e));
  }
  json unowned = json::array();
  for (const auto& p : o.unowned) {
    unowned.push_back(to_valid_utf8(p));
  }
  json j = {{"owners", std::move(owners)},
            {"unowned", std::move(unowned)},
            {"complete", o.complete},
            {"elapsed_ms", o.elapsed_ms}};
  if (!o.dpkg_state.empty()) {
    j["dpkg_state"] = o.dpkg_state;
  }
  if (!o.dpkg_index.empty()) {
    j["dpkg_index"] = to_valid_utf8(o.dpkg_index);
  }
  if (!o.note.empty()) {
    j["note"] = to_valid_utf8(o.note);
  }
  return j;
}

Expected<Ownership> ownership_from_json(const json& j) {
  if (!j.is_object()) {
    return fail("packages section is not an object");
  }
  auto str = [](const json& obj, const char* key) -> std::string {
    auto it = obj.find(key);
    return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  Ownership o;
  if (auto it = j.find("owners"); it != j.end() && it->is_array()) {
    for (const auto& e : *it) {
      if (!e.is_object() || !e.contains("path") || !e["path"].is_string() ||
          !e.contains("package") || !e["package"].is_string()) {
        return fail("packages.owners has an entry without a path and package");
      }
      Owner w;
      w.path = str(e, "path");
      w.package = str(e, "package");
      w.version = str(e, "version");
      w.arch = str(e, "arch");
      const std::string source = str(e, "source");
      w.source = source == "python" ? OwnerSource::python
                 : source == "gem"  ? OwnerSource::gem
                 : source == "npm"  ? OwnerSource::npm
                                    : OwnerSource::dpkg;
      o.owners.push_back(std::move(w));
    }
  }
  if (auto it = j.find("unowned"); it != j.end() && it->is_array()) {
    for (const auto& p : *it) {
      if (p.is_string()) {
        o.unowned.push_back(p.get<std::string>());
      }
    }
  }
  o.dpkg_state = str(j, "dpkg_state");
  o.dpkg_index = str(j, "dpkg_index");
  o.note = str(j, "note");
  if (auto it = j.find("complete"); it != j.end() && it->is_boolean()) {
    o.complete = it->get<bool>();
  }
  if (auto it = j.find("elapsed_ms"); it != j.end() && it->is_number_unsigned()) {
    o.elapsed_ms = it->get<uint64_t>();
  }
  return o;
}

} // namespace common
