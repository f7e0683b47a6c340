// The run and its Context: everything one capture knows, filled step by step. The steps are
// numbered once, in run() (handler/handler.cpp) and docs/ARCHITECTURE.md, and declared in
// handler/steps.hpp; each field below says which step fills it, as systemd-coredump's context
// names each field's specifier.
#pragma once

#include "common/base/fd.hpp"
#include "common/config/config.hpp"
#include "common/crash/elf_core.hpp"
#include "common/store/record.hpp"
#include "common/store/store.hpp"
#include "handler/core_args.hpp"
#include "handler/crashed_process.hpp"
#include "handler/policy.hpp"
#include "handler/procinfo.hpp"
#include "handler/python_walk.hpp"
#include "handler/runtime_report.hpp"
#include "handler/watchdog.hpp"

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace handler {

struct Context {
  // Inputs: the kernel's arguments and what the process was started as.
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now(); // deadlines
  bool running_as_root = false;                                                     // 1. secure
  common::CoreArgs args; // 2. parse: argv, the core_pattern specifiers (%P %u %g %s %t %c %d %F…)

  // Settings.
  common::Config config; // 3. configure: the configuration file, then --store

  // Descriptors, each with the step that opens it.
  common::UniqueFd input; // 1. the core pipe, moved above fd 2; closed by 5 (lean) or 7 (drained)
  CrashedProcess crashed; // 4. taken while the process exists; every later reader of it uses it
  common::UniqueFd runtime_dir; // 5. admit: root-only, capture slots and rate-limit locks
  common::UniqueFd slot;        // 5. the capture slot held (flock), when not lean
  common::UniqueFd user_slot;   // 5. the crashing uid's capture slot held (OFD lock), when not lean
  common::UniqueFd rate_lock;   // 5. this executable's rate-limit lock file
  std::optional<common::Store> store; // 6. open the store: opened as root
  common::UniqueFd exe_dir;           // 6. <store>/<host>/<exe>, opened after dropping privileges
  // 7. capture: rate-limit reservation in exe_dir, released by 7 (no core) or 10 (the record)
  common::UniqueFd reservation;
  // 3. started; armed before 7 and before 8, claimed by 10. Declared after exe_dir, which it
  // writes into, so that it is destroyed first.
  std::unique_ptr<Watchdog> watchdog;

  // Intermediate results.
  ProcFacts proc;              // 4. identify: /proc of the crashed process, when verified
  bool lean = false;           // 5. no slot: record without reading the core
  std::string lean_reason;     // 5. which limit made the capture lean
  std::string store_error;     // 6. why the store cannot be written, if so
  common::CoreScanner scanner; // 7. sees every byte of the core as it streams past; read by 8
  RecordSize record_size = RecordSize::full; // 7. minimal when the store has no room
  std::optional<uid_t> reader;        // 9. grant: the crashing user, granted read access by ACL
  common::UniqueFd analysis_launcher; // 6. handler/analysis_launcher, when started as root; 8
  ReportReader report_reader; // 6. started as root (handler/runtime_report); collected after 7
  common::UniqueFd python_launcher; // 6. the same for the Python walk, when a CPython is mapped
  std::optional<PythonWalk> python_walk; // 6. its child, started after the drop; finished in 7
  bool python_walked = false;            // 7. the Python stacks were read (handler/python_walk)
  std::string perf_map; // 8. the crashed process's perf map, untrusted bytes for the analysis

  // Output.
  std::vector<std::string> warnings; // every step; go into record.handler.warnings and the log
  // 4. identity, 7. core, 8. crash site and mappings, 10. handler section; written by 10
  common::Record record;
};

inline double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since)
      .count();
}

inline std::string seconds_text(unsigned s) {
  return std::to_string(s) + " s";
}

} // namespace handler
