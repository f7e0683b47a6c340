#include "cli/catalog/catalog.hpp"

#include "cli/catalog/cache.hpp"
#include "cli/catalog/load.hpp"
#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/base/path.hpp"
#include "common/index/index.hpp"
#include "common/store/names.hpp"
#include "common/store/record_summary_view.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <set>
#include <thread>

namespace cli {

// The Crash of a record's text, through the one summary adapter (common/store/record_summary_view):
// a DOM parse dominated the time of listing a big store.
common::Expected<Crash> summarise(std::string_view text) {
  auto view = common::read_record_view(text);
  if (!view) {
    return std::unexpected(view.error());
  }
  Crash c;
  c.id = std::move(view->id);
  c.time = view->time;
  c.hostname = std::move(view->hostname);
  c.executable = std::move(view->executable);
  c.executable_deleted = view->executable_deleted;
  c.signal = view->signal;
  c.signal_name = std::move(view->signal_name);
  c.pid = view->pid;
  c.uid = view->uid;
  c.comm = std::move(view->comm);
  c.core_present = view->core.present;
  c.core_reason = common::parse_core_reason(view->core.reason).value_or(common::CoreReason::error);
  c.core_size = view->core.size;
  c.core_removed = view->core.removed;
  c.signature = std::move(view->signature);
  c.site = std::move(view->site);
  return c;
}

// Ids are 16 hex digits (common::is_record_id): kept as their value, 100,000 of them sort
// without a string each. Anything else (only a forged index holds it) is no record's id.
void add_id(std::vector<uint64_t>& ids, std::string_view id) {
  if (common::is_record_id(id)) {
    uint64_t v = 0;
    std::from_chars(id.data(), id.data() + id.size(), v, 16);
    ids.push_back(v);
  }
}

// The shortest prefix (at least 8) that tells every two ids apart: one more hex digit than
// the longest prefix two neighbours in order share, all 16 for an id found twice.
size_t abbrev_length(std::vector<uint64_t>& ids) {
  std::sort(ids.begin(), ids.end());
  size_t need = 8;
  for (size_t i = 1; i < ids.size(); ++i) {
    const uint64_t diff = ids[i - 1] ^ ids[i];
    const size_t common_len = diff == 0 ? 16 : static_cast<size_t>(std::countl_zero(diff)) / 4;
    need = std::max(need, std::min<size_t>(common_len + 1, 16));
  }
  return need;
}

namespace {

// The directory names a filter value can live under; empty when any name can (basename filters).
bool dir_allowed(const std::vector<std::string>& wanted, const std::string& dir) {
  return wanted.empty() || std::find(wanted.begin(), wanted.end(), dir) != wanted.end();
}

// Oldest first, then by id. The positions are sorted and each crash moved once: swapping
// crashes (ten strings each) dominated sorting 100,000 of them.
void sort_by_time(std::vector<Crash>& crashes) {
  std::vector<size_t> order(crashes.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const Crash& x = crashes[a];
    const Crash& y = crashes[b];
    return x.time != y.time ? x.time < y.time : x.id < y.id;
  });
  std::vector<Crash> sorted;
  sorted.reserve(crashes.size());
  for (const size_t i : order) {
    sorted.push_back(std::move(crashes[i]));
  }
  crashes = std::move(sorted);
}

Catalog load_user_view(const common::Store& store, const Filter& filter) {
  Catalog cat;
  std::vector<uint64_t> ids;
  for (const auto& where : view_places(store, cat.problems)) {
    const std::string rel = common::record_relpath(where.host_dir, where.exe_dir, where.id);
    auto text = common::read_file(store.fd(), rel, common::k_max_record_bytes);
    if (!text) {
      if (text.error().sys_errno != ENOENT) {
        note(cat.problems, text.error().sys_errno, "Failed to read " + common::quoted(rel));
      }
      continue;
    }
    auto crash = summarise(*text);
    if (!crash || crash->id != where.id) {
      ++cat.problems.malformed;
      first_problem(cat.problems, "Malformed record " + common::quoted(rel));
      continue;
    }
    struct stat st {};
    crash->core_file =
        ::fstatat(store.fd(), common::core_relpath(where.host_dir, where.exe_dir, where.id).c_str(),
                  &st, AT_SYMLINK_NOFOLLOW) == 0;
    crash->host_dir = where.host_dir;
    crash->exe_dir = where.exe_dir;
    add_id(ids, where.id);
    if (filter.matches(*crash)) {
      cat.crashes.push_back(std::move(*crash));
    }
  }
  sort_by_time(cat.crashes);
  cat.id_abbrev = abbrev_length(ids);
  return cat;
}

// A name as given matches the true name or the way corectl, the exporter's labels and the
// alerts show it (control characters as \x1b…), so the command an alert suggests finds the
// crash of an executable whose name holds an escape sequence.
bool same_name(std::string_view wanted, std::string_view actual) {
  return wanted == actual ||
         (wanted.find('\\') != std::string_view::npos && wanted == common::printable(actual));
}

} // namespace

bool maybe_escaped(const std::vector<std::string>& values) {
  return std::any_of(values.begin(), values.end(),
                     [](const std::string& v) { return v.find('\\') != std::string::npos; });
}

bool Filter::matches(const Crash& c) const {
  auto any = [](const auto& wanted, auto&& pred) {
    return wanted.empty() || std::any_of(wanted.begin(), wanted.end(), pred);
  };
  const std::string_view base = common::base_name(c.executable);
  return any(hosts, [&](const std::string& h) { return same_name(h, c.hostname); }) &&
         any(executables,
             [&](const std::string& e) {
               return same_name(e, e.find('/') != std::string::npos ? std::string_view(c.executable)
                                                                    : base);
             }) &&
         any(signals, [&](int s) { return s == c.signal; }) &&
         any(ids, [&](const std::string& p) { return c.id.starts_with(p); }) &&
         any(pids, [&](int64_t p) { return c.pid == p; }) &&
         any(uids, [&](int64_t u) { return c.uid == u; }) &&
         any(comms, [&](const std::string& n) { return n == c.comm; }) &&
         any(names, [&](const std::string& n) { return n == c.comm || n == base; }) &&
         any(signatures,
             [&](const std::string& p) {
               return !c.signature.empty() && c.signature.starts_with(p);
             }) &&
         !(since && c.time < *since) && !(until && c.time > *until);
}

bool Filter::matches_unit(const nlohmann::json& container) const {
  if (units.empty()) {
    return true;
  }
  const auto it = container.is_object() ? container.find("unit") : container.end();
  if (!container.is_object() || it == container.end() || !it->is_string()) {
    return false;
  }
  const std::string& unit = it->get_ref<const std::string&>();
  return std::any_of(units.begin(), units.end(),
                     [&](const std::string& u) { return same_name(u, unit); });
}

namespace {

// Moves a worker's crashes, ids and problems into the catalog.
void merge_into(Catalog& cat, std::vector<uint64_t>& ids, WorkerResult& r) {
  cat.crashes.insert(cat.crashes.end(), std::make_move_iterator(r.crashes.begin()),
                     std::make_move_iterator(r.crashes.end()));
  r.crashes.clear();
  ids.insert(ids.end(), std::make_move_iterator(r.ids.begin()),
             std::make_move_iterator(r.ids.end()));
  r.ids.clear();
  cat.problems.denied += r.problems.denied;
  cat.problems.unreadable += r.problems.unreadable;
  cat.problems.malformed += r.problems.malformed;
  cat.problems.readable_dirs += r.problems.readable_dirs;
  if (cat.problems.first.empty()) {
    cat.problems.first = r.problems.first;
  }
  r.problems = {};
}

} // namespace

Catalog load_catalog(const common::Store& store, const Filter& filter, Cache use_cache) {
  if (!root_listable(store)) {
    return load_user_view(store, filter); // a handful of records: no cache
  }
  Catalog cat;
  // Host and full-path executable filters name their directories exactly (the components are a
  // pure function of the name), so other directories need not be read at all.
  std::vector<std::string> host_dirs;
  if (!maybe_escaped(filter.hosts)) {
    for (const auto& h : filter.hosts) {
      host_dirs.push_back(common::host_component(h));
    }
  }
  std::vector<std::string> exe_dirs;
  const bool exe_by_path =
      !filter.executables.empty() && !maybe_escaped(filter.executables) &&
      std::all_of(filter.executables.begin(), filter.executables.end(),
                  [](const std::string& e) { return e.find('/') != std::string::npos; });
  if (exe_by_path) {
    for (const auto& e : filter.executables) {
      exe_dirs.push_back(common::exe_component(e));
    }
  }

  struct Dir {
    std::string host;
    std::string exe;
    Parse parse;
  };
  std::vector<Dir> dirs;
  common::Store::WalkEvents events;
  events.failed = [&](std::string_view, const common::Error& e) {
    note(cat.problems, e.sys_errno, e.message);
  };
  // Foreign entries (a link or a file where a directory belongs, names the handler never
  // writes) are not ours: skipped without a word, the exporter reports them.
  auto walked = store.walk({}, events, [&](std::string_view host, std::string_view exe, int) {
    const bool wanted =
        dir_allowed(host_dirs, std::string(host)) && dir_allowed(exe_dirs, std::string(exe));
    dirs.push_back({std::string(host), std::string(exe), wanted ? Parse::yes : Parse::no});
  });
  if (!walked) {
    note(cat.problems, walked.error().sys_errno, walked.error().message);
    return cat;
  }

  // Reading and parsing records is CPU-bound (JSON) with some I/O: one worker per CPU, each
  // taking the next directory, results merged and sorted once at the end.
  const size_t workers =
      std::clamp<size_t>(std::thread::hardware_concurrency(), 1, std::max<size_t>(dirs.size(), 1));
  std::vector<WorkerResult> results(std::min<size_t>(workers, 16));
  // The index where it can be read, else the per-user cache (a user outside the store's group).
  OpenIndex index = use_cache == Cache::yes ? open_index(store) : OpenIndex{};
  const std::string cache_path =
      use_cache == Cache::yes && !index.index ? cache_path_for(store.root()) : std::string();
  SummaryCache cache = index.index ? SummaryCache{} : read_cache(cache_path, store.root());
  Known known;
  if (index.index) {
    known.indexed = &index.dirs;
  } else {
    known.cache = &cache;
  }
  std::atomic<size_t> next{0};
  auto work = [&](WorkerResult& out) {
    for (size_t i = next++; i < dirs.size(); i = next++) {
      load_exe_dir(store.fd(), dirs[i].host, dirs[i].exe, filter, dirs[i].parse, known, out);
    }
  };
  std::vector<std::jthread> threads;
  for (size_t w = 1; w < results.size(); ++w) {
    threads.emplace_back(work, std::ref(results[w]));
  }
  work(results[0]);
  threads.clear(); // joins

  std::vector<uint64_t> ids;
  for (auto& r : results) {
    merge_into(cat, ids, r);
  }
  if (index.index) {
    std::vector<std::pair<common::index::DirKey, Parse>> unchanged;
    for (auto& r : results) {
      unchanged.insert(unchanged.end(), r.unchanged.begin(), r.unchanged.end());
    }
    if (!read_unchanged(index, unchanged, filter, host_dirs, exe_dirs, cat, ids)) {
      // The index failed under us (a damaged page): those directories are read from the files.
      WorkerResult again;
      for (const auto& [key, parse] : unchanged) {
        load_exe_dir(store.fd(), key.first, key.second, filter, parse, Known{}, again);
      }
      merge_into(cat, ids, again);
      results.push_back(std::move(again));
    }
    index.index->end_read();
  }
  // The new cache: fresh directories replace their entries; directories gone from the store drop
  // out. Written only when something changed.
  size_t fresh = 0;
  std::vector<std::pair<common::index::DirKey, common::index::IndexedDir>> indexed;
  for (auto& r : results) {
    for (auto& [key, d] : r.fresh) {
      if (index.index) {
        indexed.emplace_back(key, indexed_dir(d));
      } else {
        cache[key] = std::move(d);
      }
      ++fresh;
    }
  }
  std::set<std::pair<std::string, std::string>> present;
  for (const auto& d : dirs) {
    present.insert({d.host, d.exe});
  }
  write_changes(store, index, indexed, present);
  const size_t before = cache.size();
  std::erase_if(cache, [&](const auto& kv) { return !present.contains(kv.first); });
  if (!cache_path.empty() && (fresh > 0 || cache.size() != before)) {
    write_cache(cache_path, store.root(), cache);
  }
  sort_by_time(cat.crashes);
  cat.id_abbrev = abbrev_length(ids);
  return cat;
}

void refresh_index(const common::Store& store, IndexMissing missing) {
  if (missing == IndexMissing::skip &&
      !common::index::Index::open(store.fd(), store.root(), common::index::Access::read)) {
    return;
  }
  if (!common::index::Index::open(store.fd(), store.root(), common::index::Access::write)) {
    return; // not ours to write (or another writer keeps it current)
  }
  // The writer's lock is free again here; load_catalog() takes it and writes what changed.
  (void)load_catalog(store, Filter{}, Cache::yes);
}

} // namespace cli
