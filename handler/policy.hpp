// The storage policy: whether a crash's core is stored, up to how many bytes, and how big its
// record may be. decide_policy() is the pure decision over facts (tests feed it directly);
// decide_with_reservation() gathers those facts from the store and counts the rate limit under
// the locks and reservations of handler/admission.
#pragma once

#include "common/config/config.hpp"
#include "common/store/record.hpp"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace common {
struct CoreArgs;
} // namespace common

namespace handler {

struct Context;

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

// The policy decision for this run (step 7), with the rate limit counted and this capture's
// place reserved (ctx.reservation) under the executable's lock. Needs ctx.exe_dir and ctx.store.
CoreBudget decide_with_reservation(Context& ctx);

} // namespace handler
