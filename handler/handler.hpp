// The core_pattern helper, as a library: main() is a shim over run().
#pragma once

#include "handler/policy.hpp" // the storage policy, which tests reach through this header

#include <string>
#include <vector>

namespace handler {

// Runs one capture: `args` is argv without argv[0]. Returns the exit status; the kernel ignores
// it, tests and humans read it (0 = a record was written, 1 = it could only be logged).
int run(const std::vector<std::string>& args);

} // namespace handler
