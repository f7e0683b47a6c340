// corectl install / uninstall: the kernel settings that send every core dump to the handler,
// persisted as a sysctl.d drop-in and applied at once, with the previous values kept for
// uninstall.
#pragma once

#include "cli/exit.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

struct InstallOptions {
  std::string handler;    // absolute path of process-core
  std::string sysctl_dir; // where 50-process-core.conf goes (/etc/sysctl.d)
  std::string state_dir;  // where the previous values are kept (/etc/process-core, root-only)
  std::string proc_sys;   // /proc/sys, or a fake tree in tests
  std::optional<std::string> kernel_release; // uname -r unless given
};

inline constexpr const char* k_dropin_name = "50-process-core.conf";
inline constexpr const char* k_state_name = ".previous-sysctl.json";
// The kernel keeps at most this many characters of core_pattern and silently cuts the rest.
inline constexpr size_t k_core_pattern_max = 127;
// Handlers allowed to run at once: 0, no limit. With N > 0 the kernel skips every dump beyond N
// (systemd-coredump ships 16 and loses crashes in a storm); the handler bounds its own work
// with capture slots instead, and reads /proc while the kernel is blocked on the full pipe.
inline constexpr int k_core_pipe_limit = 0;

// One kernel setting we manage: its sysctl name and value.
struct Setting {
  std::string name; // "kernel.core_pattern"
  std::string value;
};

// True when the kernel release ("6.18.4-arch1") is 6.16 or newer, which expands %F to a pidfd.
bool kernel_has_pidfd(std::string_view release);

// The recommended pattern for `handler`, with or without -F%F.
std::string handler_pattern(std::string_view handler, bool with_pidfd);

// True when core_pattern `pattern` is process-core's: exactly `installed` (what install wrote,
// "" if unknown), or a pipe to `handler` or to any absolute path whose file name is process-core.
bool is_our_pattern(std::string_view pattern, std::string_view handler, std::string_view installed);

// The settings install applies, in order.
std::vector<Setting> install_settings(std::string_view pattern);

// The sysctl.d drop-in text for `settings`.
std::string dropin_text(const std::vector<Setting>& settings);

Exit install(const InstallOptions& o);
Exit uninstall(const InstallOptions& o);

} // namespace cli
