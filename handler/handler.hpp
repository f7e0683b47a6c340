// The core_pattern helper, as a library: main() is a shim over run().
#pragma once

#include "common/config/config.hpp"
#include "common/store/record.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace handler {

// Runs one capture: `args` is argv without argv[0]. Returns the exit status; the kernel ignores
// it, tests and humans read it (0 = a record was written, 1 = it could only be logged).
int run(const std::vector<std::string>& args);

// How much of the crash the record holds.
enum class RecordSize {
  full,    // everything: crash site, backtraces, mapped files (bounded by k_record_max)
  minimal, // identity, core section and warnings only (a few KiB)
};

// The policy decision for the core, before any byte is read.
struct CoreBudget {
  bool store = false;                                     // store a core at all
  common::CoreReason reason = common::CoreReason::stored; // why not, when !store
  uint64_t max_raw = 0;    // core bytes to store at most (max_core_size)
  uint64_t max_stored = 0; // compressed bytes at most (free space and quota)
  uint64_t keep_free = 0;  // resolved keep_free: checked again while storing
  common::CoreReason limit_reason = common::CoreReason::truncated; // what max_stored stands for
  std::string detail; // human explanation for the record and log
  // Minimal once free space is at keep_free or the store at max_use, whatever else was decided:
  // records count toward the same limits, and a crash always gets one.
  RecordSize record = RecordSize::full;
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

// After the capture: a crash whose core found no room on the way (ENOSPC, free space or quota
// reached while storing) gets a minimal record too.
RecordSize record_size_for(const common::CoreInfo& core);

} // namespace handler
