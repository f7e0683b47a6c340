// The run: the handler's steps in order (declared in handler/steps.hpp, numbered as in
// docs/ARCHITECTURE.md) over one Context (handler/context.hpp), and its catch boundary.
#include "handler/handler.hpp"

#include "common/base/log.hpp"
#include "handler/admission.hpp"
#include "handler/context.hpp"
#include "handler/core_args.hpp"
#include "handler/runtime_report.hpp"
#include "handler/steps.hpp"
#include "process_core_version.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>

namespace handler {

namespace {

using common::CoreReason;

// Beyond capture_timeout + analysis_timeout: writing the record and the log line.
constexpr auto k_deadline_grace = std::chrono::seconds(5);

void print_usage() {
  std::fputs("Usage: process-core [OPTIONS] [--] HOSTNAME SIGNAL EXECUTABLE...\n"
             "Core dump handler, run by the kernel through /proc/sys/kernel/core_pattern:\n"
             "  |/usr/sbin/process-core -P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E\n"
             "Reads the core on stdin, stores it compressed with a JSON record.\n"
             "  --config FILE   configuration (default /etc/process-core/process-core.conf)\n"
             "  --store DIR     store root (overrides the configuration)\n"
             "  --version       print the version\n",
             stdout);
}

// The run's catch boundary: what threw is a warning, the kernel's dump is stopped (with
// core_pipe_limit > 0 that also releases the crashed process), and the record is written with
// the core described as it is, or as an error when none was committed.
int record_internal_error(Context& ctx, const std::string& what) {
  ctx.warnings.push_back("internal error: " + what);
  ctx.input.reset();
  if (ctx.record.core.path.empty()) { // a committed core stays described as it is
    ctx.record.core.present = false;
    ctx.record.core.reason = CoreReason::error;
    if (ctx.record.core.error.empty()) {
      ctx.record.core.error = "internal error: " + what;
    }
  }
  try {
    // A capture that threw left its rate-limit reservation behind: it is over, either way.
    if (ctx.reservation) {
      release_reservation(ctx.exe_dir.get(), ctx.record.id, std::move(ctx.reservation));
    }
    return commit_record(ctx);
  } catch (...) {
    return 1;
  }
}

} // namespace

int run(const std::vector<std::string>& args) {
  Context ctx;
  try {
    secure_process(ctx);                      // 1. secure: fds, not dumpable, no new privileges
    ctx.args = common::parse_core_args(args); // 2. parse: the core_pattern table
    if (ctx.args.help || ctx.args.version) {
      if (ctx.args.help) {
        print_usage();
      } else {
        std::puts("process-core " PROCESS_CORE_VERSION);
      }
      return 0;
    }
    ctx.warnings = ctx.args.warnings;
    common::init_logging("process-core", common::LogTarget::syslog);
    load_configuration(ctx); // 3. configure: config file, --store; then the watchdog
    // Whatever blocks from here on, the run ends by this time.
    const auto hard_deadline = ctx.started + std::chrono::seconds(ctx.config.capture_timeout) +
                               std::chrono::seconds(ctx.config.analysis_timeout) + k_deadline_grace;
    ctx.watchdog = std::make_unique<Watchdog>();
    identify_crash(ctx);      // 4. identify: record identity, /proc before draining
    admit_capture(ctx);       // 5. admit: a capture slot, or the lean path (pipe closed)
    open_store_and_drop(ctx); // 6. open the store as root, drop privileges
    {
      // Before 7: what the watchdog writes if the capture never ends; the run's own record
      // starts over.
      const common::CoreInfo before = ctx.record.core;
      common::CoreInfo& core = ctx.record.core;
      core.present = false;
      core.reason = CoreReason::error;
      core.error = "the handler reached its deadline before the core was read";
      arm_watchdog(ctx, hard_deadline,
                   "stopped at the deadline (capture_timeout + analysis_timeout) before the "
                   "capture ended");
      ctx.record.core = before;
    }
    capture_core(ctx); // 7. capture: policy, stream, compress, commit the core
    // End of 7: the runtime's own report, beside the record, and in the watchdog's record too.
    keep_runtime_report(ctx);
    // Before 8: what the watchdog writes if the analysis never ends.
    arm_watchdog(ctx,
                 std::min(hard_deadline, std::chrono::steady_clock::now() +
                                             std::chrono::seconds(ctx.config.analysis_timeout)),
                 "analysis stopped at analysis_timeout (" +
                     seconds_text(ctx.config.analysis_timeout) +
                     "): crash site and mappings may be missing");
    analyze_crash(ctx);        // 8. analyze: crash site, backtraces, symbols, mapped files
    grant_owner_access(ctx);   // 9. grant: the crashing user may read their own crash
    return commit_record(ctx); // 10. record and log: the record, the reservation, one line
  } catch (const std::exception& e) {
    // Nothing above should throw (allocation failure aside); if it does, the crash still gets
    // its record when the store is open.
    return record_internal_error(ctx, e.what());
  } catch (...) {
    return record_internal_error(ctx, "an exception of unknown type");
  }
}

} // namespace handler
