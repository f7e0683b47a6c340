// Limits checked on JSON text before a DOM is built from it. The store's owner writes records
// and the ledger that root's corectl and the exporter read; 10^6 nested '[' in one of them made
// every recursive walk of the DOM (copy, compare, dump) overflow the stack. The check is one pass
// with no recursion and no allocation, so it is cheap next to the parse it guards.
//
// Built without <expected> (the libFuzzer targets are compiled with clang 14).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace common {

// Deeper than anything process-core writes (a record nests about 6 levels) by a wide margin.
inline constexpr size_t k_max_json_depth = 64;

// Empty when `text` is at most `max_bytes` long and no array or object in it nests deeper than
// `max_depth`; otherwise what is wrong ("nested deeper than 64 levels"). Brackets inside strings
// do not count. The text need not be valid JSON: the parser decides that afterwards.
std::string json_bounds_error(std::string_view text, size_t max_bytes,
                              size_t max_depth = k_max_json_depth);

} // namespace common
