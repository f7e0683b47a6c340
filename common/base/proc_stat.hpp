// The one reader of /proc/<pid>/stat lines (proc(5)).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

namespace common {

// The fields of one /proc/<pid>/stat line, numbered as in proc(5) from 1: [0] is field 1 (pid),
// [1] field 2 (comm, without its parentheses), [2] field 3 (state) … Empty when the line is not
// "<pid> (<comm>) …". comm is the process's own choice and may hold spaces, '(' and ')': the
// fields after it start after the last ')' of the line. The views point into `stat`.
std::vector<std::string_view> stat_fields(std::string_view stat);

// Field `n` (proc(5) numbering, from 1) of a /proc/<pid>/stat line; nullopt when the line is
// malformed or shorter.
std::optional<std::string_view> stat_field(std::string_view stat, size_t n);

} // namespace common
