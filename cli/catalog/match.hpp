// Positional matches, as coredumpctl users type them: `corectl list 3756` (a PID),
// `corectl list segvme` (comm or executable name), `corectl info /usr/bin/ruby` (a path),
// `corectl info 5f3a9c0e` (a record id), `corectl list UID=1000` (a field).
#pragma once

#include "cli/catalog/catalog.hpp"

#include <expected>
#include <string>
#include <vector>

namespace cli {

// What a bare word is taken for. pid_max is at most 2^22 (7 digits) and list shows ids with at
// least 8 characters, so the two never meet; an id prefix shorter than 8 needs ID=.
enum class MatchKind { id, pid, executable, name, field };

// How `word` is read (before any FIELD=VALUE syntax check).
MatchKind classify_match(std::string_view word);

// Adds the matches to `filter`; a usage error for an unknown FIELD or a bad value.
std::expected<void, std::string> add_matches(const std::vector<std::string>& words, Filter& filter);

// True when every word is a record id (so each can be looked up alone, with its own errors).
bool only_ids(const std::vector<std::string>& words);

} // namespace cli
