#include "common/sandbox/analysis_child.hpp"
#include "common/sandbox/analysis_launcher.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>

using sandbox::ChildLimits;
using sandbox::run_in_child;

namespace {

auto soon() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(10);
}

// "ok" when `r` (a system call's result) succeeded, else the errno's name for the usual ones.
std::string outcome(long r) {
  if (r >= 0) {
    return "ok";
  }
  return errno == EPERM ? "EPERM" : errno == EAGAIN ? "EAGAIN" : std::to_string(errno);
}

} // namespace

TEST_CASE("the analysis can open, fork, signal and connect nothing", "[analysis_sandbox]") {
  const pid_t parent = ::getpid();
  const auto r = run_in_child(
      [&] {
        std::string out;
        out += "open=" + outcome(::open("/etc/hostname", O_RDONLY | O_CLOEXEC));
        out += " openat=" + outcome(::openat(AT_FDCWD, "/", O_PATH | O_CLOEXEC));
        out += " socket=" + outcome(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        out += " unix=" + outcome(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const pid_t child = ::fork();
        if (child == 0) {
          ::_exit(0);
        }
        out += " fork=" + outcome(child);
        out += " kill=" + outcome(::kill(parent, 0));
        out += " write2=" + outcome(::write(2, "x", 1));
        // pid 2 of its own pid namespace: the one before it only waits.
        out += " pid=" + std::to_string(::getpid());
        return out;
      },
      {}, ChildLimits{}, soon());
  INFO(r.failure);
  REQUIRE(r.output);
  CHECK(*r.output == "open=EPERM openat=EPERM socket=EPERM unix=EPERM fork=EPERM kill=EPERM "
                     "write2=EPERM pid=2");
}

TEST_CASE("the analysis reads what it was handed", "[analysis_sandbox]") {
  int ends[2];
  REQUIRE(::pipe2(ends, O_CLOEXEC) == 0);
  REQUIRE(::write(ends[1], "handed", 6) == 6);
  ::close(ends[1]);
  const int keep[] = {ends[0]};
  const auto r = run_in_child(
      [&] {
        char buf[16] = {};
        const ssize_t n = ::read(ends[0], buf, sizeof buf);
        return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("nothing");
      },
      keep, ChildLimits{}, soon());
  ::close(ends[0]);
  REQUIRE(r.output);
  CHECK(*r.output == "handed");
}

TEST_CASE("a sandbox that cannot be set up means no analysis", "[analysis_sandbox]") {
  for (const auto& [step, why] :
       {std::pair{"namespaces", "could not create the analysis namespaces"},
        std::pair{"seccomp", "could not load the seccomp filter"}}) {
    ::setenv("PROCESS_CORE_TEST_SANDBOX_FAULT", step, 1);
    const auto r = run_in_child([] { return std::string("analysed"); }, {}, ChildLimits{}, soon());
    ::unsetenv("PROCESS_CORE_TEST_SANDBOX_FAULT");
    CHECK_FALSE(r.output);
    CHECK(r.failure == std::string("sandbox unavailable: ") + why);
  }
}

TEST_CASE("the analysis runs as the crasher when it is an ordinary user, else as its own id",
          "[analysis_sandbox]") {
  using sandbox::analysis_ids;
  using sandbox::k_analysis_gid;
  using sandbox::k_analysis_uid;
  const uid_t store = 120;
  auto ids = analysis_ids(1000, 1001, store, store);
  CHECK((ids.uid == 1000 && ids.gid == 1001));
  ids = analysis_ids(0, 0, store, store); // root
  CHECK((ids.uid == k_analysis_uid && ids.gid == k_analysis_gid));
  ids = analysis_ids(999, 100, store, store); // a system user, the users group
  CHECK((ids.uid == k_analysis_uid && ids.gid == k_analysis_gid));
  ids = analysis_ids(std::nullopt, std::nullopt, store, store); // no %u %g
  CHECK((ids.uid == k_analysis_uid && ids.gid == k_analysis_gid));
  ids = analysis_ids(2000, 2000, 2000, 2000); // the store user itself
  CHECK((ids.uid == k_analysis_uid && ids.gid == k_analysis_gid));
  ids = analysis_ids(65534, 65534, store, store); // nobody
  CHECK((ids.uid == k_analysis_uid && ids.gid == k_analysis_gid));
  ids = analysis_ids(4294967295LL, -5, store, store); // (uid_t)-1, nonsense
  CHECK((ids.uid == k_analysis_uid && ids.gid == k_analysis_gid));
  ids = analysis_ids(100000, 100000, store, store); // a container's root, mapped up
  CHECK((ids.uid == 100000 && ids.gid == 100000));
}

TEST_CASE("a child asked to drop root runs as the dedicated ids, and reads its ids as they are",
          "[analysis_sandbox]") {
  const uid_t want_uid = ::geteuid() == 0 ? sandbox::k_analysis_uid : ::geteuid();
  const gid_t want_gid = ::geteuid() == 0 ? sandbox::k_analysis_gid : ::getegid();
  const auto r = run_in_child(
      [] {
        uid_t u[3] = {};
        gid_t g[3] = {};
        ::getresuid(&u[0], &u[1], &u[2]);
        ::getresgid(&g[0], &g[1], &g[2]);
        std::string out;
        for (const uid_t id : u) {
          out += std::to_string(id) + " ";
        }
        for (const gid_t id : g) {
          out += std::to_string(id) + " ";
        }
        return out + std::to_string(::getgroups(0, nullptr));
      },
      {}, ChildLimits{}, soon(), -1, /*drop_root=*/true);
  REQUIRE(r.output);
  const std::string u = std::to_string(want_uid) + " ";
  const std::string g = std::to_string(want_gid) + " ";
  // Without root the caller's supplementary groups cannot be dropped: they stay.
  const int groups = ::geteuid() == 0 ? 0 : ::getgroups(0, nullptr);
  CHECK(*r.output == u + u + u + g + g + g + std::to_string(groups));
}

namespace {

// Runs `f` in a forked child and returns its exit status (-1 when it did not exit).
template <typename F>
int status_of(F f) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::_exit(f());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace

TEST_CASE("the launcher maps ids for the handler's own child in a new user namespace only",
          "[analysis_sandbox]") {
  if (::geteuid() != 0) {
    WARN("skipped: the launcher needs root");
    return;
  }
  using sandbox::start_analysis_launcher;
  const sandbox::AnalysisIds ids{1000, 1001};
  SECTION("a child in this process's user namespace is refused") {
    auto launcher = start_analysis_launcher(ids);
    REQUIRE(launcher);
    const int fd = launcher->get();
    CHECK(status_of([&] {
            return sandbox::take_analysis_ids(fd) == sandbox::SandboxFailure::user ? 0 : 1;
          }) == 0);
  }
  SECTION("a grandchild is refused, in a user namespace of its own or not") {
    auto launcher = start_analysis_launcher(ids);
    REQUIRE(launcher);
    const int fd = launcher->get();
    CHECK(status_of([&] {
            return status_of([&] {
              if (::unshare(CLONE_NEWUSER) != 0) {
                return 2;
              }
              return sandbox::take_analysis_ids(fd) == sandbox::SandboxFailure::user ? 0 : 1;
            });
          }) == 0);
  }
  SECTION("the analysis child runs as the ids, with no groups") {
    auto launcher = start_analysis_launcher(ids);
    REQUIRE(launcher);
    const auto r = run_in_child(
        [] {
          uid_t u[3] = {};
          gid_t g[3] = {};
          ::getresuid(&u[0], &u[1], &u[2]);
          ::getresgid(&g[0], &g[1], &g[2]);
          return std::to_string(u[0]) + " " + std::to_string(u[1]) + " " + std::to_string(u[2]) +
                 " " + std::to_string(g[0]) + " " + std::to_string(g[1]) + " " +
                 std::to_string(g[2]) + " " + std::to_string(::getgroups(0, nullptr));
        },
        {}, ChildLimits{}, soon(), launcher->get());
    REQUIRE(r.output);
    CHECK(*r.output == "1000 1000 1000 1001 1001 1001 0");
  }
  SECTION("a second request gets no answer: the launcher answers once") {
    auto launcher = start_analysis_launcher(ids);
    REQUIRE(launcher);
    const int fd = launcher->get();
    CHECK(status_of([&] {
            return sandbox::take_analysis_ids(fd) == sandbox::SandboxFailure::user ? 0 : 1;
          }) == 0);
    CHECK(status_of([&] {
            if (::unshare(CLONE_NEWUSER) != 0) {
              return 2;
            }
            return sandbox::take_analysis_ids(fd) == sandbox::SandboxFailure::user ? 0 : 1;
          }) == 0);
  }
}
