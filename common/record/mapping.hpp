// The record's `mappings` section, typed: one entry per distinct file the crashed process had
// mapped (docs/record-crash.md), with its build-id and what check_mapped_files() found.
#pragma once

#include "common/record/fields.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace common::record {

// {"kind", "detail"}: deleted, missing, replaced, modified_after_start.
struct Finding {
  std::optional<std::string> kind;
  std::optional<std::string> detail;
  Unknown unknown;
  bool operator==(const Finding&) const = default;
};

struct Mapping {
  std::optional<std::string> path;
  std::optional<Hex> start;            // the loaded image's first address
  std::optional<std::string> build_id; // from the core
  std::optional<std::string> match;    // build-id, go-build-id, elf-headers; null: not matched
  std::vector<Finding> findings;
  Unknown unknown;
  bool operator==(const Mapping&) const = default;
};

// The section: the typed entries, or, when a stored array holds something other than objects,
// that array as it was (kept so a rewrite does not lose it; readers then see no entries).
struct Mappings {
  std::vector<Mapping> entries;
  std::optional<nlohmann::json> unreadable;
  bool empty() const { return entries.empty() && !unreadable; }
  bool operator==(const Mappings&) const = default;
};

nlohmann::json to_json(const Mapping& mapping);
Mapping mapping_from_json(const nlohmann::json& object);

// The array (an empty one for no entries); any JSON value reads, a non-array as no entries.
nlohmann::json to_json(const Mappings& mappings);
Mappings mappings_from_json(const nlohmann::json& array);

} // namespace common::record
