// The few fields of a record that list-style readers need (corectl list/groups, the exporter's
// scan), read in one pass over the JSON text without building a DOM: nlohmann's SAX parser walks
// the whole text and only the fields below are kept, the large free-form sections (crash frames,
// mappings) are validated and dropped.
//
// Acceptance is the full reader's (parse_record_json() in common/store/record.hpp) by
// construction: the same size and depth bounds (common/base/json_bounds.hpp), then the same
// nlohmann parser, only with a handler that keeps a few fields instead of building a DOM. So a
// record a summary reader counts is one every full reader can open. Each field keeps its JSON
// type, so every caller applies its own rules (and keeps the ones it had) on top.
#pragma once

#include "common/base/error.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace common {

// The JSON type of a summary field; `absent` when the key (or its enclosing object) is missing.
// Integers follow nlohmann: `unsigned_integer` for non-negative ones that fit a uint64, `integer`
// for negative ones that fit an int64, `floating` for any other number.
enum class JsonKind : uint8_t {
  absent,
  null,
  boolean,
  integer,
  unsigned_integer,
  floating,
  string,
  object,
  array
};

// One field as found in the record. For objects and arrays only the kind is kept.
struct SummaryValue {
  JsonKind kind = JsonKind::absent;
  bool boolean = false;
  int64_t integer = 0;           // kind integer
  uint64_t unsigned_integer = 0; // kind unsigned_integer
  double floating = 0;           // kind floating
  std::string text;              // kind string, decoded (valid UTF-8)

  bool is_string() const { return kind == JsonKind::string; }
  // The string, or "" for any other kind.
  const std::string& str_or_empty() const;
  bool operator==(const SummaryValue&) const = default;
};

// The fields, by their JSON path. Objects that are absent or not objects leave their fields
// absent; their own kind says which.
struct RecordSummary {
  SummaryValue schema;
  SummaryValue id;
  SummaryValue time;
  SummaryValue hostname;
  SummaryValue executable;
  SummaryValue executable_deleted;
  SummaryValue signal;
  SummaryValue signal_name;
  SummaryValue pid;
  SummaryValue uid;
  SummaryValue comm;
  struct Core {
    SummaryValue self; // the kind of `core`
    SummaryValue present;
    SummaryValue reason;
    SummaryValue size;
    SummaryValue stored_size;
    SummaryValue truncated;
    SummaryValue removed;
    SummaryValue path;
    bool operator==(const Core&) const = default;
  } core;
  struct Crash {
    SummaryValue self;
    SummaryValue signature;
    SummaryValue signature_chain; // schema 2: the frames signature v2 hashed, "a ← b ← c"
    SummaryValue symbol; // the handler writes an object {name, offset}; older tools a string
    SummaryValue symbol_name;
    SummaryValue symbol_offset;
    SummaryValue module;
    SummaryValue module_offset;
    SummaryValue si_code_name;
    SummaryValue fault_address;
    bool operator==(const Crash&) const = default;
  } crash;
  struct Store {
    SummaryValue self;
    SummaryValue host;
    SummaryValue executable;
    bool operator==(const Store&) const = default;
  } store;
  bool operator==(const RecordSummary&) const = default;
};

// Reads the summary of a record's JSON text (which must be one object): the summary, or why the
// text is not a record (too large, nested too deep, not valid JSON, not an object).
Expected<RecordSummary> read_record_summary(std::string_view text);

} // namespace common
