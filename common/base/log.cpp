#include "common/base/log.hpp"

#include "common/base/fd.hpp"
#include "common/base/io.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <mutex>
#include <vector>

namespace common {

namespace {

constexpr const char* k_journal_socket = "/run/systemd/journal/socket";
constexpr const char* k_syslog_socket = "/dev/log";
constexpr const char* k_kmsg = "/dev/kmsg";
// How long a line may wait for a logger whose socket queue is full (a busy journald) before it
// goes to the next transport instead. Never longer: the handler's run must end.
constexpr auto k_logger_wait = std::chrono::milliseconds(500);
// k_kmsg_max (log.hpp): the kernel keeps at most 1024 bytes per record (LOG_LINE_MAX minus its
// prefix); longer writes are cut by it anyway, so a line is made to fit first, on our terms.
// What a line cut to fit ends with.
constexpr std::string_view k_kmsg_cut = " [cut]";

std::string g_ident = "process-core";
bool g_system = false;
std::atomic<LoggerWait> g_wait{LoggerWait::bounded};

int syslog_priority(spdlog::level::level_enum level) {
  switch (level) {
  case spdlog::level::critical:
    return LOG_CRIT;
  case spdlog::level::err:
    return LOG_ERR;
  case spdlog::level::warn:
    return LOG_WARNING;
  case spdlog::level::info:
    return LOG_INFO;
  default:
    return LOG_DEBUG;
  }
}

bool is_socket(const char* path) {
  struct stat st {};
  return ::stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

// A datagram socket connected to `path`: connected, so that poll() says when the receiver's
// queue has room (an unconnected sender only learns it by blocking).
UniqueFd connect_datagram(const char* path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return fd;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    fd.reset();
  }
  return fd;
}

// sendmsg() that never blocks: the logger may be the very process being dumped (journald
// stopped in its own core dump, PID 1), and then its queue never drains. A full queue is waited
// for at most k_logger_wait, and not at all under LoggerWait::never. False with errno set.
bool send_nonblocking(int fd, const msghdr& msg) {
  const auto deadline = std::chrono::steady_clock::now() + k_logger_wait;
  for (;;) {
    if (::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
      return true;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN || g_wait == LoggerWait::never) {
      return false;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLOUT, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      errno = EAGAIN;
      return false;
    }
  }
}

// One journal field in the native protocol: NAME=value, or NAME, a little-endian 64-bit length
// and the raw value when the value holds a newline.
void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  if (value.find('\n') == std::string_view::npos) {
    out += '=';
    out += value;
  } else {
    out += '\n';
    uint64_t size = value.size();
    for (int i = 0; i < 8; ++i) {
      out += static_cast<char>((size >> (8 * i)) & 0xff);
    }
    out += value;
  }
  out += '\n';
}

// A message too large for one datagram goes as a sealed memfd, as sd_journal_sendv() does.
bool send_journal_memfd(int fd, const std::string& payload) {
  UniqueFd mem(::memfd_create("process-core-journal", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!mem ||
      ::write(mem.get(), payload.data(), payload.size()) != static_cast<ssize_t>(payload.size()) ||
      ::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) !=
          0) {
    return false;
  }
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  const int passed = mem.get();
  std::memcpy(CMSG_DATA(c), &passed, sizeof passed);
  return send_nonblocking(fd, msg);
}

// journald is there when its socket is and takes the datagram; otherwise (no socket, or a queue
// that stays full) the message moves on to the next transport. Our own sender rather than
// sd_journal_sendv(), which blocks on a full queue.
bool send_journal(int priority, std::string_view message, std::span<const LogField> fields) {
  if (!is_socket(k_journal_socket)) {
    return false;
  }
  const UniqueFd fd = connect_datagram(k_journal_socket);
  if (!fd) {
    return false;
  }
  std::string payload;
  append_field(payload, "MESSAGE", message);
  append_field(payload, "PRIORITY", std::to_string(priority));
  append_field(payload, "SYSLOG_IDENTIFIER", g_ident);
  append_field(payload, "SYSLOG_FACILITY", std::to_string(LOG_DAEMON >> 3));
  for (const auto& f : fields) {
    append_field(payload, f.name, f.value);
  }
  iovec iov{payload.data(), payload.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (send_nonblocking(fd.get(), msg)) {
    return true;
  }
  return (errno == EMSGSIZE || errno == ENOBUFS) && send_journal_memfd(fd.get(), payload);
}

// One datagram to /dev/log in the format glibc's syslog() writes. Not syslog(3) itself: it
// cannot say whether anything was listening, and then the line must go to /dev/kmsg instead; and
// it blocks on a full queue (on systemd hosts /dev/log is journald's too).
bool send_syslog(int priority, std::string_view message) {
  const UniqueFd fd = connect_datagram(k_syslog_socket);
  if (!fd) {
    return false;
  }
  char stamp[32] = "";
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%h %e %T", &tm);
  std::string line = "<" + std::to_string(LOG_DAEMON | priority) + ">" + stamp + " " + g_ident +
                     "[" + std::to_string(::getpid()) + "]: " + std::string(message);
  iovec iov{line.data(), line.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  return send_nonblocking(fd.get(), msg);
}

// The kernel's log: readable with dmesg (and journalctl -k) even where no logger runs. The
// device is root's (0644), so it is opened in init_logging(), before the handler drops root.
int g_kmsg_fd = -1;

} // namespace

std::string kmsg_text(std::string_view message, std::string_view short_message, size_t room) {
  if (message.size() <= room) {
    return std::string(message);
  }
  if (!short_message.empty() && short_message.size() <= room) {
    return std::string(short_message);
  }
  const std::string_view text = short_message.empty() ? message : short_message;
  if (room <= k_kmsg_cut.size()) {
    return std::string(k_kmsg_cut.substr(1, room > 0 ? room - 1 : 0));
  }
  size_t keep = room - k_kmsg_cut.size();
  // Never inside a UTF-8 sequence: back up over continuation bytes.
  while (keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80) {
    --keep;
  }
  return std::string(text.substr(0, keep)) + std::string(k_kmsg_cut);
}

namespace {

bool send_kmsg(int priority, std::string_view message, std::string_view short_message) {
  if (g_kmsg_fd < 0) {
    return false;
  }
  std::string line = "<" + std::to_string(LOG_DAEMON | priority) + ">" + g_ident + "[" +
                     std::to_string(::getpid()) + "]: ";
  line += kmsg_text(message, short_message, k_kmsg_max - std::min(line.size(), k_kmsg_max / 2));
  // Without the newline the kernel keeps the record open for a continuation, and readers
  // (dmesg, journald) see it only when the next message arrives.
  line += '\n';
  // Each write() is one record. Callers pass printable text (common::printable), so no
  // control character reaches the kernel log.
  return ::write(g_kmsg_fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
}

void deliver(spdlog::level::level_enum level, std::string_view message,
             std::span<const LogField> fields, std::string_view short_message = {}) {
  const int priority = syslog_priority(level);
  // Each transport is tried in turn; a line no transport takes is dropped (the record holds
  // the crash whatever the log does).
  (void)(send_journal(priority, message, fields) || send_syslog(priority, message) ||
         send_kmsg(priority, message, short_message));
}

class SystemSink final : public spdlog::sinks::base_sink<std::mutex> {
protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    deliver(msg.level, std::string_view(msg.payload.data(), msg.payload.size()), {});
  }
  void flush_() override {}
};

} // namespace

// The exporter's stderr: one logfmt or JSON line per message, written with one write() so that
// lines of two threads never interleave. journald stamps what it reads; elsewhere (a terminal,
// a file, a container runtime) the line carries its own RFC 3339 time.
std::atomic<LogFormat> g_format{LogFormat::logfmt};

class StructuredSink final : public spdlog::sinks::base_sink<std::mutex> {
public:
  StructuredSink() : m_stamp(!stderr_is_journal()) {}

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string stamp;
    if (m_stamp) {
      const auto since = msg.time.time_since_epoch();
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since).count() % 1000;
      const time_t secs = std::chrono::system_clock::to_time_t(msg.time);
      struct tm tm {};
      gmtime_r(&secs, &tm);
      char buf[40];
      const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
      stamp = fmt::format("{}.{:03}Z", std::string_view(buf, n), ms);
    }
    std::string line = format_log_line(g_format.load(), msg.level, stamp,
                                       std::string_view(msg.payload.data(), msg.payload.size()));
    line += '\n';
    (void)write_all(STDERR_FILENO, line);
  }
  void flush_() override {}

private:
  bool m_stamp;
};

void set_log_format(LogFormat format) {
  g_format = format;
}

void init_logging(std::string_view ident, LogTarget target) {
  g_ident = ident;
  std::shared_ptr<spdlog::logger> logger;
  if (target == LogTarget::syslog) {
    g_system = true;
    if (g_kmsg_fd < 0) {
      g_kmsg_fd = ::open(k_kmsg, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    }
    logger = std::make_shared<spdlog::logger>(g_ident, std::make_shared<SystemSink>());
    logger->set_pattern("%v");
  } else {
    g_system = false;
    logger = std::make_shared<spdlog::logger>(g_ident, std::make_shared<StructuredSink>());
  }
  logger->set_level(spdlog::level::info);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

void log_event(spdlog::level::level_enum level, std::string_view message,
               std::span<const LogField> fields, std::string_view short_message) {
  if (!g_system) {
    spdlog::log(level, "{}", message);
    return;
  }
  deliver(level, message, fields, short_message);
}

void set_logger_wait(LoggerWait wait) {
  g_wait = wait;
}

} // namespace common
