// The core_pattern helper, as a library: main() is a shim over run().
#pragma once

#include "common/base/config.hpp"
#include "common/base/fd.hpp"
#include "common/crash/elf_core.hpp"
#include "common/store/record.hpp"
#include "common/store/store.hpp"
#include "handler/core_args.hpp"
#include "handler/procinfo.hpp"
#include "handler/watchdog.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace handler {

// Everything one run knows, filled step by step.
struct Context {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  common::CoreArgs args;
  common::Config config;
  std::vector<std::string> warnings; // go into record.handler.warnings and the log
  common::UniqueFd input;            // the core pipe, moved above fd 2
  ProcFacts proc;
  std::optional<common::Store> store;
  common::UniqueFd exe_dir;     // <store>/<host>/<exe>, opened after dropping privileges
  common::UniqueFd runtime_dir; // root-only: capture slots and rate-limit locks
  common::UniqueFd slot;        // the capture slot held (flock), when not lean
  common::UniqueFd rate_lock;   // this executable's rate-limit lock file
  bool lean = false;            // no slot: record without reading the core
  common::UniqueFd reservation; // rate-limit reservation in exe_dir, released after the capture
  std::unique_ptr<Watchdog> watchdog;
  std::string store_error; // why the store cannot be written, if so
  bool running_as_root = false;
  common::CoreScanner scanner; // sees every byte of the core as it streams past
  common::Record record;
  std::optional<uid_t> reader; // the crashing user, granted read access by ACL (step 8)
};

// Runs one capture: `args` is argv without argv[0]. Returns the exit status; the kernel ignores
// it, tests and humans read it (0 = a record was written, 1 = it could only be logged).
int run(const std::vector<std::string>& args);

// The policy decision for the core, before any byte is read.
struct CoreBudget {
  bool store = false;                                     // store a core at all
  common::CoreReason reason = common::CoreReason::stored; // why not, when !store
  uint64_t max_raw = 0;    // core bytes to store at most (max_core_size)
  uint64_t max_stored = 0; // compressed bytes at most (free space and quota)
  uint64_t keep_free = 0;  // resolved keep_free: checked again while storing
  common::CoreReason limit_reason = common::CoreReason::truncated; // what max_stored stands for
  std::string detail; // human explanation for the record and log
};

// Facts the policy looks at; separated from the file system for tests.
struct PolicyInput {
  std::optional<uint64_t> rlimit; // %c
  uint64_t page_size = 4096;
  uint64_t fs_available = 0;
  uint64_t fs_total = 0;
  uint64_t store_usage = 0;
  unsigned recent_cores = 0; // cores of this executable within the rate-limit interval
};
CoreBudget decide_policy(const common::Config& config, const PolicyInput& in);

} // namespace handler
