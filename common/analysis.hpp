// The analysis after the drain: every thread unwound, the crash site named, signature v2.
#pragma once

#include "common/elf_core.hpp"
#include "common/error.hpp"
#include "common/signature.hpp"
#include "common/symbolize.hpp"
#include "common/unwind.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace common {

// What the analysis adds to the scanner's facts.
struct CrashAnalysis {
  std::optional<ResolvedSymbol> symbol; // of the crash site (the crashing thread's frame #0)
  std::vector<ThreadTrace> stacks;      // unwind_threads(), crashing thread first
  std::optional<SignatureV2> signature; // replaces the scanner's v1 signature when present
};

// Unwinds the threads, names the crash site (from the unwinder's verified modules, else
// resolve_symbol()) and computes signature v2. Bounded by options.deadline.
CrashAnalysis analyze_crash(const CoreFacts& facts, const UnwindOptions& options);

// The analysis as it crosses the pipe from the forked analysis child to the handler: compact
// JSON with every field typed, strings made valid UTF-8 (the record's rule), at most `max`
// bytes. Threads past the crashing one are dropped from the end, then the crashing thread's
// outermost frames, until the text fits; `cut` in the text says what was dropped.
std::string analysis_to_wire(const CrashAnalysis& analysis, size_t max);

// The other way round, for text that may come from a child that went wrong: every field is
// checked (type, trust names, sizes) and anything unexpected is an error, never a guess.
struct WireAnalysis {
  CrashAnalysis analysis;
  std::string cut; // what the child dropped to fit `max` ("threads: 12 of 64 kept"); empty: none
};
Expected<WireAnalysis> analysis_from_wire(std::string_view text, size_t max);

// The NT_FILE path of the main executable (the mapping holding AT_ENTRY); empty when unknown.
std::string executable_mapping(const CoreFacts& facts);

} // namespace common
