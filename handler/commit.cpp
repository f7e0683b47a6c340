// Step 10 of the handler, the commit point: the record, the rate-limit reservation released, one
// log line. And what the watchdog writes instead when the run does not get there in time.
#include "common/base/atomic_file.hpp"
#include "common/store/acl.hpp"
#include "common/store/names.hpp"
#include "common/store/record_bound.hpp"
#include "handler/admission.hpp"
#include "handler/context.hpp"
#include "handler/report.hpp"
#include "handler/steps.hpp"

#include <spdlog/spdlog.h>

#include <unistd.h>

namespace handler {

namespace {

// A minimal record (RecordSize::minimal) is cut to this: the identity, the core section and a
// few warnings; the kernel's strings (cmdline, executable) are the bulk of it.
constexpr size_t k_minimal_record_max = 16 << 10;

// What is left of a record when the store has no room for it (see RecordSize): every crash
// still gets a record, but past keep_free or max_use a crash loop must not go on filling the disk
// with mapped-file lists and backtraces of up to k_record_max each.
void make_minimal(common::Record& r) {
  r.crash = nlohmann::json::object();
  r.mappings = nlohmann::json::array();
  r.handler.cut.push_back("minimal record: " + std::string(common::to_string(r.core.reason)) +
                          ", no crash site, backtraces or mapped files");
  common::bound_record(r, k_minimal_record_max);
}

} // namespace

// Gives the watchdog what to write if the run is still going at `deadline`: the record as it
// is now, with `what` (the step that ran out of time) among its warnings.
void arm_watchdog(Context& ctx, Watchdog::Clock::time_point deadline, const std::string& what) {
  Watchdog::Report report;
  report.record = ctx.record;
  common::Record& r = report.record;
  std::vector<std::string> warnings = ctx.warnings;
  warnings.push_back(what);
  stamp_record(r, warnings,
               std::chrono::duration<double, std::milli>(deadline - ctx.started).count());
  common::bound_record(r);
  report.name = r.id + std::string(common::k_record_suffix);
  report.text = common::to_json_text(r);
  report.what = what;
  report.record_path =
      ctx.config.store + "/" + common::record_relpath(r.store_host, r.store_exe, r.id);
  report.store_root = ctx.config.store;
  const int dirfd = ctx.exe_dir ? ctx.exe_dir.get() : -1;
  ctx.watchdog->arm(deadline, dirfd, std::move(report));
}

// 10. The record is the commit point; then one line in the log.
int commit_record(Context& ctx) {
  if (ctx.watchdog && !ctx.watchdog->claim()) {
    // The watchdog is writing the record it was given and ends the process.
    for (;;) {
      ::pause();
    }
  }
  common::Record& r = ctx.record;
  stamp_record(r, ctx.warnings, elapsed_ms(ctx.started));
  if (ctx.record_size == RecordSize::minimal) {
    make_minimal(r);
  }
  // Hundreds of mapped files with long names must not make a record no reader will load.
  common::bound_record(r);
  int status = 0;
  std::string where;
  if (ctx.exe_dir) {
    const std::string name = r.id + std::string(common::k_record_suffix);
    // The crashing user's ACL goes on before the record is linked in: it is never visible
    // without it.
    auto file = common::AtomicFile::create(ctx.exe_dir.get(), name, common::k_file_mode);
    common::Expected<void> w = file ? common::Expected<void>() : std::unexpected(file.error());
    if (w && ctx.reader) {
      if (auto g = common::grant_user_access(file->fd(), *ctx.reader, common::AclAccess::read);
          !g) {
        spdlog::warn("{}: Failed to let uid {} read the record: {}", r.id, *ctx.reader,
                     g.error().message);
      }
    }
    const std::string text = common::to_json_text(r);
    if (w) {
      w = file->write(text);
    }
    if (w) {
      w = file->commit();
    }
    if (w) {
      // Records take disk too and count toward max_use: the estimate follows them between walks.
      ctx.store->add_usage(text.size());
    }
    if (!w) {
      status = 1;
      where = "record NOT written (" + w.error().message + ")";
    } else {
      where = "record " + ctx.config.store + "/" +
              common::record_relpath(r.store_host, r.store_exe, r.id);
    }
  } else {
    status = 1;
    where = "record NOT written (" + ctx.store_error + ")";
  }
  // The record names the core's uid now (or never will): the core counts by itself from here.
  if (ctx.reservation) {
    release_reservation(ctx.exe_dir.get(), r.id, std::move(ctx.reservation));
  }
  log_crash(r, ctx.warnings, where, ctx.config.store, status == 0);
  return status;
}

} // namespace handler
