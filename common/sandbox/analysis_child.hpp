// The crash analysis in a forked child, as systemd-coredump parses ELF objects: libdw and libelf
// end the process on some out-of-memory paths, a hostile module file may drive them into a
// crash or into running its code, and none of that may cost the record, which the parent writes
// whatever the child did, nor reach anything beyond what the child was handed.
#pragma once

#include "common/base/fd.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

namespace sandbox {

// Hard limits of the child (soft = hard, so the child cannot raise them back; the CPU time's
// hard limit is a second above, so that the soft one's SIGXCPU says why the child ended).
struct ChildLimits {
  // RLIMIT_AS and RLIMIT_DATA, in bytes above what the child has mapped when it starts.
  uint64_t memory = 512ULL << 20;
  unsigned cpu_seconds = 4; // RLIMIT_CPU (soft)
  // RLIMIT_NOFILE: libdwfl keeps each module's file open while it unwinds, and the unwinder
  // reports at most 1024 modules; a few more for debug files and libdw's own.
  uint64_t files = 1024 + 64;
  size_t max_output = 256 << 10; // bytes of result read at most (the handler: k_record_max)
};

struct ChildResult {
  std::optional<std::string> output; // what the child wrote, when it exited 0 in time
  std::string failure; // why there is no output ("timeout", "killed by SIGSEGV", …); else empty
  double fork_ms = 0;  // the parent's cost of fork()
};

// Runs `work` in a forked child under `limits` and returns what it returned, read over a pipe.
// The child keeps only fds 0-2 and `keep` open, is not dumpable, dies with the parent, and is
// killed (SIGKILL) at `deadline`; it is always reaped before this returns. `work` runs in the
// sandbox of analysis_sandbox.hpp: it can read `keep`, but open, fork, signal or connect nothing
// (no sandbox, no analysis: the failure says which step). `work` must not use the parent's other
// threads or their locks (only the calling thread exists in the child): no logging.
// `launcher`, when not -1, is the socket of analysis_launcher.hpp: the child then runs as the
// ids it gives, not as this process's uid. With `drop_root`, a root caller's child becomes
// k_analysis_uid and k_analysis_gid first (corectl run by root), and the child maps its ids
// into its user namespace itself.
ChildResult run_in_child(const std::function<std::string()>& work, std::span<const int> keep,
                         const ChildLimits& limits, std::chrono::steady_clock::time_point deadline,
                         int launcher = -1, bool drop_root = false);

// run_in_child in two halves: the child is forked and sandboxed when this is constructed (its
// `work` may then wait on a descriptor of `keep` for the word to go), and its result is read by
// finish(). Destroying one that was not finished kills and reaps the child.
class StartedChild {
public:
  StartedChild(const std::function<std::string()>& work, std::span<const int> keep,
               const ChildLimits& limits, int launcher = -1, bool drop_root = false);
  StartedChild(StartedChild&& other) noexcept;
  StartedChild& operator=(StartedChild&&) = delete;
  ~StartedChild();

  // Reads the result until `deadline` and reaps the child (killed at the deadline); once.
  ChildResult finish(std::chrono::steady_clock::time_point deadline);

private:
  ChildLimits m_limits;
  pid_t m_pid = -1;
  common::UniqueFd m_in;
  std::string m_failure; // why no child was started
  double m_fork_ms = 0;
};

} // namespace sandbox
