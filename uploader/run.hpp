// process-core-uploader's entry: the command line, then --once or the service.
#pragma once

#include <string>
#include <vector>

namespace uploader {

// Runs the uploader with `args` (without argv[0]); returns the exit status.
int run(const std::vector<std::string>& args);

} // namespace uploader
