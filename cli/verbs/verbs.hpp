// The verb table, as systemd's coredumpctl has one: each verb's name, function, what it needs
// prepared before it runs, and its one-line help. run() (corectl.cpp) dispatches from it and the
// command line (options.cpp) takes the verbs' names and help from it.
#pragma once

#include "cli/exit.hpp"

#include <span>
#include <string_view>

namespace cli {

struct Context;

// Every verb is called the same way: the invocation's context in, the exit status out; each
// reports its own errors on stderr (once).
using VerbFunction = Exit (*)(Context& ctx);

enum class NeedsStore : bool { no, yes }; // configuration loaded and store opened first
enum class UsesPager : bool { no, yes };  // output paged on a terminal (unless --no-pager)
enum class Remote : bool { no, yes };     // works on a fleet's bucket with --remote too

struct Verb {
  std::string_view name;
  VerbFunction run;
  NeedsStore needs_store;
  UsesPager uses_pager;
  Remote remote;
  std::string_view help; // one line, for --help
};

// Every verb, in the order messages list them; "list" is the one without a verb.
std::span<const Verb> verbs();

// The verb called `name`, or nullptr.
const Verb* find_verb(std::string_view name);

// The verbs.
Exit cmd_list(Context& ctx);
Exit cmd_info(Context& ctx);
Exit cmd_dump(Context& ctx);
Exit cmd_debug(Context& ctx);
Exit cmd_remove(Context& ctx);    // remove.cpp
Exit cmd_groups(Context& ctx);    // groups.cpp
Exit cmd_resolve(Context& ctx);   // groups.cpp
Exit cmd_unresolve(Context& ctx); // groups.cpp
Exit cmd_vacuum(Context& ctx);
Exit cmd_install(Context& ctx);
Exit cmd_uninstall(Context& ctx);

} // namespace cli
