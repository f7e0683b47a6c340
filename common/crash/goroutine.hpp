// The faulting goroutine of a Go program, from the crashing thread's TLS.
//
// Go turns a fault in Go code into a panic on the goroutine that faulted: its signal handler
// saves the signal in the goroutine (g.sig, g.sigcode0/1, g.sigpc) and makes it call
// runtime.sigpanic, and with GOTRACEBACK=crash the runtime prints every goroutine and then
// raises SIGABRT, on its signal stack. The core's crashing thread is then in the runtime's
// handler and its frames say nothing of the bug: those are on the goroutine's stack. On
// linux/amd64 the thread's current g is at -8(FS) (Go's TLS slot, inside its m); when that is
// the m's signal or scheduler goroutine (gsignal, g0), the goroutine is m.curg. The offsets of
// runtime.g's and runtime.m's fields come from the binary's own DWARF (pure-Go binaries carry it
// unless linked with -w): a layout that cannot be read is recorded as unknown, never guessed.
// Every read goes through a reader of the memory the core kept, and every walk is bounded.
#pragma once

#include "common/crash/sigframe.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

typedef struct Dwarf Dwarf;

namespace common {

// Byte offsets of the fields read, from DWARF.
struct GoLayout {
  uint64_t g_size = 0;
  uint64_t g_stack_lo = 0, g_stack_hi = 0; // g.stack.{lo,hi}
  uint64_t g_m = 0;
  uint64_t g_sched_sp = 0, g_sched_pc = 0, g_sched_bp = 0; // g.sched.{sp,pc,bp}
  uint64_t g_panic = 0;                                    // g._panic
  uint64_t g_goid = 0;
  uint64_t g_sig = 0; // uint32
  uint64_t g_sigcode0 = 0, g_sigcode1 = 0, g_sigpc = 0;
  uint64_t m_size = 0;
  uint64_t m_g0 = 0, m_gsignal = 0, m_curg = 0;
};

// The layout, or why there is none ("no DWARF", "no type runtime.g in the DWARF", "runtime.g
// has no field sigpc"). Reads the top-level entries of each compilation unit (Go puts its
// types there), at most `max_entries` of them, until `deadline`.
struct GoLayoutResult {
  std::optional<GoLayout> layout;
  std::string error;
};
GoLayoutResult go_layout(Dwarf* dwarf, std::chrono::steady_clock::time_point deadline,
                         size_t max_entries = 1u << 20);

// An 8-byte little-endian word of the process's memory as the core kept it; nullopt when the core
// (or what the scanner kept of it) does not hold all of it.
using WordReader = std::function<std::optional<uint64_t>(uint64_t addr)>;

// Registers to walk a goroutine's stack from.
struct GoRegisters {
  uint64_t pc = 0;
  uint64_t sp = 0;
  uint64_t bp = 0;
};

// What the crashing thread's goroutine state says.
struct Goroutine {
  uint64_t g = 0;         // address of the faulting (or running) goroutine's runtime.g
  int64_t goid = 0;       // its goroutine id
  bool from_curg = false; // the thread ran on gsignal or g0: this is m.curg
  uint64_t stack_lo = 0, stack_hi = 0;
  // The signal the runtime turned into a panic on this goroutine; 0 when none.
  uint32_t sig = 0;
  uint64_t sigcode0 = 0, sigcode1 = 0, sigpc = 0;
  bool panicking = false; // g._panic is set
  // Where a walk of its stack starts: the thread's registers when sp is on the goroutine's
  // stack, else the signal frame that interrupted it there, else its saved g.sched; nullopt
  // when none of them is on its stack.
  std::optional<GoRegisters> start;
  std::string error; // why something above is missing; empty when all was read
};

// Reads the goroutine of a thread whose TLS block is at `fs_base` and whose registers are
// `thread` (sp on the stack it ran on), with the kernel signal frames found on its stacks.
// nullopt when the TLS slot is not in the memory the core kept; a goroutine with `error` when a
// pointer on the way is unreadable or inconsistent (a g that is not its m's, a stack that is
// not ordered).
std::optional<Goroutine> read_goroutine(const GoLayout& layout, const WordReader& read,
                                        uint64_t fs_base, const GoRegisters& thread,
                                        std::span<const SignalFrame> signal_frames);

} // namespace common
