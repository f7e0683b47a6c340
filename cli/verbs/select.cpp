// Which crashes a verb works on: the filter of the options and matches, the catalog it selects,
// and single records found by id or as the newest match.
#include "cli/verbs/select.hpp"

#include "cli/catalog/match.hpp"
#include "cli/catalog/when.hpp"
#include "cli/output/render.hpp"
#include "common/base/signals.hpp"

#include <cstdio>
#include <ctime>

namespace cli {

namespace {

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

Exit nothing_matched(const Options& o) {
  if (!o.quiet) {
    std::fputs("No crashes found.\n", stderr);
  }
  return Exit::no_match;
}

bool selects(const common::Store& store, const Filter& filter, const Crash& c) {
  if (!filter.matches(c)) {
    return false;
  }
  if (filter.units.empty()) {
    return true;
  }
  // The unit is not in the summary: the record itself says (one bounded read, only for UNIT=).
  auto full = read_record(store, {c.host_dir, c.exe_dir, c.id});
  return full && filter.matches_unit(full->record.container);
}

common::Expected<FullRecord> read_record(const Context& ctx, const Located& where) {
  return ctx.remote ? ctx.remote->read_record(where) : read_record(*ctx.store, where);
}

std::expected<Catalog, Exit> load_selected(Context& ctx) {
  auto filter = make_filter(ctx.opts);
  if (!filter) {
    return std::unexpected(report(Exit::usage, filter.error()));
  }
  Catalog cat;
  if (ctx.remote) {
    auto loaded = ctx.remote->load_catalog(*filter);
    if (!loaded) {
      return std::unexpected(loaded.error());
    }
    cat = std::move(*loaded);
  } else {
    cat = load_catalog(*ctx.store, *filter);
  }
  if (!filter->units.empty()) {
    // The unit is not in the summary: the record itself says (one bounded read, only for UNIT=).
    std::erase_if(cat.crashes, [&](const Crash& c) {
      if (!filter->matches(c)) {
        return true;
      }
      auto full = read_record(ctx, {c.host_dir, c.exe_dir, c.id});
      return !full || !filter->matches_unit(full->record.container);
    });
  }
  const auto& p = cat.problems;
  if (p.denied > 0 && cat.crashes.empty() && p.readable_dirs == 0) {
    return std::unexpected(
        report(Exit::denied, p.first + " (crash records are readable to root, the store's "
                                       "group, and each user for their own crashes)"));
  }
  // Directories and records a user may not read are other users' crashes: skipped quietly, as
  // coredumpctl shows a user only theirs. Other read errors make the list incomplete.
  if (p.unreadable > 0 || (p.denied > 0 && p.readable_dirs == 0)) {
    std::fprintf(stderr,
                 "corectl: warning: %zu part(s) of the store could not be read, the "
                 "list is incomplete: %s\n",
                 p.denied + p.unreadable, printable(p.first).c_str());
  }
  if (p.malformed > 0) {
    std::fprintf(stderr, "corectl: warning: %zu malformed record(s) skipped (first: %s)\n",
                 p.malformed, printable(p.first).c_str());
  }
  return cat;
}

std::expected<Filter, std::string> make_filter(const Options& o) {
  Filter f;
  f.hosts = o.hosts;
  f.executables = o.exes;
  if (auto m = add_matches(o.matches, f); !m) {
    return std::unexpected(m.error());
  }
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
                               "' (try -2h, '2 hours ago', 08:00, 'yesterday 14:00', "
                               "2026-11-22 or 2026-11-22T10:30:00Z)");
      }
    }
  }
  return f;
}

std::string id_of(const std::string& word) {
  const size_t eq = word.find('=');
  return eq == std::string::npos ? word : word.substr(eq + 1);
}

std::expected<std::pair<Located, FullRecord>, Exit> select_record(Context& ctx) {
  const Options& o = ctx.opts;
  if (o.matches.size() == 1 && only_ids(o.matches) && !o.has_filter_options()) {
    return find_record(ctx, id_of(o.matches.front()));
  }
  auto cat = load_selected(ctx);
  if (!cat) {
    return std::unexpected(cat.error());
  }
  if (cat->crashes.empty()) {
    return std::unexpected(nothing_matched(o));
  }
  const Crash& newest = cat->crashes.back();
  // Say which one was taken, as coredumpctl does: a match can select more than the user meant.
  if (!o.quiet) {
    std::fprintf(stderr, "corectl: %s %s, %s, pid %s, %s (the newest of %zu)\n",
                 ctx.opts.verb == "debug" ? "Debugging" : "Dumping", newest.id.c_str(),
                 local_time(newest.time).c_str(),
                 newest.pid ? std::to_string(*newest.pid).c_str() : "?",
                 printable(newest.executable).c_str(), cat->crashes.size());
  }
  const Located where{newest.host_dir, newest.exe_dir, newest.id};
  auto full = read_record(ctx, where);
  if (!full) {
    return std::unexpected(report(full.error().sys_errno == EACCES ? Exit::denied : Exit::failure,
                                  full.error().message));
  }
  return std::pair{where, std::move(*full)};
}

std::expected<std::pair<Located, FullRecord>, Exit> find_record(Context& ctx,
                                                                const std::string& prefix) {
  if (ctx.remote) {
    // The ids of a bucket are in its index: loaded first, so that a bucket that cannot be read
    // says why, with its own exit status.
    if (auto ids = ctx.remote->load_ids(); !ids) {
      return std::unexpected(ids.error());
    }
  }
  auto where = ctx.remote ? ctx.remote->resolve_id(prefix) : resolve_id(*ctx.store, prefix);
  if (!where) {
    return std::unexpected(lookup_failure(where.error()));
  }
  auto full = read_record(ctx, *where);
  if (!full) {
    return std::unexpected(report(full.error().sys_errno == EACCES ? Exit::denied : Exit::failure,
                                  full.error().message));
  }
  return std::pair{*where, std::move(*full)};
}

} // namespace cli
