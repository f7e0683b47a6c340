// corectl's command line: one verb with its own options and matches, plus the options every
// verb takes (CLI11 subcommands: an option a verb does not take is an error, and every verb has
// its own --help).
#pragma once

#include "cli/output/term.hpp"

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <vector>

namespace cli {

// --json[=MODE]: off (tables), short (one object per line, the default of a bare --json),
// pretty (indented).
enum class JsonMode { off, short_, pretty };

struct Options {
  std::string verb; // a name of the verb table (verbs/verbs.hpp)
  // Positional matches (list, groups, info, dump, debug): ids, PIDs, names, paths and
  // FIELD=VALUE, read by parse_matches() (match.hpp).
  std::vector<std::string> matches;

  // Every verb.
  std::optional<std::string> store;  // --store DIR (overrides the configuration)
  std::optional<std::string> config; // --config FILE (default: the system path, if present)
  std::optional<std::string> remote; // --remote s3://BUCKET/PREFIX: the fleet's bucket, not a store
  Colour colour = Colour::auto_;     // --color=auto|always|never
  bool no_pager = false;             // --no-pager
  bool quiet = false;                // -q / --quiet: no informational messages, no column headers
  bool version = false;
  std::string help_text; // set when --help was asked for: print it and exit 0

  // list, groups, info (and dump, debug: the filters choose the newest match).
  JsonMode json = JsonMode::off;
  bool no_legend = false;            // --no-legend: tables without their header
  std::vector<std::string> hosts;    // --host (repeatable)
  std::vector<std::string> exes;     // --exe
  std::vector<std::string> signals;  // --signal, as given
  std::optional<std::string> since;  // --since / -S
  std::optional<std::string> until;  // --until / -U
  std::optional<size_t> limit;       // -n / --limit: the newest N; -1 is -n 1
  bool reverse = false;              // -r / --reverse: newest first
  std::optional<std::string> values; // list --list-values=FIELD (hidden: shell completion)
  std::optional<std::string> field;  // list -F / --field=FIELD: that field of each crash

  std::optional<std::string> file;     // info, dump, debug --file PATH: a core not in the store
  std::optional<std::string> output;   // dump -o FILE
  std::optional<std::string> debugger; // debug --debugger CMD
  std::optional<std::string> debugger_args; // debug -A / --debugger-arguments ARGS
  bool debuginfod = false;               // debug --debuginfod: gdb may fetch from DEBUGINFOD_URLS
  bool dry_run = false;                  // vacuum --dry-run
  std::optional<std::string> resolve_in; // resolve --in PACKAGE=VERSION|BUILD-ID

  // install / uninstall.
  std::string handler = "/usr/sbin/process-core";
  std::string sysctl_dir = "/etc/sysctl.d";
  // Root-only: uninstall writes what it finds there into the kernel (see install.cpp).
  std::string state_dir = "/etc/process-core";
  std::string proc_sys = "/proc/sys";        // tests point this at a fake tree
  std::optional<std::string> kernel_release; // overrides uname -r (tests)

  // True when a filter option (--host, --exe, --signal, -S, -U) was given.
  bool has_filter_options() const;
};

// Parses argv without argv[0]; an error message when the line is not understood. Without a
// verb, corectl lists (like coredumpctl).
std::expected<Options, std::string> parse_options(const std::vector<std::string>& argv);

} // namespace cli
