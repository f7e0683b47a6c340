// vacuum: the retention policy (common/store/retention.hpp) applied now, saying what it removes.
#include "cli/context.hpp"
#include "cli/output/render.hpp"
#include "cli/verbs/select.hpp"
#include "cli/verbs/verbs.hpp"
#include "common/store/ledger.hpp"
#include "common/store/retention.hpp"
#include "common/store/upload_state.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <optional>

namespace cli {

namespace {
// A core without a record younger than this may still be getting its record (the handler
// analyses the crash between the two): only older ones are orphans.
constexpr int64_t k_orphan_min_age = 600;
} // namespace

namespace {

std::string describe(const common::RetentionEntry& e, const Crash& c) {
  return c.id + "  " + local_time(c.time) + "  " + printable(c.hostname) + "  " +
         printable(c.executable) +
         (common::image_bytes(e) > 0 ? "  " + human_size(common::image_bytes(e)) : "");
}

// What a core removal takes: the core (with the runtime's report beside it, if any), or the
// report alone where no core was kept.
const char* image_noun(const common::RetentionEntry& e) {
  return e.core_bytes > 0 ? "core" : "runtime report";
}

// What the uploader still has to send of one crash, when upload is configured (see
// retention.hpp). `state_dir` is the uploader's state directory (nullopt: none yet, so nothing
// is uploaded). Its files are the uploader's, read as untrusted: a missing or broken state is
// "not uploaded", which only makes retention keep more.
void mark_awaiting_upload(const common::Store& store, const common::Config& config,
                          const std::optional<common::UniqueFd>& state_dir, const Crash& c,
                          common::RetentionEntry& e) {
  const auto progress = state_dir ? common::read_upload_progress(state_dir->get(), c.id)
                                  : std::optional<common::UploadProgress>();
  e.record_awaiting_upload = !progress || !progress->record_done;
  // Only the core goes up (a runtime report alone never does), and only by the policy.
  if (e.core_bytes == 0 || config.upload_cores == "never" ||
      (progress && progress->core != common::UploadCoreState::pending)) {
    return;
  }
  if (!config.upload_privileged_cores) {
    // A root-only core is never sent then: read the record only for these few candidates.
    auto full = read_record(store, {c.host_dir, c.exe_dir, c.id});
    if (full && full->record.core.access == common::CoreAccess::root_only) {
      return;
    }
  }
  e.core_awaiting_upload = true;
}

} // namespace

namespace {

// The crashes that filters or matches aim vacuum at ("vacuum --exe X -U 7d", systemd's
// long-asked vacuum by executable, signal, user and age): their cores go whatever the quota,
// their records stay (marked removed), so counters and lists are unchanged.
common::RetentionPlan aimed_plan(const common::Store& store, const common::Config& config,
                                 const std::vector<common::RetentionEntry>& entries,
                                 const Catalog& cat, const Filter& filter, uint64_t fs_total) {
  common::RetentionPlan plan;
  plan.max_use = config.max_use.resolve(fs_total, common::k_percent_cap);
  plan.keep_free = config.keep_free.resolve(fs_total, common::k_percent_cap);
  for (size_t i = 0; i < entries.size(); ++i) {
    plan.core_bytes_before += common::image_bytes(entries[i]);
    plan.record_bytes_before += entries[i].record_bytes;
    if (common::image_bytes(entries[i]) > 0 && selects(store, filter, cat.crashes[i])) {
      plan.remove_cores.push_back(
          {i, common::RemovalCause::asked, entries[i].core_awaiting_upload});
    } else {
      plan.core_bytes_after += common::image_bytes(entries[i]);
    }
  }
  plan.record_bytes_after = plan.record_bytes_before;
  return plan;
}

} // namespace

Exit cmd_vacuum(Context& ctx) {
  const bool dry = ctx.opts.dry_run;
  const bool aimed = !ctx.opts.matches.empty() || ctx.opts.has_filter_options();
  const auto filter = make_filter(ctx.opts);
  if (!filter) {
    return report(Exit::usage, filter.error());
  }
  const common::Store& store = *ctx.store;
  // Fresh from the records: deletions must not be decided on a cached view.
  Catalog cat = load_catalog(store, Filter{}, Cache::no);
  if (cat.problems.denied + cat.problems.unreadable > 0) {
    // Deciding on part of the store would remove the wrong cores: refuse.
    return report(cat.problems.denied > 0 ? Exit::denied : Exit::failure,
                  "Cannot read the whole store, not vacuuming: " + cat.problems.first);
  }
  if (cat.problems.malformed > 0) {
    // Bad entries (a record that does not parse, a symlink or FIFO in its place) are the store
    // owner's doing: left alone and reported, while the rest of the store is vacuumed.
    std::fprintf(stderr, "corectl: warning: skipping %zu malformed or foreign entr%s (first: %s)\n",
                 cat.problems.malformed, cat.problems.malformed == 1 ? "y" : "ies",
                 printable(cat.problems.first).c_str());
  }
  auto space = common::fs_space(store.fd());
  if (!space) {
    return report(Exit::failure, space.error().message);
  }
  const std::string now_text = common::format_time(std::time(nullptr));

  // With upload configured, what the uploader has not sent is spared (retention.hpp).
  const bool uploading = !ctx.config.upload_url.empty();
  std::optional<common::UniqueFd> upload_state;
  if (uploading) {
    if (auto d = common::open_upload_state_dir(ctx.config.upload_state_dir)) {
      upload_state = std::move(*d);
    } else if (d.error().sys_errno != ENOENT) {
      // Unreadable is not "uploaded": every crash counts as still to send, the safe side.
      std::fprintf(stderr,
                   "corectl: warning: cannot read the upload state, counting nothing as "
                   "uploaded: %s\n",
                   printable(d.error().message).c_str());
    }
  }

  std::vector<common::RetentionEntry> entries;
  entries.reserve(cat.crashes.size());
  Exit result = Exit::ok;
  // What was really removed (or, with --dry-run, would be): the summary counts only these.
  size_t cores_removed = 0;
  uint64_t swept_bytes = 0;  // interrupted removals and orphans, outside the plan
  uint64_t policy_bytes = 0; // cores the plan's retirements and removals took
  for (const auto& c : cat.crashes) {
    common::RetentionEntry e{c.host_dir, c.exe_dir, c.id, c.time, 0, 0, c.uid};
    struct stat record_st {};
    const std::string record_rel = common::record_relpath(c.host_dir, c.exe_dir, c.id);
    if (::fstatat(store.fd(), record_rel.c_str(), &record_st, AT_SYMLINK_NOFOLLOW) == 0) {
      e.record_bytes = static_cast<uint64_t>(record_st.st_blocks) * 512;
    }
    struct stat report_st {};
    const std::string report_rel = common::report_relpath(c.host_dir, c.exe_dir, c.id);
    if (::fstatat(store.fd(), report_rel.c_str(), &report_st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(report_st.st_mode)) {
      e.report_bytes = static_cast<uint64_t>(report_st.st_blocks) * 512;
    }
    if (c.core_file) {
      struct stat st {};
      const std::string rel = common::core_relpath(c.host_dir, c.exe_dir, c.id);
      if (::fstatat(store.fd(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        e.core_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
      }
      // A record already marked removed beside its core: an earlier vacuum stopped between the
      // two steps. Finish it whatever the quota says.
      if (c.core_removed) {
        std::printf("%s core %s (finishing an interrupted removal)\n",
                    dry ? "Would remove" : "Removing", describe(e, c).c_str());
        if (auto r = dry ? common::Expected<void>() : common::remove_core(store, e, now_text); !r) {
          result = report(Exit::failure, r.error().message);
        } else {
          space->available += common::image_bytes(e);
          swept_bytes += common::image_bytes(e);
          ++cores_removed;
        }
        // A failed removal is reported, not retried by quota in this run: its record already
        // says removed, so the quota below must not count on it either way.
        e.core_bytes = 0;
        e.report_bytes = 0;
      }
    }
    if (uploading) {
      mark_awaiting_upload(store, ctx.config, upload_state, c, e);
    }
    entries.push_back(std::move(e));
  }

  // Files no record accounts for are removed whatever the quota says: nothing else would ever
  // remove them, and they would count against max_use forever.
  auto sweep = common::remove_orphans(store, static_cast<int64_t>(std::time(nullptr)),
                                      k_orphan_min_age, dry);
  if (!sweep) {
    result = report(Exit::failure, sweep.error().message + ", not looking for orphans");
  } else {
    for (const auto& o : sweep->orphans) {
      std::printf("%s %s (%s, no record)\n", dry ? "Would remove" : "Removing",
                  printable(o.path).c_str(), human_size(o.bytes).c_str());
      space->available += o.bytes;
      swept_bytes += o.bytes;
      ++cores_removed;
    }
    for (const auto& failure : sweep->failed) {
      result = report(Exit::failure, failure.message + ", not looking for orphans there");
    }
  }

  const auto plan = aimed ? aimed_plan(store, ctx.config, entries, cat, *filter, space->total)
                          : common::plan_retention(ctx.config, entries,
                                                   {space->total, space->available,
                                                    static_cast<int64_t>(std::time(nullptr))});

  // Records first (through the ledger, so the crash counters never go down), then cores.
  std::vector<common::RetireItem> retire;
  for (const auto& step : plan.retire) {
    const auto& e = entries[step.entry];
    const auto& c = cat.crashes[step.entry];
    std::printf("%s record %s: %s%s\n", dry ? "Would retire" : "Retiring", describe(e, c).c_str(),
                std::string(common::to_string(step.cause)).c_str(),
                step.before_upload ? " (before it was uploaded)" : "");
    auto full = read_record(store, {c.host_dir, c.exe_dir, c.id});
    if (!full) {
      result = report(Exit::failure, full.error().message + ", keeping it");
      continue;
    }
    retire.push_back({e.host, e.exe, e.id, common::series_of(full->record), e.time});
  }
  size_t records_removed = dry ? retire.size() : 0;
  if (!dry && !retire.empty()) {
    if (auto n = common::retire_records(store, retire); !n) {
      result = report(Exit::failure, n.error().message);
    } else {
      records_removed = *n;
    }
  }
  // Retired records take their cores with them; how many of those went is not reported back,
  // so the bytes count the plan's only when every record was retired.
  if (records_removed == plan.retire.size()) {
    for (const auto& step : plan.retire) {
      policy_bytes += common::image_bytes(entries[step.entry]);
    }
  }
  for (const auto& step : plan.remove_cores) {
    const auto& e = entries[step.entry];
    std::printf("%s %s %s: %s%s\n", dry ? "Would remove" : "Removing", image_noun(e),
                describe(e, cat.crashes[step.entry]).c_str(),
                std::string(common::to_string(step.cause)).c_str(),
                step.before_upload ? " (before it was uploaded)" : "");
    if (auto r = dry ? common::Expected<void>()
                     : common::remove_core(store, e, now_text, step.before_upload);
        !r) {
      result = report(Exit::failure, r.error().message);
    } else {
      policy_bytes += common::image_bytes(e);
      cores_removed += e.core_bytes > 0 ? 1 : 0;
    }
  }

  if (!dry && (!retire.empty() || !plan.remove_cores.empty())) {
    // The handler's usage estimate now overstates the store: have the next crash measure it.
    ::unlinkat(store.fd(), common::k_usage_name, 0);
  }
  // The plan's starting point already leaves out the interrupted removals and the orphans.
  // Retired records' own bytes count only when every planned retirement happened.
  const uint64_t record_bytes_freed = records_removed == plan.retire.size()
                                          ? plan.record_bytes_before - plan.record_bytes_after
                                          : 0;
  std::printf("%s %zu record(s) and %zu core(s), %s. Store now %s (max_use %s); "
              "free space %s (keep_free %s).\n",
              dry ? "Would remove" : "Removed", records_removed, cores_removed,
              human_size(swept_bytes + policy_bytes + record_bytes_freed).c_str(),
              human_size(plan.core_bytes_before - policy_bytes + plan.record_bytes_before -
                         record_bytes_freed)
                  .c_str(),
              human_size(plan.max_use).c_str(),
              human_size(space->available + policy_bytes + record_bytes_freed).c_str(),
              human_size(plan.keep_free).c_str());
  if (!dry) {
    refresh_index(
        store, IndexMissing::build); // the directories vacuum left alone are indexed again at once
  }
  return result;
}

} // namespace cli
