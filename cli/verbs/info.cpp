// info: everything the selected records say.
#include "cli/catalog/match.hpp"
#include "cli/context.hpp"
#include "cli/debuginfo/enrich.hpp"
#include "cli/output/render.hpp"
#include "cli/verbs/changes.hpp"
#include "cli/verbs/loose_core.hpp"
#include "cli/verbs/python_core.hpp"
#include "cli/verbs/select.hpp"
#include "cli/verbs/verbs.hpp"
#include "common/base/io.hpp"
#include "common/store/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>
#include <span>
#include <string>

namespace cli {

namespace {

// The first k_report_shown bytes of the stored runtime report, as untrusted as the record: no
// link followed, a regular file only, never blocking.
constexpr size_t k_report_shown = 64 << 10;
// The largest report read from a bucket (the handler keeps at most 256 KiB).
constexpr size_t k_remote_report_max = 1 << 20;

// The part of a report shown, and how many bytes are left out.
void show_report(std::string text, uint64_t size, InfoPlaces& places) {
  if (text.size() > k_report_shown) {
    text.resize(k_report_shown);
  }
  places.runtime_report_rest = size > text.size() ? size - text.size() : 0;
  places.runtime_report = std::move(text);
}

void read_runtime_report(int store, const std::string& rel, InfoPlaces& places) {
  const common::UniqueFd fd(
      ::openat(store, rel.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return;
  }
  std::string text(k_report_shown, '\0');
  const auto got =
      common::read_full(fd.get(), std::as_writable_bytes(std::span(text.data(), text.size())));
  if (!got) {
    return;
  }
  text.resize(*got);
  show_report(std::move(text), static_cast<uint64_t>(st.st_size), places);
}

// Prints one record for info: as JSON, or as text with the places `places_of()` gives (only
// then asked: they stat and read files or objects); `first` separates records with a blank line.
template <typename Places>
void print_record(Context& ctx, FullRecord& full, bool& first, Places places_of) {
  if (ctx.opts.json != JsonMode::off) {
    print_json(full.json, ctx.opts.json == JsonMode::pretty);
    return;
  }
  if (!first) {
    std::fputs("\n", stdout);
  }
  first = false;
  // With debuginfod servers configured, frames the handler could not name get names and
  // lines here, after the fact (the handler never uses the network).
  enrich_with_debuginfod(full.record.crash, full.record.mappings);
  print_info(ctx.term, full, places_of());
}

// A record of a bucket: its places are the objects', and the runtime's report uploaded beside
// the record (when the record says one was kept).
InfoPlaces remote_places(const Context& ctx, const Located& where, const FullRecord& full) {
  InfoPlaces places;
  const auto& rr = full.record.runtime_report;
  if (rr.is_object() && rr.contains("stored") && !rr.contains("removed")) {
    if (auto text = ctx.remote->read_report(where, k_remote_report_max)) {
      const size_t size = text->size();
      show_report(std::move(*text), size, places);
    } else if (text.error().sys_errno == ENOENT) {
      places.runtime_report_absent =
          "not in the bucket: a privileged process's stays on its host, as its core does";
    } else {
      places.runtime_report_absent = "not read: " + text.error().message;
    }
  }
  places.core_file = ctx.remote->url_of(where, RemoteBucket::Suffix::core);
  places.core_file_exists = !places.core_file.empty() && ctx.remote->core_uploaded(where);
  if (places.core_file.empty()) {
    places.core_file = ctx.remote->url_of(where, RemoteBucket::Suffix::record);
    places.core_file.replace(places.core_file.size() - common::k_record_suffix.size(),
                             std::string::npos, common::k_core_suffix);
  }
  places.record_file = ctx.remote->url_of(where, RemoteBucket::Suffix::record);
  return places;
}

// A record of the store: its files, and the runtime's report kept beside it.
InfoPlaces store_places(const Context& ctx, const Located& where) {
  const std::string core = common::core_relpath(where.host_dir, where.exe_dir, where.id);
  struct stat st {};
  const std::string& root = ctx.store->root();
  InfoPlaces places;
  places.core_file = root + "/" + core;
  places.core_file_exists = ::fstatat(ctx.store->fd(), core.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  places.record_file = root + "/" + common::record_relpath(where.host_dir, where.exe_dir, where.id);
  read_runtime_report(ctx.store->fd(),
                      common::report_relpath(where.host_dir, where.exe_dir, where.id), places);
  return places;
}

// A record without Python stacks whose process mapped a CPython (captured with
// python_stacks = no, or before the walk existed): the stacks read now from its stored core.
// A core that cannot be opened is said elsewhere (Core file: … (missing)); nothing to add here.
void add_python_from_core(const Context& ctx, const Located& where, FullRecord& full) {
  const common::Record& r = full.record;
  if (!r.core.present || r.core.removed || (r.python.is_object() && !r.python.empty())) {
    return;
  }
  const std::string rel = common::core_relpath(where.host_dir, where.exe_dir, where.id);
  auto fd = common::open_at(ctx.store->fd(), rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!fd) {
    return;
  }
  if (auto py = python_from_core(r, fd->get(), crash::python::CoreEncoding::zstd)) {
    full.record.python = *py;
    full.json["python"] = std::move(*py);
  }
}

// Prints one record for info; `first` separates records with a blank line.
void show_record(Context& ctx, const Located& where, FullRecord& full, bool& first) {
  if (!ctx.remote) {
    add_python_from_core(ctx, where, full);
  }
  // What changed since the group's previous and first crash. Only records with a signature
  // have a group: its crashes are those the signature selects, once per group — from the
  // store (a prefix match, so a superset; group_changes() takes the equal ones, from the index
  // or the per-user cache), or from the bucket's index, which the id lookup loaded whole.
  static std::map<std::string, Catalog> groups;
  if (const std::string signature = signature_of(full); !signature.empty()) {
    auto it = groups.find(signature);
    if (it == groups.end()) {
      Filter same;
      same.signatures = {signature};
      if (ctx.remote) {
        (void)ctx.remote->load_ids(); // a failure leaves an empty group: no changes to show
      }
      it = groups
               .emplace(signature,
                        ctx.remote ? ctx.remote->group(signature) : load_catalog(*ctx.store, same))
               .first;
    }
    GroupSource source;
    if (ctx.remote) {
      source.read_record = [&ctx](const Located& other) { return ctx.remote->read_record(other); };
      source.host_logs = false; // a bucket's crashes are other hosts'
    } else {
      source = store_source(*ctx.store);
    }
    if (auto changes = group_changes(source, it->second, where, full)) {
      full.json["changes"] = std::move(*changes);
    }
  }
  if (ctx.remote) {
    print_record(ctx, full, first, [&] { return remote_places(ctx, where, full); });
  } else {
    print_record(ctx, full, first, [&] { return store_places(ctx, where); });
  }
}

// info --file PATH: the core analysed here, shown as a record would be.
Exit show_loose_core(Context& ctx) {
  auto core = open_loose_core(*ctx.opts.file);
  if (!core) {
    return core.error();
  }
  if (auto py =
          python_from_core(core->full.record, core->fd.get(), crash::python::CoreEncoding::plain)) {
    core->full.record.python = *py;
    core->full.json["python"] = std::move(*py);
    ::lseek(core->fd.get(), 0, SEEK_SET);
  }
  bool first = true;
  print_record(ctx, core->full, first, [&] {
    InfoPlaces places;
    places.core_file = core->path;
    places.core_file_exists = true;
    return places;
  });
  return Exit::ok;
}

} // namespace

Exit cmd_info(Context& ctx) {
  const Options& o = ctx.opts;
  if (o.file) {
    return show_loose_core(ctx);
  }
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
  auto cat = load_selected(ctx);
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
    return nothing_matched(ctx.opts);
  }
  for (const auto& c : crashes) {
    const Located where{c.host_dir, c.exe_dir, c.id};
    auto full = read_record(ctx, where);
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

} // namespace cli
