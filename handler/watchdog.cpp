#include "handler/watchdog.hpp"

#include "common/base/atomic_file.hpp"
#include "common/store/names.hpp"
#include "common/store/store.hpp"
#include "handler/report.hpp"

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

void Watchdog::arm(Clock::time_point deadline, int dirfd, Report report) {
  {
    std::lock_guard lock(m_mutex);
    m_armed = true;
    m_deadline = deadline;
    m_dirfd = dirfd;
    m_report = std::move(report);
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
  const Report report = m_report;
  lock.unlock();
  bool written = false;
  if (dirfd >= 0) {
    written =
        common::write_file_atomic(dirfd, report.name, report.text, common::k_file_mode).has_value();
  }
  // The same crash line as the run's own (journal fields, the short form for /dev/kmsg).
  emit(watchdog_log(report.record, report.what, report.record_path, report.store_root, written));
  spdlog::shutdown();
  // Not exit(): the run's thread still owns objects whose destructors would wait on it (the
  // capture's reader thread, a blocked read). The kernel closes the pipe and releases the slot.
  ::_exit(written ? 0 : 1);
}

} // namespace handler
