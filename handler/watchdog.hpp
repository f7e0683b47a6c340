// The handler's last line of defence against time: whatever a step is blocked on (a hostile
// FUSE file behind a mapped path, a slow disk, a core that never ends), at the deadline the
// record the watchdog was last given is written and the handler exits.
#pragma once

#include "common/store/record.hpp"

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

  // What the watchdog writes and logs when it fires.
  struct Report {
    std::string name;        // the record's file name in the directory given to arm()
    std::string text;        // the record's JSON, as written
    common::Record record;   // the same record, for the crash line and its journal fields
    std::string what;        // which step ran out of time
    std::string record_path; // where the record goes, for the log
    std::string store_root;  // the store, for COREDUMP_FILENAME
  };

  // At `deadline`, unless the run has claimed the commit by then: write the report's record in
  // `dirfd` (skipped when dirfd < 0), log its crash line (handler/report: watchdog_log) and
  // _exit(). Each call replaces the previous one. `dirfd` must stay open until claim() or the
  // end of the process.
  void arm(Clock::time_point deadline, int dirfd, Report report);

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
  Report m_report;
  std::thread m_thread;
};

} // namespace handler
