// The handler's command line: what the kernel expands from core_pattern, plus our own options.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace common {

// Recommended pattern:
//   |/usr/sbin/process-core -P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E
// Minimal pattern (must work too):
//   |/usr/local/sbin/process-core %h %s %E
// Each field is unset when its specifier was not in the pattern or did not parse.
struct CoreArgs {
  std::optional<int64_t> pid;      // -P %P  pid in the initial pid namespace
  std::optional<int64_t> pid_ns;   // -p %p  pid in the crasher's own namespace
  std::optional<int64_t> tid;      // -I %I  tid of the dumping thread, initial namespace
  std::optional<int64_t> uid;      // -u %u  real uid in the initial user namespace
  std::optional<int64_t> gid;      // -g %g  real gid
  std::optional<int64_t> time;     // -t %t  time of dump, seconds since the epoch
  std::optional<uint64_t> rlimit;  // -c %c  soft RLIMIT_CORE (UINT64_MAX = unlimited)
  std::optional<int> dump_mode;    // -d %d  1 normal, 2 suid_dumpable=2 dump
  std::optional<int> pidfd;        // -F %F  pidfd of the crasher (installed as fd 3)
  std::optional<std::string> comm; // -e %e  comm (15 bytes, set by the process)
  std::string hostname;            //    %h  UTS hostname of the crasher: attacker-controlled
  std::optional<int> signal;       //    %s  signal number
  std::string exe_raw;             //    %E  executable, '/' as '!', args after %s joined by ' '

  std::optional<std::string> config_path; // --config FILE
  std::optional<std::string> store_path;  // --store DIR
  bool help = false;                      // --help
  bool version = false;                   // --version

  // What was wrong with the arguments; never fatal: the crash is captured regardless.
  std::vector<std::string> warnings;
};

// Parses argv (without argv[0]). Never fails: bad values become warnings and unset fields.
// A hostname may itself look like an option or be "--" (a container can set it to anything), so
// an interpretation is accepted only when the argument after the hostname is a signal number.
CoreArgs parse_core_args(const std::vector<std::string>& args);

// Keeps --config and --store only when `core_pattern` has them as literal text ("--store=/x",
// or "--store" followed by "/x"); otherwise warns and falls back to the value the pattern
// itself writes for the option, or to none. For a handler the
// kernel started: with the minimal pattern, and on kernels that split %h on spaces (< 5.3), a
// hostname can look exactly like these options, and they choose what root reads and writes.
void keep_pattern_options(CoreArgs& args, std::string_view core_pattern);

} // namespace common
