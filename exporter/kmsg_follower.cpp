#include "exporter/kmsg_follower.hpp"

#include "common/base/error.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace exporter {

namespace {

// /dev/kmsg hands out one record per read(), at most about 1 KiB of text (plus dictionary
// lines); a FIFO or file (tests) hands out lines in bulk, split below.
constexpr size_t k_read_size = 8192;
constexpr int k_poll_ms = 200;

} // namespace

std::string_view to_string(KernelLoss r) {
  switch (r) {
  case KernelLoss::pipe_limit:
    return "pipe_limit";
  case KernelLoss::pipe_failed:
    return "pipe_failed";
  case KernelLoss::other:
    return "other";
  }
  return "other";
}

std::optional<KernelLoss> classify_kernel_message(std::string_view m) {
  // A /dev/kmsg record: "6,1234,5678901,-;coredump: 1(x): …"; a dmesg line has no prefix.
  if (const size_t semi = m.find(';'); semi != std::string_view::npos && semi < 64 &&
                                       m.substr(0, semi).find(' ') == std::string_view::npos) {
    m.remove_prefix(semi + 1);
  }
  m = m.substr(0, m.find('\n')); // continuation lines (" SUBSYSTEM=…") are not the message
  // Only lines the kernel's coredump code writes: "coredump: PID(COMM): …" (6.x), or
  // "Pid PID(COMM) over core_pipe_limit" and "Core dump to |… pipe failed" (older). COMM is the
  // crasher's to choose, so the phrases are matched at the end of the line, never inside it.
  const bool ours = m.starts_with("coredump: ");
  if ((ours || m.starts_with("Pid ")) && (m.ends_with("over core_pipe_limit, skipping core dump") ||
                                          m.ends_with("over core_pipe_limit"))) {
    return KernelLoss::pipe_limit;
  }
  if ((ours || m.starts_with("Core dump to |")) && m.ends_with(" pipe failed")) {
    return KernelLoss::pipe_failed;
  }
  if (!ours) {
    return std::nullopt;
  }
  // The user's own choice, and advice about the settings: not lost dumps.
  if (m.ends_with("RLIMIT_CORE is set to 1, aborting core") ||
      m.find("Unsafe core_pattern") != std::string_view::npos) {
    return std::nullopt;
  }
  if (m.ends_with("skipping core dump") || m.ends_with("aborting core") || m.ends_with("failed")) {
    return KernelLoss::other;
  }
  return std::nullopt;
}

KmsgFollower::KmsgFollower(std::string path) : m_path(std::move(path)) {}

KmsgFollower::~KmsgFollower() {
  m_stop = true;
  if (m_thread.joinable()) {
    m_thread.join();
  }
  if (m_fd >= 0) {
    ::close(m_fd);
  }
}

bool KmsgFollower::start(std::string& error) {
  m_fd = ::open(m_path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (m_fd < 0) {
    error = common::Error::from_errno("Failed to open " + common::quoted(m_path), errno).message;
    return false;
  }
  // From the end: what the kernel logged before we started was counted by the exporter that
  // ran then (or happened while none ran, which a restart cannot tell apart).
  ::lseek(m_fd, 0, SEEK_END);
  m_thread = std::thread([this] { run(); });
  return true;
}

void KmsgFollower::take(std::string_view record) {
  if (auto r = classify_kernel_message(record)) {
    ++m_counts[static_cast<size_t>(*r)];
  }
}

void KmsgFollower::run() {
  std::string buf(k_read_size, '\0');
  std::string partial; // a FIFO line split across reads
  while (!m_stop) {
    pollfd p{m_fd, POLLIN, 0};
    if (::poll(&p, 1, k_poll_ms) <= 0) {
      continue;
    }
    const ssize_t n = ::read(m_fd, buf.data(), buf.size());
    if (n < 0) {
      // EPIPE: the ring buffer overwrote records we had not read; the next read goes on.
      if (errno == EPIPE || errno == EAGAIN || errno == EINTR) {
        continue;
      }
      return;
    }
    if (n == 0) {
      // A FIFO whose writer left (tests); /dev/kmsg never ends.
      std::this_thread::sleep_for(std::chrono::milliseconds(k_poll_ms));
      continue;
    }
    partial.append(buf.data(), static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
      take(std::string_view(partial).substr(start, nl - start));
    }
    partial.erase(0, start);
    if (partial.size() > k_read_size) {
      partial.clear(); // no newline in sight: not a log we understand
    }
  }
}

std::vector<prometheus::MetricFamily> KmsgFollower::Collect() const {
  prometheus::MetricFamily f;
  f.name = k_metric_kernel_lost;
  f.help = "Core dumps the kernel did not hand to process-core, from its log (/dev/kmsg): "
           "over core_pipe_limit, a handler that could not be started, other failures.";
  f.type = prometheus::MetricType::Counter;
  for (size_t i = 0; i < k_kernel_losses; ++i) {
    prometheus::ClientMetric m;
    m.label = {{"reason", std::string(to_string(static_cast<KernelLoss>(i)))}};
    m.counter.value = static_cast<double>(m_counts[i].load());
    f.metric.push_back(std::move(m));
  }
  return {f};
}

} // namespace exporter
