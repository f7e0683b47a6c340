#include "cli/output/pager.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace cli {

namespace {

// Whether `prog` is an executable in $PATH: without less, output goes straight to the terminal
// rather than into a pager that failed to start.
bool in_path(std::string_view prog) {
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "/usr/bin:/bin";
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    const std::string dir(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (!dir.empty() && ::access((dir + "/" + std::string(prog)).c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

// The pager command, or "" for none.
std::string pager_command(bool secure) {
  std::string cmd = "less";
  for (const char* var : {"CORECTL_PAGER", "PAGER"}) {
    if (const char* v = std::getenv(var); v != nullptr) {
      cmd = v;
      break;
    }
  }
  const std::string_view trimmed(cmd);
  if (trimmed.find_first_not_of(" \t") == std::string_view::npos || cmd == "cat") {
    return {};
  }
  // Root under sudo: the pager comes from a user's environment, and a pager can run commands.
  // Only less, which has a secure mode, like systemd's SYSTEMD_PAGERSECURE.
  if (secure || cmd == "less") {
    return in_path("less") ? "less" : "";
  }
  return cmd;
}

bool secure_mode() {
  if (::geteuid() != 0) {
    return false;
  }
  for (const char* var : {"SUDO_UID", "SUDO_USER", "PKEXEC_UID"}) {
    if (std::getenv(var) != nullptr) {
      return true;
    }
  }
  return ::getuid() != ::geteuid();
}

bool g_paging = false;

} // namespace

bool paging() {
  return g_paging;
}

void Pager::start() {
  if (m_pid >= 0 || ::isatty(STDOUT_FILENO) != 1) {
    return;
  }
  const bool secure = secure_mode();
  const std::string cmd = pager_command(secure);
  if (cmd.empty()) {
    return;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return; // no pager: print directly
  }
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return;
  }
  if (pid == 0) {
    ::dup2(fds[0], STDIN_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::setenv("LESS", "FRSX", 0); // unless the user has their own
    if (secure) {
      ::setenv("LESSSECURE", "1", 1);
      ::execlp("less", "less", static_cast<char*>(nullptr));
    } else {
      // A command line, as git and systemd treat $PAGER.
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    }
    std::fprintf(stderr, "corectl: Failed to run the pager '%s': %s\n", cmd.c_str(),
                 std::strerror(errno));
    ::_exit(127);
  }
  ::close(fds[0]);
  ::dup2(fds[1], STDOUT_FILENO);
  ::close(fds[1]);
  g_paging = true;
  // A user who quits the pager early ends the output: writes then fail with EPIPE, which
  // corectl takes for success, instead of a SIGPIPE death.
  ::signal(SIGPIPE, SIG_IGN);
  m_pid = pid;
}

void Pager::finish() {
  if (m_pid < 0) {
    return;
  }
  std::fflush(stdout);
  ::close(STDOUT_FILENO); // EOF for the pager
  // The pager owns the terminal until it exits: Ctrl-C is for it, not for us.
  auto old_int = ::signal(SIGINT, SIG_IGN);
  int status = 0;
  while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::signal(SIGINT, old_int);
  m_pid = -1;
}

} // namespace cli
