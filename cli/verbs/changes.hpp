// What changed since the previous and the first crash of a record's group (same signature):
// package versions and build-ids, and what dpkg and apt did to the changed packages before it.
#pragma once

#include "cli/catalog/catalog.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace cli {

// The record's `changes` for info: {"previous": {"id", "changes": [...]}, "first": {...},
// "package_log": [lines]}; nullopt when the record has no signature or is the group's first.
// `group` is every crash of the store (loaded once per invocation by the caller), `where` the
// record's place in the store.
std::optional<nlohmann::json> group_changes(const common::Store& store, const Catalog& group,
                                            const Located& where, const FullRecord& full);

} // namespace cli
