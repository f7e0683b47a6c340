// corectl's command line: one verb, its arguments, and options that may come before or after it.
#pragma once

#include "cli/catalog.hpp"
#include "cli/render.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cli {

struct Options {
  std::string verb;              // list, info, dump, debug, groups, vacuum, install, uninstall
  std::vector<std::string> args; // ids for info/dump/debug

  // Everywhere.
  std::optional<std::string> store;  // --store DIR (overrides the configuration)
  std::optional<std::string> config; // --config FILE (default: the system path, if present)
  bool json = false;                 // --json: one record (or group) object per line
  Colour colour = Colour::auto_;     // --color=auto|always|never
  bool help = false;
  bool version = false;

  // list and groups.
  std::vector<std::string> hosts;   // --host (repeatable)
  std::vector<std::string> exes;    // --exe
  std::vector<std::string> signals; // --signal, as given
  std::optional<std::string> since; // --since / -S
  std::optional<std::string> until; // --until / -U
  std::optional<size_t> limit;      // -n / --limit: the newest N
  bool reverse = false;             // -r / --reverse: newest first

  std::optional<std::string> output;   // dump -o FILE
  std::optional<std::string> debugger; // debug --debugger CMD
  bool dry_run = false;                // vacuum --dry-run

  // install / uninstall.
  std::string handler = "/usr/sbin/process-core";
  std::string sysctl_dir = "/etc/sysctl.d";
  // Root-only: uninstall writes what it finds there into the kernel (see install.cpp).
  std::string state_dir = "/etc/process-core";
  std::string proc_sys = "/proc/sys";        // tests point this at a fake tree
  std::optional<std::string> kernel_release; // overrides uname -r (tests)
};

// Parses argv without argv[0]; an error message when the line is not understood.
std::expected<Options, std::string> parse_options(const std::vector<std::string>& argv);

// The --help text.
extern const char* const k_usage;

} // namespace cli
