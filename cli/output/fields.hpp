// `corectl list -F FIELD`: one field of a record as text, by coredumpctl's journal field names
// (COREDUMP_EXE …, as the handler also logs them, docs/record.md) or by the record's own keys.
#pragma once

#include "cli/catalog/catalog.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace cli {

// True when `field` is a field -F knows: a COREDUMP_* name below, or a record key path
// ("executable", "crash.signature": lower-case words joined by dots, at most 8 deep).
bool is_field_name(std::string_view field);

// COREDUMP_* names: PID, UID, GID, SIGNAL, SIGNAL_NAME (SIGSEGV), EXE, COMM, CMDLINE, HOSTNAME,
// RLIMIT, UNIT, TIMESTAMP (microseconds), FILENAME (the stored core, while it is there).
inline constexpr std::string_view k_coredump_fields =
    "COREDUMP_PID, COREDUMP_UID, COREDUMP_GID, COREDUMP_SIGNAL, COREDUMP_SIGNAL_NAME, "
    "COREDUMP_EXE, COREDUMP_COMM, COREDUMP_CMDLINE, COREDUMP_HOSTNAME, COREDUMP_RLIMIT, "
    "COREDUMP_UNIT, COREDUMP_TIMESTAMP, COREDUMP_FILENAME";

// The value of `field` in `full` as one printable line (strings escaped, numbers in decimal,
// objects and arrays as compact JSON); nullopt when the record does not have it. `core_path` is
// the stored core's absolute path, "" when there is none.
std::optional<std::string> field_value(const FullRecord& full, std::string_view field,
                                       const std::string& core_path);

} // namespace cli
