// The handler's steps, in the order run() takes them and with the numbers docs/ARCHITECTURE.md
// uses ("One crash, step by step"). Each works on the run's Context (handler/context.hpp).
#pragma once

#include "handler/context.hpp"
#include "handler/watchdog.hpp"

#include <string>

namespace handler {

// 1. Secure (handler/setup): fds, not dumpable, no new privileges.
void secure_process(Context& ctx);
// 2. Parse: common::parse_core_args (handler/core_args), the core_pattern table.
// 3. Configure (handler/setup): the configuration file, --store; run() then starts the watchdog.
void load_configuration(Context& ctx);
// 4. Identify (handler/identify): the record's identity, /proc while the kernel still blocks.
void identify_crash(Context& ctx);
// 5. Admit (handler/admission): a capture slot, or the lean path (pipe closed).
void admit_capture(Context& ctx);
// 6. Open the store (handler/open_store) as root, then drop privileges.
void open_store_and_drop(Context& ctx);
// 7. Capture (handler/stream): the policy (handler/policy), stream, compress, commit the core.
void capture_core(Context& ctx);
// 8. Analyze (handler/analyze): crash site, backtraces, symbols, mapped files.
void analyze_crash(Context& ctx);
// 9. Grant (handler/grant): the crashing user may read their own crash.
void grant_owner_access(Context& ctx);
// 10. Record and log (handler/commit): the record, the rate-limit reservation, one log line.
int commit_record(Context& ctx);

// Before 7 and before 8 (handler/commit): what the watchdog writes if the run is still going at
// `deadline`, with `what` (the step that ran out of time) among its warnings.
void arm_watchdog(Context& ctx, Watchdog::Clock::time_point deadline, const std::string& what);

} // namespace handler
