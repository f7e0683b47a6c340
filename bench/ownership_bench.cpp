// The package ownership lookup of the handler (common/packages/ownership) on this host's root:
// reads paths from stdin and prints the median of RUNS lookups, in ms, for each way dpkg's
// database is read: every .list file (no index directory), the index built (cold: the index
// directory emptied before each run) and the index used (warm), and how many paths were found.
// bench_ownership.sh compares them with dpkg -S of the same paths.
#include "common/packages/dpkg_index.hpp"
#include "common/packages/ownership.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

} // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::stoi(argv[1]) : 10;
  std::vector<std::string> paths;
  for (std::string line; std::getline(std::cin, line);) {
    paths.push_back(line);
  }
  char tmpl[] = "/tmp/pc-ownership-bench-XXXXXX";
  const std::filesystem::path store = ::mkdtemp(tmpl);
  common::UniqueFd store_fd(::open(store.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  auto dir = common::open_dpkg_index_dir(store_fd.get());
  if (!dir) {
    std::fprintf(stderr, "%s\n", dir.error().message.c_str());
    return 1;
  }
  common::UniqueFd root(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  common::OwnershipLimits limits;
  limits.budget = std::chrono::seconds(10); // measure the whole lookup, not the budget
  struct Way {
    const char* name;
    int index_dir;
    bool empty_first;
  };
  for (const Way way : {Way{"no index", -1, false}, Way{"cold index", dir->get(), true},
                        Way{"warm index", dir->get(), false}}) {
    std::vector<double> ms;
    size_t owned = 0;
    std::string how;
    for (int i = 0; i < runs; ++i) {
      if (way.empty_first) {
        for (const auto& e :
             std::filesystem::directory_iterator(store / common::k_dpkg_index_dir)) {
          std::filesystem::remove(e.path());
        }
      }
      const auto t0 = std::chrono::steady_clock::now();
      const auto o = common::find_owners(root.get(), paths, limits, way.index_dir);
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      owned = o.owners.size();
      how = o.dpkg_index;
    }
    std::printf("%s: median of %d %.1f ms, %zu of %zu paths owned%s%s\n", way.name, runs,
                median(ms), owned, paths.size(), how.empty() ? "" : ", index ", how.c_str());
  }
  std::uintmax_t bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(store / common::k_dpkg_index_dir)) {
    bytes += e.file_size();
  }
  std::printf("index: %ju bytes\n", bytes);
  std::filesystem::remove_all(store);
}
