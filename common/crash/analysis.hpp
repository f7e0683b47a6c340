// The analysis after the drain: every thread unwound, the crash site named, signature v2.
#pragma once

#include "common/crash/elf_core.hpp"
#include "common/crash/signature.hpp"
#include "common/crash/symbolize.hpp"
#include "common/crash/unwind.hpp"

#include <optional>
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

// The NT_FILE path of the main executable (the mapping holding AT_ENTRY); empty when unknown.
std::string executable_mapping(const CoreFacts& facts);

} // namespace common
