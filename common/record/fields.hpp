// The two halves of every section's JSON codec: FieldReader takes the keys a section knows out of
// a stored object and keeps everything else, FieldWriter writes them back with what was kept.
//
// Records come from the store's owner and from older or newer versions of the handler, so
// reading never fails on a section: a key whose value has a type this version does not expect
// is kept verbatim (the typed field stays unknown), a key this version does not know is kept,
// and a known key the object lacked stays absent on the way out. Reading and writing again
// gives the same JSON, which is what lets vacuum and remove rewrite records of any version.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace common::record {

// What one object of a record held beyond what its typed fields say.
struct Unknown {
  // Keys this version does not know, and known keys whose value had an unexpected type: verbatim.
  nlohmann::json fields = nlohmann::json::object();
  // Known keys the stored object did not have (written by an older version): not written back.
  std::vector<std::string> absent;

  bool empty() const { return fields.empty() && absent.empty(); }
  bool operator==(const Unknown&) const = default;
};

// Hex strings ("0x7f3a…"): addresses and offsets, kept as text because JSON numbers lose
// precision past 2^53 and because a stored spelling must survive a rewrite unchanged.
using Hex = std::string;

// A copy of `j` in which every string (and object key) is valid UTF-8.
nlohmann::json valid_utf8_json(const nlohmann::json& j);

// Reads the typed fields of one JSON object. Each call takes one key out of the kept copy when
// its value has the expected type (or is null, for an optional); finish() hands over the rest.
class FieldReader {
public:
  // `object` must be a JSON object; it must outlive the reader.
  explicit FieldReader(const nlohmann::json& object);

  void text(const char* key, std::optional<std::string>& out);
  void integer(const char* key, std::optional<int64_t>& out);
  void count(const char* key, std::optional<uint64_t>& out); // a non-negative integer
  void boolean(const char* key, bool& out);                  // null is an unexpected type
  void texts(const char* key, std::vector<std::string>& out);
  void present_text(const char* key, std::optional<std::string>& out); // a string; null is kept
  void array(const char* key, std::optional<nlohmann::json>& out);     // any array, as stored

  // A nested section, read by `decode(const json& object) -> T`; null leaves `out` empty.
  template <typename T, typename Decode>
  void object(const char* key, std::optional<T>& out, Decode decode) {
    const nlohmann::json* v = find(key);
    if (v == nullptr) {
      return;
    }
    if (v->is_null()) {
      take(key);
    } else if (v->is_object()) {
      out = decode(*v);
      take(key);
    }
  }

  // An array of nested sections, taken only when every element is an object.
  template <typename T, typename Decode>
  void objects(const char* key, std::vector<T>& out, Decode decode) {
    const nlohmann::json* v = find(key);
    if (v == nullptr || !v->is_array()) {
      return;
    }
    for (const auto& e : *v) {
      if (!e.is_object()) {
        return;
      }
    }
    for (const auto& e : *v) {
      out.push_back(decode(e));
    }
    take(key);
  }

  // Whether `key` was present with a value this reader took or left (false when absent).
  bool present(const char* key) const;

  Unknown finish() &&;

private:
  const nlohmann::json* find(const char* key); // null (and noted absent) when missing
  void take(const char* key);

  const nlohmann::json& m_object;
  Unknown m_unknown;
};

// Writes a section's typed fields, skipping the keys its Unknown says were absent, then what
// the reader kept (which wins over a typed field left unknown for its type).
class FieldWriter {
public:
  explicit FieldWriter(const Unknown& unknown) : m_unknown(unknown) {}

  void put(const char* key, nlohmann::json value);
  void text(const char* key, const std::optional<std::string>& value); // null when nullopt
  template <typename T>
  void number(const char* key, const std::optional<T>& value) {
    put(key, value ? nlohmann::json(*value) : nlohmann::json(nullptr));
  }
  void texts(const char* key, const std::vector<std::string>& values);
  void present_text(const char* key, const std::optional<std::string>& value); // omitted if nullopt

  nlohmann::json finish() &&;

private:
  const Unknown& m_unknown;
  nlohmann::json m_out = nlohmann::json::object();
};

} // namespace common::record
