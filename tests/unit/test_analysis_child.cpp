#include "common/sandbox/analysis_child.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

using sandbox::ChildLimits;
using sandbox::run_in_child;
using Clock = std::chrono::steady_clock;

namespace {

auto in(int ms) {
  return Clock::now() + std::chrono::milliseconds(ms);
}

} // namespace

TEST_CASE("the child's result comes back over the pipe", "[analysis_child]") {
  const auto r =
      run_in_child([] { return std::string(200000, 'x') + "end"; }, {}, ChildLimits{}, in(10000));
  CHECK(r.failure.empty());
  REQUIRE(r.output);
  CHECK(r.output->size() == 200003);
  CHECK(r.output->ends_with("end"));
  CHECK(r.fork_ms >= 0);
}

TEST_CASE("a started child waits for its word and is collected later", "[analysis_child]") {
  int go[2] = {-1, -1};
  REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
  const int go_in = go[0];
  const std::vector<int> keep{go_in};
  auto work = [go_in] {
    char c = 0;
    return ::read(go_in, &c, 1) == 1 ? std::string("go ") + c : std::string("no word");
  };
  {
    sandbox::StartedChild child(work, keep, ChildLimits{});
    REQUIRE(::write(go[1], "!", 1) == 1);
    const auto r = child.finish(in(10000));
    CHECK(r.failure.empty());
    REQUIRE(r.output);
    CHECK(*r.output == "go !");
    // Once only.
    CHECK_FALSE(child.finish(in(100)).output);
  }
  // Never told to go: destroying it kills and reaps the child at once.
  const auto t0 = Clock::now();
  { sandbox::StartedChild idle(work, keep, ChildLimits{}); }
  CHECK(Clock::now() - t0 < std::chrono::seconds(5));
  // Told, but too late: the deadline of finish() kills it.
  sandbox::StartedChild late(work, keep, ChildLimits{});
  const auto r = late.finish(in(200));
  CHECK(r.failure == "timeout");
  ::close(go[0]);
  ::close(go[1]);
}

TEST_CASE("the child runs under its limits, with only the descriptors it needs",
          "[analysis_child]") {
  const int kept = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int other = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(kept > 2);
  REQUIRE(other > 2);
  ChildLimits limits;
  limits.memory = 700ULL << 20;
  limits.cpu_seconds = 3;
  limits.files = 100;
  const int keep[] = {kept};
  const auto r = run_in_child(
      [&] {
        auto limit = [](int resource) {
          rlimit l{};
          ::getrlimit(resource, &l);
          return std::to_string(l.rlim_cur) + "/" + std::to_string(l.rlim_max);
        };
        return limit(RLIMIT_CPU) + " " + limit(RLIMIT_NOFILE) + " " + limit(RLIMIT_CORE) +
               " dumpable=" + std::to_string(::prctl(PR_GET_DUMPABLE)) +
               " kept=" + std::to_string(::fcntl(kept, F_GETFD) >= 0) +
               " other=" + std::to_string(::fcntl(other, F_GETFD) >= 0);
      },
      keep, limits, in(10000));
  ::close(kept);
  ::close(other);
  REQUIRE(r.output);
  CHECK(*r.output == "3/4 100/100 1/1 dumpable=0 kept=1 other=0");
}

TEST_CASE("the child's memory limit counts above what it inherits", "[analysis_child]") {
  ChildLimits limits;
  limits.memory = 64ULL << 20;
  // The parent maps 256 MiB (touched: it counts as data too) before forking: an absolute limit
  // of 64 MiB would leave the child nothing, this one leaves it its 64 MiB.
  std::vector<char> inherited(256 << 20, 'p');
  const auto r = run_in_child(
      [] {
        rlimit as{};
        rlimit data{};
        ::getrlimit(RLIMIT_AS, &as);
        ::getrlimit(RLIMIT_DATA, &data);
        // 32 MiB more fits; 128 MiB more does not.
        std::vector<char> fits(32 << 20, 'c');
        std::string too_much = "fits";
        try {
          std::vector<char> big(128 << 20, 'c');
          too_much = "no limit";
        } catch (const std::bad_alloc&) {
        }
        return std::to_string(as.rlim_cur == as.rlim_max) + " " +
               std::to_string(data.rlim_cur == data.rlim_max) + " " +
               std::to_string(as.rlim_cur > (256ULL << 20)) + " " + too_much + " " +
               std::to_string(fits.size());
      },
      {}, limits, in(10000));
  REQUIRE(r.output);
  CHECK(*r.output == "1 1 1 fits " + std::to_string(32 << 20));
  CHECK(inherited[12345] == 'p');
}

TEST_CASE("a child that crashes is reported by its signal", "[analysis_child]") {
  const auto r = run_in_child(
      []() -> std::string {
        // A real SIGSEGV (a write to a page with no access); the child is not dumpable and its
        // RLIMIT_CORE is 1, so no core of it is made.
        void* page = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        *static_cast<volatile char*>(page) = 1;
        return "unreachable";
      },
      {}, ChildLimits{}, in(10000));
  CHECK_FALSE(r.output);
  CHECK(r.failure == "killed by SIGSEGV");
  const auto a = run_in_child([]() -> std::string { std::abort(); }, {}, ChildLimits{}, in(10000));
  CHECK(a.failure == "killed by SIGABRT");
}

TEST_CASE("a child out of memory says so", "[analysis_child]") {
  ChildLimits limits;
  limits.memory = 256ULL << 20;
  const auto r = run_in_child(
      [] {
        std::vector<std::vector<char>> hog;
        for (;;) {
          hog.emplace_back(16 << 20, 'x'); // bad_alloc once the address space is used up
        }
        return std::string();
      },
      {}, limits, in(10000));
  CHECK_FALSE(r.output);
  CHECK(r.failure == "out of memory");
  // libdw's out-of-memory handler exits with status 1.
  const auto e = run_in_child([]() -> std::string { ::_exit(1); }, {}, ChildLimits{}, in(10000));
  CHECK(e.failure == "out of memory (libdw exited with status 1)");
  const auto x = run_in_child([]() -> std::string { throw std::runtime_error("boom"); }, {},
                              ChildLimits{}, in(10000));
  CHECK(x.failure == "internal error in the analysis child");
}

TEST_CASE("a child past its deadline is killed and reaped", "[analysis_child]") {
  const auto start = Clock::now();
  const auto r = run_in_child(
      [] {
        // Blocked for good in a call the sandbox allows (pause() is not one: it would fail).
        static int word = 0;
        for (;;) {
          ::syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
        }
        return std::string("late");
      },
      {}, ChildLimits{}, in(300));
  const auto took = Clock::now() - start;
  CHECK_FALSE(r.output);
  CHECK(r.failure == "timeout");
  CHECK(took >= std::chrono::milliseconds(300));
  CHECK(took < std::chrono::seconds(3));
  // Reaped: no child of ours is left, not even a zombie.
  CHECK(::waitpid(-1, nullptr, WNOHANG) == -1);
  CHECK(errno == ECHILD);
}

TEST_CASE("a child that spins is stopped by its CPU limit", "[analysis_child]") {
  ChildLimits limits;
  limits.cpu_seconds = 1;
  const auto r = run_in_child(
      [] {
        volatile uint64_t spins = 0;
        for (;;) {
          spins = spins + 1;
        }
        return std::string();
      },
      {}, limits, in(30000)); // a second of CPU may take long on a busy machine
  CHECK_FALSE(r.output);
  CHECK(r.failure == "cpu time limit (killed by SIGXCPU)");
}

TEST_CASE("a child that writes too much is cut off", "[analysis_child]") {
  ChildLimits limits;
  limits.max_output = 100000;
  const auto r = run_in_child([] { return std::string(1 << 20, 'x'); }, {}, limits, in(10000));
  CHECK_FALSE(r.output);
  CHECK(r.failure == "analysis result larger than 100000 bytes");
  CHECK(::waitpid(-1, nullptr, WNOHANG) == -1);
}
