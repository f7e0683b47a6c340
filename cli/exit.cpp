#include "cli/exit.hpp"

#include "common/base/escape.hpp"

#include <cstdio>
#include <string_view>

namespace cli {

Exit report(Exit code, const std::string& message) {
  // Messages quote record fields and store paths: escaped here, once, line by line (a message
  // may list several lines on purpose).
  std::string out;
  size_t start = 0;
  for (size_t nl = message.find('\n');; nl = message.find('\n', start)) {
    out += common::printable(std::string_view(message).substr(start, nl - start));
    if (nl == std::string::npos) {
      break;
    }
    out += '\n';
    start = nl + 1;
  }
  std::fprintf(stderr, "corectl: %s\n", out.c_str());
  return code;
}

} // namespace cli
