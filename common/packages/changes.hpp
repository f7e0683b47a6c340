// What changed between two crashes of one group: the package versions of their files and the
// build-ids of the files they mapped, read from the records (the store is untrusted: anything
// malformed is left out, never an error).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace common {

enum class ChangeKind { package, build_id };

// One difference: `subject` (a package name or a mapped path) went from `from` to `to` (empty
// when it was absent on that side).
struct Change {
  ChangeKind kind = ChangeKind::package;
  std::string subject;
  std::string from;
  std::string to;
};

// The differences from record `before` to record `after` (both whole records as JSON): every
// package of `packages.owners` whose version differs or that is new, then every path of
// `mappings` whose build-id differs. At most `max` changes, packages first.
std::vector<Change> diff_records(const nlohmann::json& before, const nlohmann::json& after,
                                 size_t max = 32);

// "libcrashy1 1.0-1 → 2.0-1, /usr/lib/libcrashy.so.1 build-id 3f1a… → 9c02…" (build-ids cut to
// 12 hex digits; "-" for an absent side).
std::string describe(const std::vector<Change>& changes);

// [{"kind": "package"|"build_id", "subject", "from", "to"}].
nlohmann::json to_json(const std::vector<Change>& changes);

// The lines of a dpkg.log or apt history.log `text` that name one of `packages` (as "name" or
// "name:arch" words), at most `max`, last ones kept: what the package manager did to them.
std::vector<std::string>
package_log_lines(std::string_view text, const std::vector<std::string>& packages, size_t max = 16);

} // namespace common
