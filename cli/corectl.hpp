// corectl as a library: main() is a shim over run(), so tests reach every verb.
#pragma once

#include "cli/options.hpp"
#include "common/config/config.hpp"
#include "common/store/store.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cli {

// Exit statuses (also in --help and docs/corectl.md); scripts may rely on them.
enum class Exit : int {
  ok = 0,
  failure = 1,   // the operation failed (I/O error, corrupted core, no core stored)
  no_match = 1,  // nothing matched the filters and matches (as coredumpctl)
  usage = 2,     // bad command line, or an ambiguous id prefix
  not_found = 3, // no such record
  denied = 4,    // the store, a record or a core is not readable (or writable) to this user
  no_store = 5,  // the store does not exist
};

// Everything one invocation knows, filled step by step.
struct Context {
  Options opts;
  common::Config config;
  std::optional<common::Store> store;
  Term term;
};

// Runs corectl with argv without argv[0]; returns the exit status.
int run(const std::vector<std::string>& argv);

// The verbs; each reports its own errors on stderr (once) and returns the exit status.
Exit cmd_list(Context& ctx);
Exit cmd_groups(Context& ctx);
Exit cmd_info(Context& ctx);
Exit cmd_dump(Context& ctx);
Exit cmd_debug(Context& ctx);
Exit cmd_vacuum(Context& ctx);
Exit cmd_remove(Context& ctx); // remove.cpp

// The filter of the options and matches (list, info, groups, dump, debug, vacuum); a value that
// does not parse is the message of a usage error.
std::expected<Filter, std::string> make_filter(const Options& o);

// The record behind an id or unique prefix, or the exit status after reporting why not.
std::expected<std::pair<Located, FullRecord>, Exit> find_record(Context& ctx,
                                                                const std::string& prefix);

// The record dump and debug work on: the one id given, else the newest crash the matches and
// filters select (the newest of the store without any).
std::expected<std::pair<Located, FullRecord>, Exit> select_record(Context& ctx);

// Prints "corectl: <message>" on stderr and returns `code`.
Exit report(Exit code, const std::string& message);

} // namespace cli
