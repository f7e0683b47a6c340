#include "common/record/fields.hpp"

#include "common/base/escape.hpp"

#include <algorithm>
#include <limits>

namespace common::record {

using nlohmann::json;

json valid_utf8_json(const json& j) {
  if (j.is_string()) {
    return to_valid_utf8(j.get_ref<const std::string&>());
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& e : j) {
      out.push_back(valid_utf8_json(e));
    }
    return out;
  }
  if (j.is_object()) {
    json out = json::object();
    for (const auto& [k, v] : j.items()) {
      out[to_valid_utf8(k)] = valid_utf8_json(v);
    }
    return out;
  }
  return j;
}

FieldReader::FieldReader(const json& object) : m_object(object) {
  m_unknown.fields = object;
}

const json* FieldReader::find(const char* key) {
  const auto it = m_object.find(key);
  if (it == m_object.end()) {
    m_unknown.absent.emplace_back(key);
    return nullptr;
  }
  return &*it;
}

void FieldReader::take(const char* key) {
  m_unknown.fields.erase(key);
}

bool FieldReader::present(const char* key) const {
  return m_object.contains(key);
}

void FieldReader::text(const char* key, std::optional<std::string>& out) {
  const json* v = find(key);
  if (v != nullptr && (v->is_null() || v->is_string())) {
    if (v->is_string()) {
      out = v->get<std::string>();
    }
    take(key);
  }
}

void FieldReader::integer(const char* key, std::optional<int64_t>& out) {
  const json* v = find(key);
  if (v == nullptr) {
    return;
  }
  if (v->is_null()) {
    take(key);
  } else if (v->is_number_unsigned()) {
    if (v->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      out = static_cast<int64_t>(v->get<uint64_t>());
      take(key);
    }
  } else if (v->is_number_integer()) {
    out = v->get<int64_t>();
    take(key);
  }
}

void FieldReader::count(const char* key, std::optional<uint64_t>& out) {
  const json* v = find(key);
  if (v == nullptr) {
    return;
  }
  if (v->is_null()) {
    take(key);
  } else if (v->is_number_unsigned()) {
    out = v->get<uint64_t>();
    take(key);
  }
}

void FieldReader::boolean(const char* key, bool& out) {
  const json* v = find(key);
  if (v != nullptr && v->is_boolean()) {
    out = v->get<bool>();
    take(key);
  }
}

void FieldReader::texts(const char* key, std::vector<std::string>& out) {
  const json* v = find(key);
  if (v == nullptr || !v->is_array() ||
      !std::all_of(v->begin(), v->end(), [](const json& e) { return e.is_string(); })) {
    return;
  }
  for (const auto& e : *v) {
    out.push_back(e.get<std::string>());
  }
  take(key);
}

void FieldReader::present_text(const char* key, std::optional<std::string>& out) {
  const json* v = find(key);
  if (v != nullptr && v->is_string()) {
    out = v->get<std::string>();
    take(key);
  }
}

void FieldReader::array(const char* key, std::optional<json>& out) {
  const json* v = find(key);
  if (v != nullptr && v->is_array()) {
    out = *v;
    take(key);
  }
}

Unknown FieldReader::finish() && {
  return std::move(m_unknown);
}

void FieldWriter::put(const char* key, json value) {
  if (std::find(m_unknown.absent.begin(), m_unknown.absent.end(), key) == m_unknown.absent.end()) {
    m_out[key] = std::move(value);
  }
}

void FieldWriter::text(const char* key, const std::optional<std::string>& value) {
  put(key, value ? json(to_valid_utf8(*value)) : json(nullptr));
}

void FieldWriter::texts(const char* key, const std::vector<std::string>& values) {
  json out = json::array();
  for (const auto& v : values) {
    out.push_back(to_valid_utf8(v));
  }
  put(key, std::move(out));
}

void FieldWriter::present_text(const char* key, const std::optional<std::string>& value) {
  if (value) {
    put(key, to_valid_utf8(*value));
  }
}

json FieldWriter::finish() && {
  for (const auto& [k, v] : m_unknown.fields.items()) {
    m_out[to_valid_utf8(k)] = valid_utf8_json(v);
  }
  return std::move(m_out);
}

} // namespace common::record
