// The Python stacks of a record that has none (captured with python_stacks = no, or by a
// version without the walk), or of a core given with --file: read afterwards from the core's
// segments and the interpreter's file, in the sandboxed child (common/crash/python/stored).
#pragma once

#include "common/crash/python/stored.hpp"
#include "common/store/record.hpp"

#include <nlohmann/json.hpp>

#include <optional>

namespace cli {

// Bound on the pass over the core and the walk, child start to result.
inline constexpr int k_python_core_seconds = 10;

// The `python` section for `r` from its core open as `core_fd` (at offset 0), marked
// `source = core`; nullopt when the record maps no CPython (nothing to read) or already has
// the section. The interpreter's files are opened here with the caller's rights, as the record's
// mappings name them, and checked in the child against the core's build-ids.
std::optional<nlohmann::json> python_from_core(const common::Record& r, int core_fd,
                                               crash::python::CoreEncoding encoding);

} // namespace cli
