#include "common/sandbox/analysis_launcher.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <string_view>

namespace sandbox {

namespace {

constexpr int64_t k_first_ordinary_id = 1000;
constexpr int64_t k_nobody = 65534;
// How long the child waits for the launcher's answer (the parent kills it at its deadline
// anyway); the launcher answers at once.
constexpr int k_answer_ms = 2000;

struct Answer {
  int32_t error; // 0, or the errno of the step that failed
  uint32_t uid;
  uint32_t gid;
};

bool ordinary(std::optional<int64_t> id, int64_t store) {
  return id && *id >= k_first_ordinary_id && *id != k_nobody && *id != store &&
         *id < static_cast<int64_t>(static_cast<uint32_t>(-1)) && *id != 65535;
}

// The launcher runs in a fork of a handler that may have other threads: only system calls and
// stack buffers from here on, no allocation and no locks.

// "<id> <id> 1\n": `id` mapped to itself, nothing else.
bool write_map(int dir, const char* file, uint32_t id) {
  char line[64];
  char* p = line;
  for (int i = 0; i < 2; ++i) {
    p = std::to_chars(p, line + sizeof line - 8, id).ptr;
    *p++ = ' ';
  }
  *p++ = '1';
  *p++ = '\n';
  const int fd = ::openat(dir, file, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  const auto len = static_cast<size_t>(p - line);
  const bool ok = ::write(fd, line, len) == static_cast<ssize_t>(len);
  ::close(fd);
  return ok;
}

// The value of "PPid:" in /proc/<pid>/status, or -1.
long parent_of(int dir) {
  const int fd = ::openat(dir, "status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return -1;
  }
  char buf[4096];
  size_t len = 0;
  for (ssize_t n = 0; len < sizeof buf - 1; len += static_cast<size_t>(n)) {
    n = ::read(fd, buf + len, sizeof buf - 1 - len);
    if (n <= 0) {
      break;
    }
  }
  ::close(fd);
  const std::string_view status(buf, len);
  constexpr std::string_view key = "\nPPid:\t";
  const size_t at = status.find(key);
  if (at == std::string_view::npos) {
    return -1;
  }
  long ppid = -1;
  const char* from = buf + at + key.size();
  const auto r = std::from_chars(from, buf + len, ppid);
  return r.ec == std::errc() && r.ptr != from ? ppid : -1;
}

// Maps `ids` into the user namespace of the process that sent the request on `sock`; 0 or an
// errno. The sender is whoever the kernel says it is (SCM_CREDENTIALS, not its own word), and
// must be a child of this launcher's parent, the handler, in a user namespace other than ours.
int serve(int sock, AnalysisIds ids) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = 0;
  while ((n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (n <= 0) {
    return -1; // the handler closed its end: no analysis, nothing to answer
  }
  const cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_CREDENTIALS ||
      c->cmsg_len != CMSG_LEN(sizeof(ucred)) || (msg.msg_flags & MSG_CTRUNC) != 0) {
    return EPROTO;
  }
  ucred who{};
  std::memcpy(&who, CMSG_DATA(c), sizeof who);
  char path[32] = "/proc/";
  *std::to_chars(path + 6, path + sizeof path - 1, who.pid).ptr = '\0';
  // Every later step goes through this directory: it stays the sender's even if the pid is reused.
  const int dir = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    return errno;
  }
  int error = 0;
  char theirs[64] = {};
  char ours[64] = {};
  if (who.pid <= 0 || parent_of(dir) != ::getppid()) {
    error = EPERM;
  } else if (::readlinkat(dir, "ns/user", theirs, sizeof theirs - 1) <= 0 ||
             ::readlink("/proc/self/ns/user", ours, sizeof ours - 1) <= 0 ||
             std::strcmp(theirs, ours) == 0) {
    error = EPERM;
  } else if (!write_map(dir, "uid_map", ids.uid) || !write_map(dir, "gid_map", ids.gid)) {
    error = errno != 0 ? errno : EIO;
  }
  ::close(dir);
  return error;
}

[[noreturn]] void launcher_main(int sock, AnalysisIds ids, pid_t handler) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::getppid() != handler) {
    ::_exit(0);
  }
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // It holds nothing but its socket: not the core pipe, not the store.
  if (sock > 0) {
    ::close_range(0, static_cast<unsigned>(sock) - 1, 0);
  }
  ::close_range(static_cast<unsigned>(sock) + 1, ~0U, 0);
  const int error = serve(sock, ids);
  if (error >= 0) {
    const Answer answer{error, ids.uid, ids.gid};
    ::send(sock, &answer, sizeof answer, MSG_NOSIGNAL);
  }
  ::_exit(0);
}

} // namespace

AnalysisIds analysis_ids(std::optional<int64_t> crash_uid, std::optional<int64_t> crash_gid,
                         uid_t store_uid, gid_t store_gid) {
  AnalysisIds ids{k_analysis_uid, k_analysis_gid};
  if (ordinary(crash_uid, store_uid)) {
    ids.uid = static_cast<uid_t>(*crash_uid);
  }
  if (ordinary(crash_gid, store_gid)) {
    ids.gid = static_cast<gid_t>(*crash_gid);
  }
  return ids;
}

common::Expected<common::UniqueFd> start_analysis_launcher(AnalysisIds ids) {
  int ends[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) {
    return common::fail_errno("Failed to create the analysis launcher's socket", errno);
  }
  common::UniqueFd ours(ends[0]);
  common::UniqueFd theirs(ends[1]);
  // Before the fork, so that no request can arrive without the kernel's credentials.
  const int on = 1;
  if (::setsockopt(theirs.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    return common::fail_errno("Failed to set up the analysis launcher's socket", errno);
  }
  const pid_t handler = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    return common::fail_errno("Failed to fork the analysis launcher", errno);
  }
  if (pid == 0) {
    launcher_main(theirs.release(), ids, handler);
  }
  return ours;
}

SandboxFailure take_analysis_ids(int launcher) {
  const char request = '?';
  if (::send(launcher, &request, 1, MSG_NOSIGNAL) != 1) {
    return SandboxFailure::user;
  }
  pollfd p{launcher, POLLIN, 0};
  Answer answer{};
  if (::poll(&p, 1, k_answer_ms) != 1 ||
      ::recv(launcher, &answer, sizeof answer, 0) != static_cast<ssize_t>(sizeof answer) ||
      answer.error != 0) {
    return SandboxFailure::user;
  }
  ::close(launcher);
  return become(AnalysisIds{answer.uid, answer.gid});
}

SandboxFailure map_self(AnalysisIds ids) {
  // A process that is not dumpable finds its /proc files owned by root, its maps included: for
  // these few writes it is dumpable (to its own uid, which owns nothing and runs nothing else).
  if (::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) {
    return SandboxFailure::user;
  }
  const int self = ::open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (self < 0) {
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return SandboxFailure::user;
  }
  // Without CAP_SETGID outside, a gid_map is accepted only once setgroups is denied.
  const int groups = ::openat(self, "setgroups", O_WRONLY | O_CLOEXEC);
  const bool denied = groups >= 0 && ::write(groups, "deny", 4) == 4;
  if (groups >= 0) {
    ::close(groups);
  }
  const bool ok =
      denied && write_map(self, "uid_map", ids.uid) && write_map(self, "gid_map", ids.gid);
  ::close(self);
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return SandboxFailure::user;
  }
  return ok ? SandboxFailure::none : SandboxFailure::user;
}

SandboxFailure become(AnalysisIds ids) {
  const uid_t uid = ids.uid;
  const gid_t gid = ids.gid;
  if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
      ::setresuid(uid, uid, uid) != 0) {
    return SandboxFailure::user;
  }
  uid_t r = 0;
  uid_t e = 0;
  uid_t s = 0;
  gid_t rg = 0;
  gid_t eg = 0;
  gid_t sg = 0;
  if (::getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid ||
      ::getresgid(&rg, &eg, &sg) != 0 || rg != gid || eg != gid || sg != gid ||
      ::getgroups(0, nullptr) != 0) {
    return SandboxFailure::user;
  }
  // New credentials reset the dumpable flag (see isolate()): clear it again.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return SandboxFailure::user;
  }
  return SandboxFailure::none;
}

} // namespace sandbox
