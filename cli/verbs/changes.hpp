// What changed since the previous and the first crash of a record's group (same signature):
// package versions and build-ids, and what dpkg and apt did to the changed packages before it.
#pragma once

#include "cli/catalog/catalog.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>

namespace cli {

// Where group_changes() reads the other crashes of a group from: a store or a bucket.
struct GroupSource {
  std::function<common::Expected<FullRecord>(const Located&)> read_record;
  // When a crash's record was written (ns), to order crashes of one second; nullptr where
  // nothing says (a bucket): crashes of the record's own second are then left out.
  std::function<int64_t(const Located&)> written;
  // The package logs of this machine speak of the record's host (not for a bucket's crashes).
  bool host_logs = true;
};
GroupSource store_source(const common::Store& store);

// The record's signature, "" when it has none (and so no group).
std::string signature_of(const FullRecord& full);

// The record's `changes` for info: {"previous": {"id", "changes": [...]}, "first": {...},
// "package_log": [lines]}; nullopt when the record has no signature or is the group's first.
// `group` holds the crashes of the record's signature (loaded once per group by the caller),
// `where` the record's place.
std::optional<nlohmann::json> group_changes(const GroupSource& source, const Catalog& group,
                                            const Located& where, const FullRecord& full);

} // namespace cli
