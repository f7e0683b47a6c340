#define CATCH_CONFIG_MAIN
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

namespace test {

namespace {
bool g_failed = false;
}

bool current_test_failed() {
  return g_failed;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/pc-unit-XXXXXX";
  if (!::mkdtemp(templ.data())) {
    throw std::runtime_error("mkdtemp failed");
  }
  m_path = templ;
}

TempDir::~TempDir() {
  if (g_failed) {
    std::cerr << "test directory kept: " << m_path << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::permissions(m_path, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(m_path, ec);
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::filesystem::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

int reaped_proc_dir() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::_exit(0);
  }
  if (pid < 0) {
    return -1;
  }
  // Opened while the child is at least a zombie, which keeps /proc/<pid> in place; once it is
  // reaped the kernel answers getdents() on it with ENOENT.
  const int fd =
      ::open(("/proc/" + std::to_string(pid) + "/fd").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return fd;
}

// Tracks failures of the running test case so TempDir knows whether to keep its directory.
struct FailureListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseStarting(const Catch::TestCaseInfo&) override { g_failed = false; }
  bool assertionEnded(const Catch::AssertionStats& stats) override {
    if (!stats.assertionResult.isOk()) {
      g_failed = true;
    }
    return true;
  }
};
CATCH_REGISTER_LISTENER(FailureListener)

} // namespace test
