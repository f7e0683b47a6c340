// corectl: browse, extract and debug the crashes process-core captured (see docs/corectl.md).
#include "cli/corectl.hpp"
#include "common/base/escape.hpp"

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  // The one catch boundary: corectl reads files the store's owner wrote, and a reader that
  // throws on one of them must end with a message and exit code 1, never abort() (rc 134).
  try {
    return cli::run(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "corectl: internal error: %s\n", common::printable(e.what()).c_str());
  } catch (...) {
    std::fprintf(stderr, "corectl: internal error\n");
  }
  return 1;
}
