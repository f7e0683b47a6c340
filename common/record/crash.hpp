// The record's `crash` section, typed: the scanner's facts about the crash site and what the
// analysis added (every thread's frames, the symbol, the original fault, signature v2).
// Keys and meanings are documented in docs/record-crash.md; pc_crash fills these structs and
// every reader of a stored record gets them from crash_from_json().
#pragma once

#include "common/record/fields.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace common::record {

// {"name", "offset", "verified"}: crash.symbol, original_fault.symbol and every frame's symbol.
struct Symbol {
  std::optional<std::string> name;
  std::optional<Hex> offset;
  bool verified = false; // the module on disk had the core's build-id
  Unknown unknown;
  bool operator==(const Symbol&) const = default;
};

// One frame of a thread's backtrace, innermost first.
struct Frame {
  std::optional<Hex> pc;
  std::optional<std::string> trust; // context, cfi, frame_pointer, scan
  std::optional<std::string> module;
  std::optional<Hex> module_offset;
  std::optional<std::string> build_id;
  std::optional<Symbol> symbol;
  std::optional<std::string> file;
  std::optional<int64_t> line;
  bool inlined = false;
  bool signal_frame = false;
  bool jit = false; // pc in anonymous executable memory; `symbol` from the process's perf map
  Unknown unknown;
  bool operator==(const Frame&) const = default;
};

// One thread of crash.stacks, the crashing thread first.
struct Thread {
  std::optional<int64_t> tid;
  std::optional<std::string> name;
  std::optional<std::string> state;
  bool crashing = false;
  std::vector<Frame> frames;
  std::optional<std::string> error; // why the walk ended early
  Unknown unknown;
  bool operator==(const Thread&) const = default;
};

// crash.original_fault: the fault a program's own crash handler caught before it killed itself.
struct OriginalFault {
  std::optional<int64_t> si_signo;
  std::optional<std::string> signal_name;
  std::optional<int64_t> si_code;
  std::optional<std::string> si_code_name;
  std::optional<Hex> fault_address;
  std::optional<Hex> pc;
  std::optional<Symbol> symbol;
  Unknown unknown;
  bool operator==(const OriginalFault&) const = default;
};

// crash.blocked_syscall: the system call a seccomp filter answered with SIGSYS.
struct BlockedSyscall {
  std::optional<int64_t> number;
  std::optional<std::string> name; // from the x86-64 table, for calls made through it
  std::optional<std::string> arch; // x86_64, i386, aarch64, arm, or a hex AUDIT_ARCH value
  Unknown unknown;
  bool operator==(const BlockedSyscall&) const = default;
};

// crash.goroutine: a Go program's goroutine that the crashing thread's TLS slot names (m.curg
// when the thread ran the runtime's signal or scheduler goroutine).
struct Goroutine {
  std::optional<int64_t> goid;
  std::optional<Hex> g;               // address of its runtime.g
  std::optional<std::string> layout;  // "dwarf", or "unknown" (no DWARF for runtime.g)
  std::optional<int64_t> first_frame; // index in the crashing thread's frames
  std::optional<std::string> error;
  Unknown unknown;
  bool operator==(const Goroutine&) const = default;
};

struct Crash {
  // The crash site, from NT_PRSTATUS, NT_SIGINFO and NT_FILE.
  std::optional<std::string> machine;
  std::optional<int64_t> si_signo;
  std::optional<int64_t> si_code;
  std::optional<std::string> si_code_name;
  std::optional<int64_t> si_errno;
  std::optional<Hex> fault_address;
  std::optional<int64_t> sender_pid;
  std::optional<int64_t> sender_uid;
  std::optional<BlockedSyscall> blocked_syscall;
  std::optional<Hex> pc;
  std::optional<Hex> sp;
  std::optional<int64_t> tid;
  std::optional<int64_t> threads;
  std::optional<std::string> module;
  std::optional<Hex> module_offset;
  std::optional<std::string> build_id;
  // What the analysis added.
  std::optional<Symbol> symbol;
  std::optional<OriginalFault> original_fault;
  std::optional<Goroutine> goroutine;
  std::optional<std::string> signature;
  std::optional<int64_t> signature_version; // 2, or 1 (the scanner's recipe)
  std::optional<std::string> signature_chain;
  // v3: the v2 signature of the same crash (groups carry over: docs/groups.md).
  std::optional<std::string> signature_refines;
  std::vector<Thread> stacks;
  // Schema 1's best-effort frames of the crashing thread ({"address", "module", "offset",
  // "best_effort"}): only shown and cut, so kept as they were stored.
  std::optional<nlohmann::json> frames_v1;
  // How much of the core was seen, and what parsing noticed.
  std::optional<uint64_t> expected_size;
  std::optional<uint64_t> received;
  bool truncated = false;
  std::optional<std::string> format_error;
  std::vector<std::string> warnings;
  Unknown unknown;
  bool operator==(const Crash&) const = default;
};

// The section as JSON (every string made valid UTF-8).
nlohmann::json to_json(const Crash& crash);
// Any JSON object as a crash section; never fails (see common/record/fields.hpp).
Crash crash_from_json(const nlohmann::json& object);

Symbol symbol_from_json(const nlohmann::json& object);
nlohmann::json to_json(const Symbol& symbol);

// What the crash section says beyond the delivered signal, for one line of text: " raised by
// the program's crash handler after SIGSEGV (SEGV_MAPERR) at 0x10 in crash_here" (from
// `original_fault`; "raised by the Go runtime" with a `goroutine`), " (seccomp blocked chown (92)
// on x86_64)" (from `blocked_syscall`), else empty.
std::string cause_detail(const Crash& crash);

} // namespace common::record
