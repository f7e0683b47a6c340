// Times the record summary reader (common::read_record_view(): the summary and the one adapter
// on top of it) over every record of a store, the way corectl and the exporter use it.
// bench_record_summary.sh compiles this file twice, against the reader in the tree and against
// an earlier one checked out from git, and runs them in turn.
//
//   record_summary_bench STORE [PASSES]
//
// Prints one line: the records, how many the reader accepted, the seconds of one pass that reads
// each file and parses it (what a cold or warm corectl/exporter scan does), and the median of
// PASSES (default 5) passes that only parse, over texts already in memory.
#include "common/store/record_summary_view.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The whole file, or "" (counted as rejected) when it cannot be read.
std::string read_file(const std::string& path) {
  std::string text;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    std::fprintf(stderr, "Failed to open '%s': %s\n", path.c_str(), std::strerror(errno));
    return text;
  }
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fd);
  return text;
}

struct Tally {
  size_t accepted = 0;
  size_t checksum = 0; // depends on every field read, so no pass can be optimised away
};

void read_one(std::string_view text, Tally& t) {
  auto view = common::read_record_view(text);
  if (!view) {
    return;
  }
  ++t.accepted;
  t.checksum += view->id.size() + view->hostname.size() + view->executable.size() +
                static_cast<size_t>(view->signal) + view->signature.size() + view->site.size() +
                static_cast<size_t>(view->time) + view->core.size + (view->core.present ? 1 : 0);
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s STORE [PASSES]\n", argv[0]);
    return 2;
  }
  const int passes = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;

  // The file names first (directory order, as the store walk sees them), so that the timed pass
  // below measures reading and parsing, not the listing.
  std::vector<std::string> paths;
  std::error_code ec;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(argv[1], ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".json") {
      paths.push_back(entry.path().string());
    }
  }
  if (ec) {
    std::fprintf(stderr, "Failed to list '%s': %s\n", argv[1], ec.message().c_str());
    return 1;
  }

  std::vector<std::string> texts;
  texts.reserve(paths.size());
  Tally first;
  const auto start = Clock::now();
  for (const auto& path : paths) {
    texts.push_back(read_file(path));
    read_one(texts.back(), first);
  }
  const double read_and_parse = seconds_since(start);

  std::vector<double> times;
  for (int i = 0; i < passes; ++i) {
    Tally t;
    const auto s = Clock::now();
    for (const auto& text : texts) {
      read_one(text, t);
    }
    times.push_back(seconds_since(s));
    if (t.accepted != first.accepted || t.checksum != first.checksum) {
      std::fprintf(stderr, "pass %d read different values\n", i);
      return 1;
    }
  }
  std::sort(times.begin(), times.end());
  std::printf("records %zu accepted %zu read+parse %.3f s parse-only %.3f s checksum %zu\n",
              paths.size(), first.accepted, read_and_parse, times[times.size() / 2],
              first.checksum);
  return 0;
}
