#include "common/base/log.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION // the fields say where; CODE_FILE would only add noise
#include <systemd/sd-journal.h>

#include <atomic>
#include <cstring>
#include <ctime>
#include <mutex>
#include <vector>

namespace common {

namespace {

constexpr const char* k_journal_socket = "/run/systemd/journal/socket";
constexpr const char* k_syslog_socket = "/dev/log";
constexpr const char* k_kmsg = "/dev/kmsg";
// The kernel keeps at most 1024 bytes per record (LOG_LINE_MAX minus its prefix); longer
// writes are cut by it anyway, so cut first, on our terms.
constexpr size_t k_kmsg_max = 976;

std::string g_ident = "process-core";
bool g_system = false;
std::atomic<LogTransport> g_last{LogTransport::none};

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

// journald is there when its socket is; sd_journal_sendv() fails otherwise (or when it does not
// answer), and the message moves on to the next transport.
bool send_journal(int priority, std::string_view message, std::span<const LogField> fields) {
  if (!is_socket(k_journal_socket)) {
    return false;
  }
  std::vector<std::string> items;
  items.reserve(fields.size() + 4);
  items.push_back("MESSAGE=" + std::string(message));
  items.push_back("PRIORITY=" + std::to_string(priority));
  items.push_back("SYSLOG_IDENTIFIER=" + g_ident);
  items.push_back("SYSLOG_FACILITY=" + std::to_string(LOG_DAEMON >> 3));
  for (const auto& f : fields) {
    items.push_back(f.name + "=" + f.value);
  }
  std::vector<iovec> iov;
  for (auto& i : items) {
    iov.push_back({i.data(), i.size()});
  }
  return sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0;
}

// One datagram to /dev/log in the format glibc's syslog() writes. Not syslog(3) itself: it
// cannot say whether anything was listening, and then the line must go to /dev/kmsg instead.
bool send_syslog(int priority, std::string_view message) {
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, k_syslog_socket, sizeof addr.sun_path - 1);
  char stamp[32] = "";
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%h %e %T", &tm);
  const std::string line = "<" + std::to_string(LOG_DAEMON | priority) + ">" + stamp + " " +
                           g_ident + "[" + std::to_string(::getpid()) +
                           "]: " + std::string(message);
  const bool ok =
      ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
  ::close(fd);
  return ok;
}

// The kernel's log: readable with dmesg (and journalctl -k) even where no logger runs. The
// device is root's (0644), so it is opened in init_logging(), before the handler drops root.
int g_kmsg_fd = -1;

bool send_kmsg(int priority, std::string_view message) {
  if (g_kmsg_fd < 0) {
    return false;
  }
  std::string line = "<" + std::to_string(LOG_DAEMON | priority) + ">" + g_ident + "[" +
                     std::to_string(::getpid()) + "]: " + std::string(message);
  if (line.size() > k_kmsg_max) {
    line.resize(k_kmsg_max);
  }
  // Without the newline the kernel keeps the record open for a continuation, and readers
  // (dmesg, journald) see it only when the next message arrives.
  line += '\n';
  // Each write() is one record. Callers pass printable text (common::printable), so no
  // control character reaches the kernel log.
  return ::write(g_kmsg_fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
}

void deliver(spdlog::level::level_enum level, std::string_view message,
             std::span<const LogField> fields) {
  const int priority = syslog_priority(level);
  if (send_journal(priority, message, fields)) {
    g_last = LogTransport::journal;
  } else if (send_syslog(priority, message)) {
    g_last = LogTransport::syslog;
  } else if (send_kmsg(priority, message)) {
    g_last = LogTransport::kmsg;
  } else {
    g_last = LogTransport::none;
  }
}

class SystemSink final : public spdlog::sinks::base_sink<std::mutex> {
protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    deliver(msg.level, std::string_view(msg.payload.data(), msg.payload.size()), {});
  }
  void flush_() override {}
};

} // namespace

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
    logger = std::make_shared<spdlog::logger>(g_ident,
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%n: %l: %v");
  }
  logger->set_level(spdlog::level::info);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

void log_event(spdlog::level::level_enum level, std::string_view message,
               std::span<const LogField> fields) {
  if (!g_system) {
    spdlog::log(level, "{}", message);
    return;
  }
  deliver(level, message, fields);
}

} // namespace common
