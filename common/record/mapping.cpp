#include "common/record/mapping.hpp"

#include <algorithm>

namespace common::record {

using nlohmann::json;

namespace {

Finding finding_from_json(const json& j) {
  Finding f;
  FieldReader in(j);
  in.text("kind", f.kind);
  in.text("detail", f.detail);
  f.unknown = std::move(in).finish();
  return f;
}

json to_json(const Finding& f) {
  FieldWriter out(f.unknown);
  out.text("kind", f.kind);
  out.text("detail", f.detail);
  return std::move(out).finish();
}

} // namespace

Mapping mapping_from_json(const json& j) {
  Mapping m;
  FieldReader in(j);
  in.text("path", m.path);
  in.text("start", m.start);
  in.text("build_id", m.build_id);
  in.text("match", m.match);
  in.objects("findings", m.findings, finding_from_json);
  m.unknown = std::move(in).finish();
  return m;
}

json to_json(const Mapping& m) {
  FieldWriter out(m.unknown);
  out.text("path", m.path);
  out.text("start", m.start);
  out.text("build_id", m.build_id);
  out.text("match", m.match);
  json findings = json::array();
  for (const auto& f : m.findings) {
    findings.push_back(to_json(f));
  }
  out.put("findings", std::move(findings));
  return std::move(out).finish();
}

Mappings mappings_from_json(const json& j) {
  Mappings out;
  if (!j.is_array()) {
    return out;
  }
  if (!std::all_of(j.begin(), j.end(), [](const json& e) { return e.is_object(); })) {
    out.unreadable = j;
    return out;
  }
  for (const auto& e : j) {
    out.entries.push_back(mapping_from_json(e));
  }
  return out;
}

json to_json(const Mappings& m) {
  if (m.unreadable) {
    return valid_utf8_json(*m.unreadable);
  }
  json out = json::array();
  for (const auto& e : m.entries) {
    out.push_back(to_json(e));
  }
  return out;
}

} // namespace common::record
