// Signature v2: a grouping key for "the same bug", from the crashing thread's backtrace.
//
// Skips the crash machinery at the top of the stack (signal trampolines, raise/abort,
// pthread_kill, assertion and fortify failures, std::terminate and the C++ runtime's handlers,
// sanitizer runtimes), then hashes the signal and the next three frames: a function name when
// the frame has one, else build-id + offset (else file name + offset). When every remaining frame
// is in a shared library, the executable's identity joins, so two programs that abort through
// the same library code do not share a signature. Frames in JIT code count by the name the
// process's perf map gives them ("jit:<function> <script>"), unnamed ones not at all; when none
// of the three is JIT code, the innermost named JIT frame below them joins as a fourth.
// Documented in docs/record-crash.md.
#pragma once

#include "common/crash/unwind.hpp"

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace common {

struct SignatureV2 {
  std::string signature;          // 16 hex characters of SHA-256(input)
  std::string input;              // "v2|<signo>|<frame>|<frame>|<frame>[|exe:<id>]"
  std::vector<std::string> chain; // the frames used, innermost first, for display
  int version = 2;                // 3: with the top Python frame (common/crash/python/merge)
  // v3: the v2 signature it refines, so that groups carry over a signature-version change.
  std::string refines{};
};

// Whether a function name is crash machinery that the signature skips.
bool is_crash_machinery(std::string_view function);

// The v2 signature of a crash; nullopt without a crashing thread with at least one frame.
// `executable_id` identifies the main executable ("b:<build-id>" or "n:<basename>"), used when
// all remaining frames are in shared libraries; `executable_path` is the NT_FILE path of the
// executable (frames in it are not in a shared library).
std::optional<SignatureV2> signature_v2(int signo, std::span<const Frame> crashing_frames,
                                        std::string_view executable_path,
                                        std::string_view executable_id);

} // namespace common
