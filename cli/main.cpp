// corectl: browse, extract and debug the crashes process-core captured (see docs/corectl.md).
#include "cli/corectl.hpp"

int main(int argc, char** argv) {
  return cli::run(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
}
