// The read verbs: list, groups, info.
#include "cli/corectl.hpp"
#include "cli/enrich.hpp"
#include "cli/match.hpp"
#include "cli/pager.hpp"
#include "cli/when.hpp"
#include "common/base/signals.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>

namespace cli {

namespace {

using nlohmann::json;

// One object: a line (short) or indented (pretty).
void print_json(const json& j, JsonMode mode) {
  // JSON escapes C0 controls but passes C1 ones (U+009B is CSI to some terminals) and bidi
  // overrides through: on a terminal, everything beyond ASCII is written as \uNNNN.
  const bool ascii = paging() || ::isatty(STDOUT_FILENO) == 1;
  const std::string text =
      j.dump(mode == JsonMode::pretty ? 2 : -1, ' ', ascii, json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
}

Legend legend(const Options& o) {
  return o.no_legend ? Legend::hide : Legend::show;
}

Exit nothing_matched() {
  std::fputs("No crashes found.\n", stderr);
  return Exit::no_match;
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

// list --list-values=FIELD: the distinct values of one field, for shell completion. printable()
// keeps each value on one line (a hostile name with a line break would be two completions).
Exit print_values(const Catalog& cat, const std::string& field) {
  std::string (*value)(const Crash&, size_t) = nullptr;
  if (field == "ids") {
    value = [](const Crash& c, size_t abbrev) { return c.id.substr(0, abbrev); };
  } else if (field == "exes") {
    value = [](const Crash& c, size_t) { return c.executable; };
  } else if (field == "comms") {
    value = [](const Crash& c, size_t) { return c.comm; };
  } else if (field == "hosts") {
    value = [](const Crash& c, size_t) { return c.hostname; };
  } else {
    return report(Exit::usage, "--list-values takes ids, exes, comms or hosts");
  }
  std::set<std::string> values;
  for (const auto& c : cat.crashes) {
    if (std::string v = value(c, cat.id_abbrev); !v.empty()) {
      values.insert(printable(v));
    }
  }
  for (const auto& v : values) {
    std::printf("%s\n", v.c_str());
  }
  return Exit::ok;
}

} // namespace

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

Exit cmd_list(Context& ctx) {
  auto cat = load(ctx);
  if (!cat) {
    return cat.error();
  }
  if (ctx.opts.values) {
    return print_values(*cat, *ctx.opts.values);
  }
  auto& crashes = cat->crashes;
  limit_and_order(crashes, ctx.opts);
  if (crashes.empty()) {
    return nothing_matched();
  }
  if (ctx.opts.json != JsonMode::off) {
    // The records themselves, exactly as stored, so scripts get every field.
    Exit worst = Exit::ok;
    for (const auto& c : crashes) {
      auto full = read_record(*ctx.store, {c.host_dir, c.exe_dir, c.id});
      if (!full) {
        worst = report(Exit::failure, full.error().message);
        continue;
      }
      print_json(full->json, ctx.opts.json);
    }
    return worst;
  }
  print_list(ctx.term, crashes, cat->id_abbrev, legend(ctx.opts));
  return Exit::ok;
}

Exit cmd_groups(Context& ctx) {
  auto cat = load(ctx);
  if (!cat) {
    return cat.error();
  }
  auto groups = group_crashes(cat->crashes);
  limit_and_order(groups, ctx.opts);
  if (groups.empty()) {
    return nothing_matched();
  }
  if (ctx.opts.json != JsonMode::off) {
    for (const auto& g : groups) {
      print_json(
          {
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
          },
          ctx.opts.json);
    }
    return Exit::ok;
  }
  print_groups(ctx.term, groups, legend(ctx.opts));
  return Exit::ok;
}

// Prints one record for info; `first` separates records with a blank line.
void show_record(Context& ctx, const Located& where, FullRecord& full, bool& first) {
  if (ctx.opts.json != JsonMode::off) {
    print_json(full.json, ctx.opts.json);
    return;
  }
  if (!first) {
    std::fputs("\n", stdout);
  }
  first = false;
  const std::string core = common::core_relpath(where.host_dir, where.exe_dir, where.id);
  struct stat st {};
  const bool exists = ::fstatat(ctx.store->fd(), core.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  // With debuginfod servers configured, frames the handler could not name get names and
  // lines here, after the fact (the handler never uses the network).
  enrich_with_debuginfod(full.record.crash, full.record.mappings);
  print_info(ctx.term, full, ctx.store->root(), exists);
}

// An id word as given, without ID= (match.hpp says which words are ids).
std::string id_of(const std::string& word) {
  const size_t eq = word.find('=');
  return eq == std::string::npos ? word : word.substr(eq + 1);
}

Exit cmd_info(Context& ctx) {
  const Options& o = ctx.opts;
  bool first = true;
  Exit worst = Exit::ok;
  if (only_ids(o.matches) && !o.has_filter_options()) {
    // Ids alone: each is looked up by name (fast, and ambiguous or unknown ids say so).
    for (const auto& word : o.matches) {
      auto found = find_record(ctx, id_of(word));
      if (!found) {
        worst = std::max(worst, found.error());
        continue;
      }
      show_record(ctx, found->first, found->second, first);
    }
    return worst;
  }
  auto cat = load(ctx);
  if (!cat) {
    return cat.error();
  }
  auto& crashes = cat->crashes;
  // Like coredumpctl: without any match, the newest crash.
  if (o.matches.empty() && !o.has_filter_options() && !o.limit && !crashes.empty()) {
    crashes.erase(crashes.begin(), crashes.end() - 1);
  }
  limit_and_order(crashes, o);
  if (crashes.empty()) {
    return nothing_matched();
  }
  for (const auto& c : crashes) {
    const Located where{c.host_dir, c.exe_dir, c.id};
    auto full = read_record(*ctx.store, where);
    if (!full) {
      worst =
          std::max(worst, report(full.error().sys_errno == EACCES ? Exit::denied : Exit::failure,
                                 full.error().message));
      continue;
    }
    show_record(ctx, where, *full, first);
  }
  return worst;
}

std::expected<std::pair<Located, FullRecord>, Exit> select_record(Context& ctx) {
  const Options& o = ctx.opts;
  if (o.matches.size() == 1 && only_ids(o.matches) && !o.has_filter_options()) {
    return find_record(ctx, id_of(o.matches.front()));
  }
  auto cat = load(ctx);
  if (!cat) {
    return std::unexpected(cat.error());
  }
  if (cat->crashes.empty()) {
    return std::unexpected(nothing_matched());
  }
  const Crash& newest = cat->crashes.back();
  // Say which one was taken, as coredumpctl does: a match can select more than the user meant.
  std::fprintf(stderr, "corectl: %s %s, %s, pid %s, %s (the newest of %zu)\n",
               ctx.opts.verb == "debug" ? "Debugging" : "Dumping", newest.id.c_str(),
               local_time(newest.time).c_str(),
               newest.pid ? std::to_string(*newest.pid).c_str() : "?",
               printable(newest.executable).c_str(), cat->crashes.size());
  const Located where{newest.host_dir, newest.exe_dir, newest.id};
  auto full = read_record(*ctx.store, where);
  if (!full) {
    return std::unexpected(report(full.error().sys_errno == EACCES ? Exit::denied : Exit::failure,
                                  full.error().message));
  }
  return std::pair{where, std::move(*full)};
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
