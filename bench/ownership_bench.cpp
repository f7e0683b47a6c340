// The package ownership lookup of the handler (common/packages/ownership) on this host's root:
// reads paths from stdin, prints the first run's time and the best of RUNS, in ms, and how many
// paths were found. bench_ownership.sh compares it with dpkg -S of the same paths.
#include "common/packages/ownership.hpp"

#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::stoi(argv[1]) : 10;
  std::vector<std::string> paths;
  for (std::string line; std::getline(std::cin, line);) {
    paths.push_back(line);
  }
  common::UniqueFd root(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  common::OwnershipLimits limits;
  limits.budget = std::chrono::seconds(10); // measure the whole lookup, not the budget
  double first = 0;
  double best = 1e9;
  size_t owned = 0;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto o = common::find_owners(root.get(), paths, limits);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    owned = o.owners.size();
    if (i == 0) {
      first = ms;
    }
    best = std::min(best, ms);
  }
  std::printf("first %.1f ms, best of %d %.1f ms, %zu of %zu paths owned\n", first, runs, best,
              owned, paths.size());
}
