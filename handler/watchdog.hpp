// The handler's last line of defence against time: whatever a step is blocked on (a hostile
// FUSE file behind a mapped path, a slow disk, a core that never ends), at the deadline the
// record the watchdog was last given is written and the handler exits.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace handler {

class Watchdog {
public:
  using Clock = std::chrono::steady_clock;

  Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog();

  // At `deadline`, unless the run has claimed the commit by then: write `record` as `name` in
  // `dirfd` (skipped when dirfd < 0), log `log_line` at error level, and _exit(). Each call
  // replaces the previous one. `dirfd` must stay open until claim() or the end of the process.
  void arm(Clock::time_point deadline, int dirfd, std::string name, std::string record,
           std::string log_line);

  // The run writes its own record now. Returns false when the watchdog has fired: the process
  // is about to exit, and the caller must not write anything.
  bool claim();

private:
  void run();

  std::mutex m_mutex;
  std::condition_variable m_changed;
  bool m_armed = false;
  bool m_claimed = false;
  bool m_fired = false;
  bool m_stop = false;
  Clock::time_point m_deadline;
  int m_dirfd = -1;
  std::string m_name;
  std::string m_record;
  std::string m_log_line;
  std::thread m_thread;
};

} // namespace handler
