#include "handler/watchdog.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/escape.hpp"
#include "common/store/names.hpp"
#include "common/store/store.hpp"

#include <spdlog/spdlog.h>

#include <unistd.h>

namespace handler {

Watchdog::Watchdog() : m_thread([this] { run(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(m_mutex);
    m_stop = true;
  }
  m_changed.notify_all();
  m_thread.join();
}

void Watchdog::arm(Clock::time_point deadline, int dirfd, std::string name, std::string record,
                   std::string log_line) {
  {
    std::lock_guard lock(m_mutex);
    m_armed = true;
    m_deadline = deadline;
    m_dirfd = dirfd;
    m_name = std::move(name);
    m_record = std::move(record);
    m_log_line = std::move(log_line);
  }
  m_changed.notify_all();
}

bool Watchdog::claim() {
  std::lock_guard lock(m_mutex);
  if (m_fired) {
    return false;
  }
  m_claimed = true;
  m_changed.notify_all();
  return true;
}

void Watchdog::run() {
  std::unique_lock lock(m_mutex);
  for (;;) {
    if (m_stop || m_claimed) {
      return;
    }
    if (!m_armed) {
      m_changed.wait(lock);
      continue;
    }
    if (m_changed.wait_until(lock, m_deadline) != std::cv_status::timeout ||
        Clock::now() < m_deadline) {
      continue; // re-armed, claimed or stopped: look again
    }
    if (m_stop || m_claimed) {
      return;
    }
    m_fired = true;
    break;
  }
  // From here the run can no longer claim; it may still be inside a step, so everything used
  // here is our own copy.
  const int dirfd = m_dirfd;
  const std::string name = m_name;
  const std::string record = m_record;
  const std::string line = m_log_line;
  lock.unlock();
  bool written = false;
  if (dirfd >= 0) {
    written = common::write_file_atomic(dirfd, name, record, common::k_file_mode).has_value();
  }
  if (written) {
    spdlog::error("{}", common::printable(line));
  } else {
    spdlog::error("{} (record NOT written): {}", common::printable(line),
                  common::printable(record));
  }
  spdlog::shutdown();
  // Not exit(): the run's thread still owns objects whose destructors would wait on it (the
  // capture's reader thread, a blocked read). The kernel closes the pipe and releases the slot.
  ::_exit(written ? 0 : 1);
}

} // namespace handler
