// The analysis after the drain: every thread unwound, the crash site named, signature v2.
#pragma once

#include "common/crash/elf_core.hpp"
#include "common/crash/signature.hpp"
#include "common/crash/symbolize.hpp"
#include "common/crash/unwind.hpp"

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace common {

// What the analysis adds to the scanner's facts.
struct CrashAnalysis {
  std::optional<ResolvedSymbol> symbol; // of the crash site (the crashing thread's frame #0)
  std::vector<ThreadTrace> stacks;      // unwind_threads(), crashing thread first
  std::optional<SignatureV2> signature; // replaces the scanner's v1 signature when present
};

// The fault a program's own crash handler caught before it killed itself. For a Go program, the
// signal its runtime saved in the faulting goroutine (GoroutineTrace: sig, sigcode0 as si_code,
// sigcode1 as the address, sigpc) once the frame at sigpc is in the crashing thread's frames.
// Otherwise: the delivered signal
// was sent by the process to itself (SI_USER or SI_TKILL with its own pid) and a signal frame on
// the crashing thread's stack holds a fault the kernel raised (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
// SIGTRAP, SIGSYS) — the innermost such frame. The delivered signal stays what the kernel
// reported; this is the bug it was raised for.
struct OriginalFault {
  int signo = 0;
  int code = 0;
  std::string code_name;                // empty when unknown
  std::optional<uint64_t> address;      // si_addr, for faults that carry one
  uint64_t pc = 0;                      // where the fault interrupted the thread
  std::optional<ResolvedSymbol> symbol; // of pc, from the crashing thread's backtrace
  // Index in the crashing thread's frames of the interrupted frame (the one after the signal
  // trampoline); nullopt when the unwinder did not get through the signal frame.
  std::optional<size_t> frame;
};
std::optional<OriginalFault> original_fault(const CoreFacts& facts,
                                            std::span<const ThreadTrace> stacks);

// Unwinds the threads, names the crash site (from the unwinder's verified modules, else
// resolve_symbol()) and computes signature v2 — of the original fault when there is one (its
// signal and the frames from the interrupted one on: the crash handler's frames are not the
// bug). Bounded by options.deadline.
CrashAnalysis analyze_crash(const CoreFacts& facts, const UnwindOptions& options);

// The NT_FILE path of the main executable (the mapping holding AT_ENTRY); empty when unknown.
std::string executable_mapping(const CoreFacts& facts);

} // namespace common
