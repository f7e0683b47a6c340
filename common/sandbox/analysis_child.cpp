#include "common/sandbox/analysis_child.hpp"

#include "common/base/fd.hpp"
#include "common/base/io.hpp"
#include "common/base/signals.hpp"
#include "common/sandbox/analysis_launcher.hpp"
#include "common/sandbox/analysis_sandbox.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox {

namespace {

// The child's exit statuses. 1 is not ours: it is what libdw's out-of-memory handler
// (__libdw_oom: error(EXIT_FAILURE, ENOMEM, …)) exits with.
constexpr int k_exit_libdw_oom = 1;
constexpr int k_exit_limits = 70;    // a limit could not be set: nothing was analysed
constexpr int k_exit_no_memory = 71; // std::bad_alloc
constexpr int k_exit_exception = 72; // any other exception
constexpr int k_exit_write = 73;     // the result could not be written to the pipe
// A step of the sandbox failed (fail closed: nothing was analysed); plus the SandboxFailure.
constexpr int k_exit_sandbox = 80;
constexpr int k_exit_sandbox_last = k_exit_sandbox + static_cast<int>(SandboxFailure::user);
constexpr int k_exit_fork = 79; // the analysing process could not be forked

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

// Soft and hard limit alike (the hard one `slack` above): an unprivileged child cannot raise a
// hard limit again. A value above the current hard limit is refused by the kernel, so that one
// stays.
bool set_limit(int resource, uint64_t value, uint64_t slack = 0) {
  rlimit now{};
  if (::getrlimit(resource, &now) != 0) {
    return false;
  }
  const rlim_t hard = std::min<rlim_t>(static_cast<rlim_t>(value + slack), now.rlim_max);
  const rlimit want{std::min<rlim_t>(static_cast<rlim_t>(value), hard), hard};
  return ::setrlimit(resource, &want) == 0;
}

// Closes every descriptor but 0-2 and `keep`: the child must not hold the store, the capture
// slot's lock or the watchdog's directory (it may outlive nothing, but it must reach nothing).
void close_other_fds(std::vector<int> keep) {
  keep.push_back(2);
  std::ranges::sort(keep);
  unsigned next = 3;
  for (const int fd : keep) {
    if (fd >= static_cast<int>(next)) {
      if (fd > static_cast<int>(next)) {
        ::close_range(next, static_cast<unsigned>(fd) - 1, 0);
      }
      next = static_cast<unsigned>(fd) + 1;
    }
  }
  ::close_range(next, ~0U, 0);
}

// Bytes of the child's own address space (`field` "VmSize:") or private writable memory
// ("VmData:") now, from /proc/self/status; 0 when unreadable (the limit is then absolute).
// What the child inherits is the handler's: about 165 MiB of address space after a capture
// (measured), most of it malloc arenas that its threads reserved and never touched, and 25 MiB
// of data. Counting the limit above that makes analysis_memory_limit what the analysis itself
// may take, whatever the handler looked like.
uint64_t in_use(std::string_view field) {
  auto status = common::read_file(AT_FDCWD, "/proc/self/status", 16 << 10);
  if (!status) {
    return 0;
  }
  const size_t at = status->find(field);
  if (at == std::string::npos) {
    return 0;
  }
  const char* p = status->c_str() + at + field.size();
  char* end = nullptr;
  const unsigned long long kib = std::strtoull(p, &end, 10);
  return end != p ? static_cast<uint64_t>(kib) << 10 : 0;
}

// Forks a child that dies with this process (its death signal armed before it could miss this
// process's end). In the parent: the child's pid, and `alive` an fd to keep open for as long as
// the parent lives. In the child: 0. On failure the process exits.
pid_t fork_below(int& alive_fd) {
  int alive[2] = {-1, -1};
  if (::pipe2(alive, O_CLOEXEC) != 0) {
    ::_exit(k_exit_fork);
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::_exit(k_exit_fork);
  }
  if (pid > 0) {
    ::close(alive[0]);
    alive_fd = alive[1];
    return pid;
  }
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  ::close(alive[1]);
  pollfd gone{alive[0], POLLIN, 0};
  if (::poll(&gone, 1, 0) != 0) {
    ::_exit(k_exit_fork); // the parent ended before the death signal was armed
  }
  ::close(alive[0]);
  return 0;
}

// Reaps `pid`; its wait status, or -1.
int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return -1;
    }
  }
  return status;
}

[[noreturn]] void child_main(const std::function<std::string()>& work, std::span<const int> keep,
                             int out_fd, int launcher, bool drop_root, const ChildLimits& limits,
                             pid_t parent) {
  // Dies with the handler (the watchdog's _exit included): nobody else would reap or kill it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::getppid() != parent) {
    ::_exit(k_exit_limits);
  }
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // A fault in the child ends the child: no handler the parent may have installed runs here,
  // and no signal the parent blocked is held back.
  for (const int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGXCPU, SIGPIPE, SIGTERM}) {
    ::signal(sig, SIG_DFL);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  std::vector<int> fds(keep.begin(), keep.end());
  fds.push_back(out_fd);
  if (launcher >= 0) {
    fds.push_back(launcher);
  }
  close_other_fds(std::move(fds));
  // RLIMIT_CORE {1,1}, not 0: for a pipe core_pattern the kernel ignores 0 and dumps anyway,
  // while 1 is its guard against a helper that crashes into itself (the handler starts so).
  const bool limited =
      (set_limit(RLIMIT_CORE, 1) || set_limit(RLIMIT_CORE, 0)) &&
      set_limit(RLIMIT_AS, in_use("VmSize:") + limits.memory) &&
      set_limit(RLIMIT_DATA, in_use("VmData:") + limits.memory) &&
      // SIGXCPU at the soft limit says why the child ended; SIGKILL a second later.
      set_limit(RLIMIT_CPU, limits.cpu_seconds, 1) && set_limit(RLIMIT_NOFILE, limits.files);
  if (!limited) {
    ::_exit(k_exit_limits); // never parse hostile data without its bounds
  }
  // A root caller's child gives root up before anything else (it needs no launcher).
  const bool as_root = drop_root && ::geteuid() == 0;
  if (as_root) {
    if (const SandboxFailure f = become({k_analysis_uid, k_analysis_gid});
        f != SandboxFailure::none) {
      ::_exit(k_exit_sandbox + static_cast<int>(f));
    }
  }
  // Read before the new user namespace, where unmapped ids read as the overflow id.
  const AnalysisIds self{::geteuid(), ::getegid()};
  if (const SandboxFailure f = isolate(); f != SandboxFailure::none) {
    ::_exit(k_exit_sandbox + static_cast<int>(f));
  }
  // Its ids mapped to themselves, so that they read as what they are in the namespace (the
  // caller's own when it is not root).
  if (drop_root) {
    if (const SandboxFailure f = map_self(self); f != SandboxFailure::none) {
      ::_exit(k_exit_sandbox + static_cast<int>(f));
    }
  }
  // Its own uid and gid, before the forks below inherit them (analysis_launcher.hpp).
  if (launcher >= 0) {
    if (const SandboxFailure f = take_analysis_ids(launcher); f != SandboxFailure::none) {
      ::_exit(k_exit_sandbox + static_cast<int>(f));
    }
  }
  // A new effective uid clears the death signal (commit_creds): armed again, and the parent
  // checked to be still there.
  if (as_root || launcher >= 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (::getppid() != parent) {
      ::_exit(k_exit_limits);
    }
  }
  // The analysis runs two forks down. The first, pid 1 of the new pid namespace, only waits:
  // when it ends, the kernel kills whatever the analysis may have started there. The analysis
  // itself is not that pid 1, whose default signal dispositions the kernel ignores (its own
  // abort() or SIGXCPU would not end it). Each waiting process holds nothing and passes the
  // status it reaped up, so the parent reaps one child and reads the analysis's own status.
  int status_pipe[2] = {-1, -1};
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    ::_exit(k_exit_fork);
  }
  const int status_out = status_pipe[1];
  int alive = -1;
  if (const pid_t init = fork_below(alive); init > 0) {
    // This process is outside the pid namespace: it can end itself with the same signal.
    close_other_fds({status_pipe[0], alive});
    int status = 0;
    const auto got =
        common::read_full(status_pipe[0], std::as_writable_bytes(std::span(&status, 1)));
    if (wait_for(init) < 0 || !got || *got != sizeof status) {
      ::_exit(k_exit_fork);
    }
    if (WIFSIGNALED(status)) {
      ::signal(WTERMSIG(status), SIG_DFL);
      ::kill(::getpid(), WTERMSIG(status));
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : k_exit_fork);
  }
  ::close(status_pipe[0]);
  if (const pid_t analyser = fork_below(alive); analyser > 0) {
    close_other_fds({status_out, alive});
    const int status = wait_for(analyser);
    ::_exit(common::write_all(status_out, std::as_bytes(std::span(&status, 1))) ? 0 : k_exit_fork);
  }
  ::close(status_out);
  if (const SandboxFailure f = confine(out_fd); f != SandboxFailure::none) {
    ::_exit(k_exit_sandbox + static_cast<int>(f));
  }
  std::string out;
  try {
    out = work();
  } catch (const std::bad_alloc&) {
    ::_exit(k_exit_no_memory);
  } catch (...) {
    ::_exit(k_exit_exception);
  }
  // _exit, never exit: the parent's atexit handlers and static destructors (the logger, the
  // watchdog) are not the child's to run.
  ::_exit(common::write_all(out_fd, out) ? 0 : k_exit_write);
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    if (sig == SIGXCPU) {
      return "cpu time limit (killed by SIGXCPU)";
    }
    const std::string name = common::signal_name(sig);
    return "killed by " + (name.starts_with("SIG") ? name : "SIG" + name);
  }
  switch (WEXITSTATUS(status)) {
  case k_exit_libdw_oom:
    return "out of memory (libdw exited with status 1)";
  case k_exit_limits:
    return "could not set the limits of the analysis child";
  case k_exit_no_memory:
    return "out of memory";
  case k_exit_exception:
    return "internal error in the analysis child";
  case k_exit_write:
    return "could not write the analysis result";
  case k_exit_fork:
    return "could not start the analysing process";
  default:
    if (WEXITSTATUS(status) > k_exit_sandbox && WEXITSTATUS(status) <= k_exit_sandbox_last) {
      return describe(static_cast<SandboxFailure>(WEXITSTATUS(status) - k_exit_sandbox));
    }
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  }
}

// Waits for `pid` until `deadline`, then kills it; true when it ended by itself.
bool reap(pid_t pid, Clock::time_point deadline, int& status) {
  const common::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) {
      return r == pid;
    }
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return false;
    }
    if (pidfd) {
      pollfd p{pidfd.get(), POLLIN, 0};
      ::poll(&p, 1, remaining_ms(deadline));
    } else {
      // Kernels before 5.3: no pidfd to wait on. The child exits right after closing its end
      // of the pipe, so this rarely sleeps more than once.
      ::usleep(1000);
    }
  }
}

} // namespace

StartedChild::StartedChild(const std::function<std::string()>& work, std::span<const int> keep,
                           const ChildLimits& limits, int launcher, bool drop_root)
    : m_limits(limits) {
  int ends[2] = {-1, -1};
  if (::pipe2(ends, O_CLOEXEC) != 0) {
    m_failure = std::string("could not create a pipe: ") + std::strerror(errno);
    return;
  }
  common::UniqueFd in(ends[0]);
  common::UniqueFd out(ends[1]);
  const pid_t parent = ::getpid();
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    in.release(); // closed by close_other_fds; no destructor runs in the child anyway
    child_main(work, keep, out.get(), launcher, drop_root, limits, parent);
  }
  m_fork_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (pid < 0) {
    m_failure = std::string("could not fork the analysis child: ") + std::strerror(errno);
    return;
  }
  m_pid = pid;
  m_in = std::move(in); // EOF on it when the child's end closes (ours closes here)
}

StartedChild::StartedChild(StartedChild&& other) noexcept
    : m_limits(other.m_limits), m_pid(std::exchange(other.m_pid, -1)), m_in(std::move(other.m_in)),
      m_failure(std::move(other.m_failure)), m_fork_ms(other.m_fork_ms) {}

StartedChild::~StartedChild() {
  if (m_pid > 0) {
    int status = 0;
    reap(m_pid, Clock::now(), status);
  }
}

ChildResult StartedChild::finish(Clock::time_point deadline) {
  ChildResult result;
  result.fork_ms = m_fork_ms;
  if (m_pid <= 0) {
    result.failure = m_failure.empty() ? "the analysis child was already collected" : m_failure;
    return result;
  }
  const pid_t pid = std::exchange(m_pid, -1);
  const common::UniqueFd in = std::move(m_in);
  std::string data;
  std::string failure;
  std::vector<std::byte> buf(64 << 10);
  for (;;) {
    pollfd p{in.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n == 0) {
      failure = "timeout";
      break;
    }
    auto got = common::read_some(in.get(), buf);
    if (!got) {
      failure = "could not read the analysis result: " + got.error().message;
      break;
    }
    if (*got == 0) {
      break;
    }
    if (data.size() + *got > m_limits.max_output) {
      failure = "analysis result larger than " + std::to_string(m_limits.max_output) + " bytes";
      break;
    }
    data.append(reinterpret_cast<const char*>(buf.data()), *got);
  }
  // A failure above ends the child at once; otherwise it has until the deadline to exit.
  int status = 0;
  const bool exited = reap(pid, failure.empty() ? deadline : Clock::now(), status);
  if (!failure.empty()) {
    result.failure = failure;
  } else if (!exited) {
    result.failure = "timeout";
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    result.output = std::move(data);
  } else {
    result.failure = describe_exit(status);
  }
  return result;
}

ChildResult run_in_child(const std::function<std::string()>& work, std::span<const int> keep,
                         const ChildLimits& limits, Clock::time_point deadline, int launcher,
                         bool drop_root) {
  return StartedChild(work, keep, limits, launcher, drop_root).finish(deadline);
}

} // namespace sandbox
