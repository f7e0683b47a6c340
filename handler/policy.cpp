#include "handler/policy.hpp"

#include "common/base/units.hpp"
#include "common/store/store.hpp"
#include "handler/admission.hpp"
#include "handler/context.hpp"
#include "handler/core_args.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace handler {

namespace {

using common::CoreReason;

// How stale the store's usage estimate may be before a crash walks the store again.
constexpr unsigned k_usage_max_age = 300;
// Below this much room a core is not worth starting (it would be cut to nothing useful).
constexpr uint64_t k_min_room = 1 << 20;
// zstd's frame epilogue and the record must still fit after the compressed data stops.
constexpr uint64_t k_room_margin = 256 << 10;
// How long a capture waits for its executable's rate-limit lock (held by other handlers for one
// walk of the store) before it gives up the core.
constexpr auto k_rate_lock_wait = std::chrono::seconds(2);

} // namespace

RecordSize record_size_for(const common::CoreInfo& core) {
  const bool no_room = core.reason == CoreReason::disk_full || core.reason == CoreReason::quota;
  return no_room && !core.present ? RecordSize::minimal : RecordSize::full;
}

CoreBudget decide_policy(const common::Config& config, const PolicyInput& in) {
  CoreBudget b;
  b.max_raw = config.max_core_size;
  // systemd's defaults cap both percentages at 4 GiB; ours are the same.
  const uint64_t keep_free = config.keep_free.resolve(in.fs_total, 4ULL << 30);
  const uint64_t max_use = config.max_use.resolve(in.fs_total, 4ULL << 30);
  b.keep_free = keep_free;
  const uint64_t free_room = in.fs_available > keep_free ? in.fs_available - keep_free : 0;
  const uint64_t quota_room = max_use > in.store_usage ? max_use - in.store_usage : 0;
  // Decided before the reasons below: a rate-limited crash loop on a full disk writes records
  // too.
  b.record =
      free_room < k_min_room || quota_room < k_min_room ? RecordSize::minimal : RecordSize::full;
  // honour_rlimit_core = no: the host, not the process, decides (containers start with 0).
  if (config.honour_rlimit_core && in.rlimit && *in.rlimit < in.page_size) {
    b.reason = CoreReason::rlimit;
    b.detail = "RLIMIT_CORE is " + std::to_string(*in.rlimit) + ": the process asked for no core";
    return b;
  }
  if (config.max_core_size < in.page_size) {
    b.reason = CoreReason::too_large;
    b.detail = "max_core_size is " + std::to_string(config.max_core_size) + " bytes";
    return b;
  }
  if (config.rate_limit_burst > 0 && in.recent_cores >= config.rate_limit_burst) {
    b.reason = CoreReason::rate_limited;
    b.detail = std::to_string(in.recent_cores) + " cores of this executable in the last " +
               std::to_string(config.rate_limit_interval) + " s";
    return b;
  }
  if (free_room < k_min_room) {
    b.reason = CoreReason::disk_full;
    b.detail = "free space " + common::human_size(in.fs_available) + " is at or below keep_free " +
               common::human_size(keep_free);
    return b;
  }
  if (quota_room < k_min_room) {
    b.reason = CoreReason::quota;
    b.detail = "store uses " + common::human_size(in.store_usage) + " of max_use " +
               common::human_size(max_use);
    return b;
  }
  b.store = true;
  b.reason = CoreReason::stored;
  if (free_room <= quota_room) {
    b.max_stored = free_room - k_room_margin;
    b.limit_reason = CoreReason::disk_full;
    b.detail = "cut to keep " + common::human_size(keep_free) + " free (keep_free)";
  } else {
    b.max_stored = quota_room - k_room_margin;
    b.limit_reason = CoreReason::quota;
    b.detail = "cut at the store quota max_use " + common::human_size(max_use);
  }
  return b;
}

// Whose rate-limit budget a crash uses: the uid of %u, none without it (then the budget is the
// executable's: NT_PRPSINFO's uid is the crasher's own namespace's and proves nothing here).
static std::optional<uid_t> rate_owner(const common::CoreArgs& args) {
  if (!args.uid || *args.uid < 0 || *args.uid > static_cast<int64_t>(static_cast<uid_t>(-1))) {
    return std::nullopt;
  }
  return static_cast<uid_t>(*args.uid);
}

// The policy decision, with the rate limit counted and this capture's place reserved under
// the executable's lock: concurrent crashes of one executable then never store more than the
// burst (counting committed cores alone, all of them would see the same count).
CoreBudget decide_with_reservation(Context& ctx) {
  PolicyInput in;
  in.rlimit = ctx.args.rlimit;
  in.page_size = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (auto space = common::fs_space(ctx.exe_dir.get())) {
    in.fs_available = space->available;
    in.fs_total = space->total;
  }
  in.store_usage = ctx.store->usage_estimate(k_usage_max_age);
  if (ctx.config.rate_limit_burst == 0) {
    return decide_policy(ctx.config, in);
  }
  LockGuard guard;
  if (ctx.rate_lock) {
    guard = lock_within(ctx.rate_lock.get(), k_rate_lock_wait);
    if (!guard) {
      CoreBudget b;
      b.reason = CoreReason::rate_limited;
      b.detail = "the rate-limit lock of this executable stayed busy";
      return b;
    }
  }
  // The budget is the crashing user's (%u) for this executable: a user's crash loop never uses up
  // another user's cores, and a system user's budget is its own too.
  const std::optional<uid_t> owner = rate_owner(ctx.args);
  in.recent_cores =
      recent_cores(*ctx.store, ctx.record.store_exe, owner, ctx.config.rate_limit_interval);
  CoreBudget budget = decide_policy(ctx.config, in);
  if (budget.store) {
    auto reserved = reserve_core(ctx.exe_dir.get(), ctx.record.id, owner);
    if (!reserved) {
      budget.store = false;
      budget.reason =
          reserved.error().sys_errno == ENOSPC ? CoreReason::disk_full : CoreReason::error;
      budget.detail = reserved.error().message;
    } else {
      ctx.reservation = std::move(*reserved);
    }
  }
  return budget;
}

} // namespace handler
