#include "cli/corectl.hpp"

#include "cli/install.hpp"
#include "cli/pager.hpp"
#include "common/base/signals.hpp"
#include "process_core_version.hpp"

#include <cerrno>
#include <cstdio>
#include <ctime>

namespace cli {

namespace {

// 2. Configuration: --config (must exist), else the system file when present; --store wins.
Exit load_configuration(Context& ctx) {
  const bool explicit_path = ctx.opts.config.has_value();
  auto loaded = common::load_config(ctx.opts.config.value_or(common::k_default_config_path),
                                    explicit_path ? common::MissingOk::no : common::MissingOk::yes);
  if (!loaded) {
    return report(Exit::failure, loaded.error().message);
  }
  ctx.config = std::move(loaded->config);
  for (const auto& w : loaded->warnings) {
    std::fprintf(stderr, "corectl: warning: config %s\n", w.c_str());
  }
  if (ctx.opts.store) {
    ctx.config.store = *ctx.opts.store;
  }
  return Exit::ok;
}

// 3. The store: a missing store and an unreadable one are different answers for an operator.
Exit open_store(Context& ctx) {
  auto store = common::Store::open(ctx.config.store);
  if (!store) {
    const int err = store.error().sys_errno;
    if (err == ENOENT) {
      return report(Exit::no_store, "Store " + common::quoted(ctx.config.store) +
                                        " does not exist (no crash captured yet, or another "
                                        "store: see --store and --config)");
    }
    if (err == EACCES || err == EPERM) {
      return report(Exit::denied, store.error().message +
                                      " (crash records are readable to root and the "
                                      "store's group; ask to be added to it, or use sudo)");
    }
    return report(Exit::failure, store.error().message);
  }
  ctx.store.emplace(std::move(*store));
  return Exit::ok;
}

} // namespace

Exit report(Exit code, const std::string& message) {
  // Messages quote record fields and store paths: escaped here, once, line by line (a message
  // may list several lines on purpose).
  std::string out;
  size_t start = 0;
  for (size_t nl = message.find('\n');; nl = message.find('\n', start)) {
    out += common::printable(std::string_view(message).substr(start, nl - start));
    if (nl == std::string::npos) {
      break;
    }
    out += '\n';
    start = nl + 1;
  }
  std::fprintf(stderr, "corectl: %s\n", out.c_str());
  return code;
}

int run(const std::vector<std::string>& argv) {
  Context ctx;
  // 1. The command line.
  auto opts = parse_options(argv);
  if (!opts) {
    return static_cast<int>(report(Exit::usage, opts.error()));
  }
  ctx.opts = std::move(*opts);
  if (!ctx.opts.help_text.empty()) {
    std::fputs(ctx.opts.help_text.c_str(), stdout);
    return 0;
  }
  if (ctx.opts.version) {
    std::printf("corectl %s\n", PROCESS_CORE_VERSION);
    return 0;
  }
  ctx.term = Term::detect(ctx.opts.colour);

  // install/uninstall change the kernel, not the store.
  if (ctx.opts.verb == "install" || ctx.opts.verb == "uninstall") {
    InstallOptions io{ctx.opts.handler, ctx.opts.sysctl_dir, ctx.opts.state_dir, ctx.opts.proc_sys,
                      ctx.opts.kernel_release};
    return static_cast<int>(ctx.opts.verb == "install" ? install(io) : uninstall(io));
  }

  // 2. Configuration, 3. the store.
  if (auto e = load_configuration(ctx); e != Exit::ok) {
    return static_cast<int>(e);
  }
  if (auto e = open_store(ctx); e != Exit::ok) {
    return static_cast<int>(e);
  }

  // 4. Long output goes through a pager on a terminal (after Term::detect saw the terminal).
  const std::string& verb = ctx.opts.verb;
  Pager pager;
  if (!ctx.opts.no_pager && (verb == "list" || verb == "groups" || verb == "info")) {
    pager.start();
  }

  // 5. The verb.
  Exit e = Exit::usage;
  if (verb == "list") {
    e = cmd_list(ctx);
  } else if (verb == "groups") {
    e = cmd_groups(ctx);
  } else if (verb == "info") {
    e = cmd_info(ctx);
  } else if (verb == "dump") {
    e = cmd_dump(ctx);
  } else if (verb == "debug") {
    e = cmd_debug(ctx);
  } else if (verb == "vacuum") {
    e = cmd_vacuum(ctx);
  } else if (verb == "remove") {
    e = cmd_remove(ctx);
  }
  std::fflush(stdout);
  if (std::ferror(stdout) && e == Exit::ok) {
    e = errno == EPIPE ? Exit::ok : report(Exit::failure, "Failed to write output");
  }
  pager.finish();
  return static_cast<int>(e);
}

} // namespace cli
