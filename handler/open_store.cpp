// Step 6 of the handler: the store opened as root, then root given up for good.
#include "common/base/escape.hpp"
#include "common/sandbox/analysis_launcher.hpp"
#include "common/store/store.hpp"
#include "handler/context.hpp"
#include "handler/privileges.hpp"
#include "handler/python_walk.hpp"
#include "handler/runtime_report.hpp"
#include "handler/steps.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

namespace handler {

namespace {

// The overflow uid/gid: what we become when the configured user does not exist.
constexpr uid_t k_nobody = 65534;

// Creates the store root if it is missing, owned by the store user (as tmpfiles.d would).
void ensure_store_root(Context& ctx, const std::optional<common::UserIds>& user) {
  struct stat st {};
  if (::stat(ctx.config.store.c_str(), &st) == 0) {
    return;
  }
  if (::mkdir(ctx.config.store.c_str(), common::k_dir_mode) != 0 && errno != EEXIST) {
    ctx.warnings.push_back("Failed to create store " + common::quoted(ctx.config.store) + ": " +
                           std::strerror(errno));
    return;
  }
  if (user && ::chown(ctx.config.store.c_str(), user->uid, user->gid) != 0) {
    ctx.warnings.push_back("Failed to chown store " + common::quoted(ctx.config.store) + ": " +
                           std::strerror(errno));
  }
}

} // namespace

// 6. Open the store as root, then give root up for good.
void open_store_and_drop(Context& ctx) {
  std::optional<common::UserIds> user;
  if (ctx.running_as_root && !ctx.config.user.empty()) {
    auto ids = common::lookup_user(ctx.config.user);
    if (ids && ids->uid == 0) {
      // Another name for root ("toor"): the cores would be root's files and the parsers would
      // run privileged. Same fallback as an unknown user.
      ctx.warnings.push_back("the store user " + common::quoted(ctx.config.user) +
                             " is root: continuing as nobody");
      user = common::UserIds{k_nobody, k_nobody};
    } else if (ids) {
      user = *ids;
    } else {
      // Fail closed: never parse hostile data as root, and never create store directories
      // that the real store user could not write later. nobody will most likely not be able
      // to write the store either; then the whole record goes to syslog.
      ctx.warnings.push_back(ids.error().message + ": continuing as nobody");
      user = common::UserIds{k_nobody, k_nobody};
    }
  }
  if (ctx.running_as_root) {
    ensure_store_root(ctx, user);
  }
  auto store = common::Store::open(ctx.config.store);
  if (!store) {
    ctx.store_error = store.error().message;
  } else {
    ctx.store.emplace(std::move(*store));
  }
  if (ctx.running_as_root) {
    const sandbox::AnalysisIds ids = sandbox::analysis_ids(
        ctx.args.uid, ctx.args.gid, user ? user->uid : 0, user ? user->gid : 0);
    if (auto launcher = sandbox::start_analysis_launcher(ids)) {
      ctx.analysis_launcher = std::move(*launcher);
    } else {
      ctx.warnings.push_back(launcher.error().message + ": the analysis runs as the store user");
    }
    // The Python walk during the stream has a child of its own, and a launcher of its own.
    if (ctx.config.python_stacks && !python_modules(ctx.crashed.maps()).empty()) {
      if (auto launcher = start_analysis_launcher(ids)) {
        ctx.python_launcher = std::move(*launcher);
      }
    }
  }
  // The runtime's own report, read as the crashing user while the core streams.
  start_runtime_report_reader(ctx);
  if (user) {
    if (auto r = common::drop_privileges(*user); !r) {
      // Refuse to go on as root with attacker-controlled data: record nothing rather than run
      // the parsers privileged. The log line still reports the crash.
      ctx.store.reset();
      ctx.store_error = r.error().message;
      return;
    }
  }
  // The Python walk's child starts now, as the store user with the launcher's ids, so that its
  // fork, sandbox and symbol reading are done while the core streams (handler/python_walk).
  if (ctx.config.python_stacks && (!ctx.running_as_root || ctx.python_launcher)) {
    if (auto walk = PythonWalk::start(ctx.crashed, ctx.python_launcher.get())) {
      ctx.python_walk.emplace(std::move(*walk));
    }
  }
  if (ctx.store) {
    auto dir = ctx.store->open_exe_dir(ctx.record.store_host, ctx.record.store_exe);
    if (!dir) {
      ctx.store_error = dir.error().message;
    } else {
      ctx.exe_dir = std::move(*dir);
    }
  }
}

} // namespace handler
