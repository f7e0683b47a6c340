// corectl as a library: main() is a shim over run(), so tests reach every verb.
#pragma once

#include <string>
#include <vector>

namespace cli {

// Runs corectl with argv without argv[0]: parses the line, prepares what the verb's entry in the
// verb table (verbs/verbs.hpp) asks for (configuration and store, pager), runs it; returns the
// exit status (exit.hpp).
int run(const std::vector<std::string>& argv);

} // namespace cli
