#include "handler/watchdog.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

using handler::Watchdog;
using namespace std::chrono_literals;

namespace {

Watchdog::Report report(const std::string& name, const std::string& text) {
  Watchdog::Report r;
  r.name = name;
  r.text = text;
  r.record.id = name;
  r.what = "stopped at the deadline";
  return r;
}

} // namespace

TEST_CASE("the watchdog writes the record it was given and ends a run that hangs", "[watchdog]") {
  test::TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const int dirfd = ::open(dir.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    Watchdog w;
    w.arm(Watchdog::Clock::now() + 10s, dirfd, report("early.json", "{\"early\": true}\n"));
    // Re-armed: only the last record counts.
    w.arm(Watchdog::Clock::now() + 300ms, dirfd, report("late.json", "{\"late\": true}\n"));
    std::this_thread::sleep_for(30s); // a step that never returns
    ::_exit(3);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(test::slurp(dir.path() / "late.json") == "{\"late\": true}\n");
  CHECK_FALSE(std::filesystem::exists(dir.path() / "early.json"));
}

TEST_CASE("a run that claims the commit in time is left alone", "[watchdog]") {
  test::TempDir dir;
  const int dirfd = ::open(dir.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  {
    Watchdog w;
    w.arm(Watchdog::Clock::now() + 200ms, dirfd, report("r.json", "{}\n"));
    CHECK(w.claim());
    std::this_thread::sleep_for(400ms);
  }
  ::close(dirfd);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "r.json"));
}
