// The crash analysis as it crosses the pipe from the forked analysis child to its parent: the
// handler, or corectl analysing a core given with --file.
#pragma once

#include "common/base/error.hpp"
#include "common/crash/analysis.hpp"

#include <cstddef>
#include <string>
#include <string_view>

namespace common {

// The analysis as it crosses the pipe from the forked analysis child to its parent: compact
// JSON with every field typed, strings made valid UTF-8 (the record's rule), at most `max`
// bytes. Threads past the crashing one are dropped from the end, then the crashing thread's
// outermost frames, until the text fits; `cut` in the text says what was dropped.
std::string analysis_to_wire(const common::CrashAnalysis& analysis, size_t max);

// The other way round, for text that may come from a child that went wrong: every field is
// checked (type, trust names, sizes) and anything unexpected is an error, never a guess.
struct WireAnalysis {
  common::CrashAnalysis analysis;
  std::string cut; // what the child dropped to fit `max` ("threads: 12 of 64 kept"); empty: none
};
common::Expected<WireAnalysis> analysis_from_wire(std::string_view text, size_t max);

} // namespace common
