#include "cli/corectl.hpp"

#include "cli/context.hpp"
#include "cli/exit.hpp"
#include "cli/output/pager.hpp"
#include "cli/remote/access.hpp"
#include "cli/verbs/verbs.hpp"
#include "common/base/escape.hpp"
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

// 3. With --remote, the fleet's bucket instead: reached at the verb's first request.
Exit open_remote(Context& ctx) {
  auto access = remote_access(*ctx.opts.remote, ctx.config);
  if (!access) {
    return access.error();
  }
  ctx.remote.emplace(std::move(*access));
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
  // parse_options() knows only the verbs of the table.
  const Verb* verb = find_verb(ctx.opts.verb);
  if (verb == nullptr) {
    return static_cast<int>(report(Exit::usage, "Unknown verb '" + ctx.opts.verb + "'"));
  }

  // 2. Configuration, 3. the store or the bucket, for the verbs that read it.
  if (ctx.opts.remote) {
    if (verb->remote == Remote::no) {
      return static_cast<int>(report(Exit::usage, "--remote works with list, info, groups, dump "
                                                  "and debug, not " +
                                                      ctx.opts.verb));
    }
    if (ctx.opts.file || ctx.opts.store) {
      return static_cast<int>(
          report(Exit::usage, std::string("--remote reads a bucket, not ") +
                                  (ctx.opts.file ? "a core given with --file" : "a store")));
    }
    if (auto e = load_configuration(ctx); e != Exit::ok) {
      return static_cast<int>(e);
    }
    if (auto e = open_remote(ctx); e != Exit::ok) {
      return static_cast<int>(e);
    }
  } else if (verb->needs_store == NeedsStore::yes && !ctx.opts.file) {
    // A core given with --file is not in any store.
    if (auto e = load_configuration(ctx); e != Exit::ok) {
      return static_cast<int>(e);
    }
    if (auto e = open_store(ctx); e != Exit::ok) {
      return static_cast<int>(e);
    }
  }

  // 4. Long output goes through a pager on a terminal (after Term::detect saw the terminal).
  Pager pager;
  if (!ctx.opts.no_pager && verb->uses_pager == UsesPager::yes) {
    pager.start();
  }

  // 5. The verb.
  Exit e = verb->run(ctx);
  std::fflush(stdout);
  if (std::ferror(stdout) && e == Exit::ok) {
    e = errno == EPIPE ? Exit::ok : report(Exit::failure, "Failed to write output");
  }
  pager.finish();
  return static_cast<int>(e);
}

} // namespace cli
