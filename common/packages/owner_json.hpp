// The record's `packages` section: the owners of the crash's files as JSON, and back.
#pragma once

#include "common/base/error.hpp"
#include "common/packages/ownership.hpp"

#include <nlohmann/json.hpp>

namespace common {

// {"owners": [{path, package, version, arch?, source}], "unowned": [paths], "dpkg_state",
// "dpkg_index"?, "complete", "note"?, "elapsed_ms"} (docs/record-packages.md); strings made
// valid UTF-8.
nlohmann::json to_json(const Ownership& o);

// The section as a record holds it; the store is untrusted, so an entry without a string
// `path` and `package` is an error, and unknown keys are ignored.
Expected<Ownership> ownership_from_json(const nlohmann::json& j);

} // namespace common
