// One line of a node's index object (PREFIX/.index/<node>/<day>.jsonl, docs/fleet.md), read
// into a crash of corectl's catalog. The bucket is untrusted: the line is bounded in size and
// depth, every field typed, and the keys it names must be the ones computed here from its node,
// host, executable and id, or the line is refused with the reason.
#pragma once

#include "cli/catalog/crash.hpp"

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>

namespace cli {

inline constexpr size_t k_max_index_line = 64 << 10; // one line of an index object

// `summary` is false for a line of the first format (no core_reason…): the record itself has to
// say the rest.
struct IndexLine {
  Crash crash;
  bool core = false; // the line names the crash's core object
  bool summary = false;
};

// The line `text` of the index object of node `node` under the bucket's `prefix`.
std::expected<IndexLine, std::string>
read_index_line(std::string_view text, const std::string& node, const std::string& prefix);

} // namespace cli
