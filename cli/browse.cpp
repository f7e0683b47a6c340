// The read verbs: list, groups, info.
#include "cli/corectl.hpp"
#include "cli/enrich.hpp"
#include "common/signals.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace cli {

namespace {

using nlohmann::json;

void print_json_line(const json& j) {
  const std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
}

// Builds the filter from the options; a value that does not parse is a usage error.
std::expected<Filter, std::string> make_filter(const Options& o) {
  Filter f;
  f.hosts = o.hosts;
  f.executables = o.exes;
  for (const auto& s : o.signals) {
    auto n = common::parse_signal(s);
    if (!n) {
      return std::unexpected("unknown signal '" + s + "'");
    }
    f.signals.push_back(*n);
  }
  const auto now = static_cast<int64_t>(std::time(nullptr));
  for (auto [text, field] : {std::pair{&o.since, &f.since}, std::pair{&o.until, &f.until}}) {
    if (*text) {
      *field = parse_when(**text, now);
      if (!*field) {
        return std::unexpected("cannot read the time '" + **text +
                               "' (try 2h, 3d, 2026-11-22 or 2026-11-22T10:30:00Z)");
      }
    }
  }
  return f;
}

// Loads what the filter selects and reports unreadable parts: a user who may not read the store
// gets an error, not an empty list; partial access is a warning beside the partial list.
std::expected<Catalog, Exit> load(Context& ctx) {
  auto filter = make_filter(ctx.opts);
  if (!filter) {
    return std::unexpected(report(Exit::usage, filter.error()));
  }
  Catalog cat = load_catalog(*ctx.store, *filter);
  const auto& p = cat.problems;
  if (p.denied > 0 && cat.crashes.empty()) {
    return std::unexpected(report(
        Exit::denied, p.first + " (crash records are readable to root and the store's group)"));
  }
  if (p.denied + p.unreadable > 0) {
    std::fprintf(stderr,
                 "corectl: warning: %zu part(s) of the store could not be read, the "
                 "list is incomplete: %s\n",
                 p.denied + p.unreadable, p.first.c_str());
  }
  if (p.malformed > 0) {
    std::fprintf(stderr, "corectl: warning: %zu malformed record(s) skipped (first: %s)\n",
                 p.malformed, p.first.c_str());
  }
  return cat;
}

// -n keeps the newest N; -r puts the newest first. Works on anything ordered oldest first.
template <typename T>
void limit_and_order(std::vector<T>& items, const Options& o) {
  if (o.limit && items.size() > *o.limit) {
    items.erase(items.begin(), items.end() - static_cast<std::ptrdiff_t>(*o.limit));
  }
  if (o.reverse) {
    std::reverse(items.begin(), items.end());
  }
}

Exit lookup_failure(const LookupFailure& f) {
  switch (f.kind) {
  case LookupError::bad_prefix:
    return report(Exit::usage, f.message);
  case LookupError::not_found:
    return report(Exit::not_found, f.message);
  case LookupError::denied:
    return report(Exit::denied, f.message);
  case LookupError::ambiguous: {
    std::string msg = f.message + "; it matches:";
    for (const auto& c : f.candidates) {
      msg += "\n  " + c.id + "  " + printable(c.host_dir + "/" + c.exe_dir);
    }
    return report(Exit::usage, msg);
  }
  }
  return Exit::failure;
}

} // namespace

Exit cmd_list(Context& ctx) {
  auto cat = load(ctx);
  if (!cat) {
    return cat.error();
  }
  auto& crashes = cat->crashes;
  limit_and_order(crashes, ctx.opts);
  if (ctx.opts.json) {
    // The records themselves, exactly as stored (one per line), so scripts get every field.
    Exit worst = Exit::ok;
    for (const auto& c : crashes) {
      auto full = read_record(*ctx.store, {c.host_dir, c.exe_dir, c.id});
      if (!full) {
        worst = report(Exit::failure, full.error().message);
        continue;
      }
      print_json_line(full->json);
    }
    return worst;
  }
  if (crashes.empty()) {
    std::fputs("No crashes found.\n", stderr);
    return Exit::ok;
  }
  print_list(ctx.term, crashes, cat->id_abbrev);
  return Exit::ok;
}

Exit cmd_groups(Context& ctx) {
  auto cat = load(ctx);
  if (!cat) {
    return cat.error();
  }
  auto groups = group_crashes(cat->crashes);
  limit_and_order(groups, ctx.opts);
  if (ctx.opts.json) {
    for (const auto& g : groups) {
      print_json_line({
          {"signature", g.signature.empty() ? json(nullptr) : json(g.signature)},
          // Without a signature, crashes group by executable and signal: say so explicitly.
          {"grouped_by", g.signature.empty() ? "executable+signal" : "signature"},
          {"count", g.count},
          {"first", common::format_time(g.first)},
          {"last", common::format_time(g.last)},
          {"last_id", g.last_id},
          {"hosts", g.hosts},
          {"executables", g.executables},
          {"signal", g.signal},
          {"signal_name", g.signal_name},
          {"site", g.site.empty() ? json(nullptr) : json(g.site)},
      });
    }
    return Exit::ok;
  }
  if (groups.empty()) {
    std::fputs("No crashes found.\n", stderr);
    return Exit::ok;
  }
  print_groups(ctx.term, groups);
  return Exit::ok;
}

Exit cmd_info(Context& ctx) {
  if (ctx.opts.args.empty()) {
    return report(Exit::usage, "info needs at least one record id");
  }
  Exit worst = Exit::ok;
  bool first = true;
  for (const auto& prefix : ctx.opts.args) {
    auto where = resolve_id(*ctx.store, prefix);
    if (!where) {
      worst = std::max(worst, lookup_failure(where.error()));
      continue;
    }
    auto full = read_record(*ctx.store, *where);
    if (!full) {
      worst =
          std::max(worst, report(full.error().sys_errno == EACCES ? Exit::denied : Exit::failure,
                                 full.error().message));
      continue;
    }
    if (ctx.opts.json) {
      print_json_line(full->json);
      continue;
    }
    if (!first) {
      std::fputs("\n", stdout);
    }
    first = false;
    const std::string core = common::core_relpath(where->host_dir, where->exe_dir, where->id);
    struct stat st {};
    const bool exists = ::fstatat(ctx.store->fd(), core.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    // With debuginfod servers configured, frames the handler could not name get names and
    // lines here, after the fact (the handler never uses the network).
    enrich_with_debuginfod(full->record.crash, full->record.mappings);
    print_info(ctx.term, *full, ctx.store->root(), exists);
  }
  return worst;
}

std::expected<std::pair<Located, FullRecord>, Exit> find_record(Context& ctx,
                                                                const std::string& prefix) {
  auto where = resolve_id(*ctx.store, prefix);
  if (!where) {
    return std::unexpected(lookup_failure(where.error()));
  }
  auto full = read_record(*ctx.store, *where);
  if (!full) {
    return std::unexpected(report(full.error().sys_errno == EACCES ? Exit::denied : Exit::failure,
                                  full.error().message));
  }
  return std::pair{*where, std::move(*full)};
}

} // namespace cli
