// corectl's exit statuses and its one way of reporting an error; a leaf header, so that every
// verb (install included) reports the same way without reaching for the rest of corectl.
#pragma once

#include <string>

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

// Prints "corectl: <message>" on stderr, each line escaped, and returns `code`.
Exit report(Exit code, const std::string& message);

} // namespace cli
