// The parts of a path, by text alone (no file system access, no normalisation beyond what is
// said): what follows the last '/' and what precedes it.
#pragma once

#include <string_view>

namespace common {

// What follows the last '/' of `path` ("/usr/bin/cat" -> "cat"; "cat" -> "cat"; "/" -> "").
std::string_view base_name(std::string_view path);

// What precedes the last '/' of `path`: "." when it has none, "/" when that slash is the first
// character ("/usr/bin/cat" -> "/usr/bin"; "/cat" -> "/"; "cat" -> ".").
std::string_view dir_name(std::string_view path);

} // namespace common
