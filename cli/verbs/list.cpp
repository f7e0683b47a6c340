// The list view: list (groups: groups.cpp).
#include "cli/context.hpp"
#include "cli/output/fields.hpp"
#include "cli/output/render.hpp"
#include "cli/verbs/select.hpp"
#include "cli/verbs/verbs.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>
#include <set>

namespace cli {

namespace {

using nlohmann::json;

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
  } else if (field == "signatures") {
    value = [](const Crash& c, size_t) { return c.signature; };
  } else {
    return report(Exit::usage, "--list-values takes ids, exes, comms, hosts or signatures");
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

// Calls `fn` with each crash's whole record; one that cannot be read is reported and makes the
// result a failure, the others are still printed.
template <typename F>
Exit for_each_record(Context& ctx, const std::vector<Crash>& crashes, F fn) {
  Exit worst = Exit::ok;
  for (const auto& c : crashes) {
    auto full = read_record(ctx, {c.host_dir, c.exe_dir, c.id});
    if (!full) {
      worst = report(Exit::failure, full.error().message);
      continue;
    }
    fn(c, *full);
  }
  return worst;
}

// list -F FIELD: the field of each crash, one per line; crashes without it print nothing.
Exit print_field(Context& ctx, const std::vector<Crash>& crashes, const std::string& field) {
  return for_each_record(ctx, crashes, [&](const Crash& c, const FullRecord& full) {
    // The stored core's path while it is there, from the directory the record is in.
    std::string core;
    if (ctx.remote) {
      if (full.record.core.present && !full.record.core.removed) {
        core = ctx.remote->url_of({c.host_dir, c.exe_dir, c.id}, RemoteBucket::Suffix::core);
      }
    } else if (full.record.core.present && !full.record.core.removed) {
      const std::string rel = common::core_relpath(c.host_dir, c.exe_dir, c.id);
      struct stat st {};
      if (::fstatat(ctx.store->fd(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        core = ctx.store->root() + "/" + rel;
      }
    }
    if (auto value = field_value(full, field, core)) {
      std::printf("%s\n", value->c_str());
    }
  });
}

} // namespace

Exit cmd_list(Context& ctx) {
  if (ctx.opts.field && !is_field_name(*ctx.opts.field)) {
    return report(Exit::usage, "-F takes " + std::string(k_coredump_fields) +
                                   ", or a record key (id, executable, crash.signature …), not '" +
                                   ctx.opts.field->substr(0, 64) + "'");
  }
  auto cat = load_selected(ctx);
  if (!cat) {
    return cat.error();
  }
  if (ctx.opts.values) {
    return print_values(*cat, *ctx.opts.values);
  }
  auto& crashes = cat->crashes;
  limit_and_order(crashes, ctx.opts);
  if (crashes.empty()) {
    return nothing_matched(ctx.opts);
  }
  if (ctx.opts.field) {
    return print_field(ctx, crashes, *ctx.opts.field);
  }
  if (ctx.opts.json != JsonMode::off) {
    // The records themselves, exactly as stored, so scripts get every field.
    return for_each_record(ctx, crashes, [&](const Crash&, const FullRecord& full) {
      print_json(full.json, ctx.opts.json == JsonMode::pretty);
    });
  }
  print_list(ctx.term, crashes, cat->id_abbrev, legend_of(ctx.opts));
  return Exit::ok;
}

} // namespace cli
