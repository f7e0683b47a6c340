// The retention policy: which cores and records `corectl vacuum` removes, and removing them.
//
// Records are the history (and feed the crash counters), cores are the bulk. So:
// 1. Records go beyond `max_records` (newest kept) or `max_record_age`, always through the
//    ledger (retire_records), so processcore_coredumps_total never goes down. Their cores go
//    with them.
// 2. Then cores go, records kept, while the store (cores and records) exceeds max_use or the
//    file system's free space is below keep_free. As systemd-coredump does, the user (the
//    record's uid) whose cores take the most bytes pays first, so one user's crash loop cannot
//    push out everyone else's cores. Within that user the order keeps rare cores: the OLDEST
//    core of the (host, executable) that currently holds the MOST cores; ties go to the
//    executable whose oldest core is older, then to the smaller (host, executable) name. A crash
//    loop that left 500 cores is thinned to the level of everything else before any one-off
//    core goes, and the last core of an executable goes only when every executable of that user
//    is down to one.
// 3. Records too take disk: when the store is still over a limit with every core gone, records
//    are retired (through the ledger, like 1) in the same order, by record bytes.
// With upload configured (upload_url), what the uploader has not sent yet is spared, since the
// store's copy is the only one: a record not yet uploaded is not retired by 1 (it is small, and
// the next vacuum after its upload retires it); in 2 the cores already uploaded, or that the
// upload policy never sends, go first, and a core still to upload goes only when the quota
// cannot be met otherwise: its record then says `core.removed_before_upload`. In 3 likewise the
// records already uploaded go first.
#pragma once

#include "common/base/error.hpp"
#include "common/config/config.hpp"
#include "common/store/store.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace common {

// One record of the store as retention sees it.
struct RetentionEntry {
  std::string host; // store components
  std::string exe;
  std::string id;
  int64_t time = 0;          // crash time, seconds since the epoch
  uint64_t core_bytes = 0;   // allocated bytes of <id>.core.zst; 0 when there is none
  uint64_t record_bytes = 0; // allocated bytes of <id>.json
  // The record's uid: whose crash it is (nullopt: unknown).
  std::optional<int64_t> uid = std::nullopt;
  // Allocated bytes of <id>.report, the runtime's own crash report: it holds the process's
  // memory as the core does, so it is removed with the core and weighs with it.
  uint64_t report_bytes = 0;
  // Upload is configured and the uploader is still to send this crash's core (it will, by its
  // policy) or its record: see the header's rule. A missing or broken upload state counts as
  // not sent.
  bool core_awaiting_upload = false;
  bool record_awaiting_upload = false;
};

// What removing an entry's core frees: the core and the runtime's report beside it.
inline uint64_t image_bytes(const RetentionEntry& e) {
  return e.core_bytes + e.report_bytes;
}

// The file system and the moment the policy looks at.
struct RetentionFacts {
  uint64_t fs_total = 0;
  uint64_t fs_available = 0;
  int64_t now = 0;
};

// Why retention removes something; `asked` is corectl vacuum aimed by filters or matches.
enum class RemovalCause { max_records, max_record_age, max_use, keep_free, asked };
std::string_view to_string(RemovalCause c);

struct RetentionStep {
  size_t entry = 0; // index into the entries given to plan_retention
  RemovalCause cause = RemovalCause::max_use;
  // What goes is still awaiting upload: a core (remove_core() marks its record so), or, among
  // retirements, the record itself.
  bool before_upload = false;
};

struct RetentionPlan {
  std::vector<RetentionStep> retire;       // records (and their cores) to retire
  std::vector<RetentionStep> remove_cores; // cores to remove, records kept
  uint64_t core_bytes_before = 0;          // bytes of the cores and reports, before and after
  uint64_t core_bytes_after = 0;
  uint64_t record_bytes_before = 0; // bytes of the records before and after the plan
  uint64_t record_bytes_after = 0;
  uint64_t max_use = 0; // resolved limits (bytes)
  uint64_t keep_free = 0;
};

// Resolved limits cap percentages at 4 GiB, like systemd-coredump's MaxUse/KeepFree.
inline constexpr uint64_t k_percent_cap = 4ULL << 30;

// Decides what to remove; pure, so tests state the policy exactly.
RetentionPlan plan_retention(const Config& config, const std::vector<RetentionEntry>& entries,
                             const RetentionFacts& facts);

// Removes one core and keeps its record: the record is first rewritten atomically with
// core.removed = `removed_at` (and core.removed_before_upload = true when `before_upload`) (owner,
// group, mode and ACL preserved, with no chown() when the caller owns it; every other field
// unchanged), then the core is unlinked. Where the sandbox keeps a new file from getting the old
// one's owner or ACL, the record is rewritten in place. A crash in between leaves a record saying
// "removed" beside a core that the next vacuum removes; never a record that points at a core that
// is gone.
Expected<void> remove_core(const Store& store, const RetentionEntry& entry,
                           const std::string& removed_at, bool before_upload = false);

// A file retention removes that no record accounts for.
struct Orphan {
  std::string path;   // relative to the store root
  uint64_t bytes = 0; // allocated
};

// Cores without a record (a handler killed between committing the core and its record) and
// hidden temporaries (left where O_TMPFILE is unsupported), older than `min_age` seconds so a
// capture still under way is never touched. Removes them unless `dry_run`. An error when the
// store root cannot be listed; directories below that cannot be are skipped and listed.
struct OrphanSweep {
  std::vector<Orphan> orphans; // removed (or, with dry_run, that would be)
  std::vector<Error> failed;   // directories that could not be opened or listed
};
Expected<OrphanSweep> remove_orphans(const Store& store, int64_t now, int64_t min_age,
                                     bool dry_run);

} // namespace common
