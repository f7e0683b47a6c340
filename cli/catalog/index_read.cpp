// The store's index (common/index) as the catalog's summaries of unchanged directories
// (load.hpp).
#include "cli/catalog/load.hpp"
#include "common/base/escape.hpp"
#include "common/store/names.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace cli {

namespace {

Crash crash_of(common::index::IndexedRecord&& r) {
  Crash c;
  c.id = std::move(r.id);
  c.time = r.time;
  c.hostname = std::move(r.hostname);
  c.executable = std::move(r.executable);
  c.executable_deleted = r.executable_deleted;
  c.signal = r.signal;
  c.signal_name = std::move(r.signal_name);
  c.pid = r.pid;
  c.uid = r.uid;
  c.comm = std::move(r.comm);
  c.core_reason = common::parse_core_reason(r.core_reason).value_or(common::CoreReason::error);
  c.core_present = r.core_present;
  c.core_size = r.core_size;
  c.core_removed = r.core_removed;
  c.core_file = r.core_file;
  c.signature = std::move(r.signature);
  c.site = std::move(r.site);
  return c;
}

common::index::IndexedRecord indexed_of(const Crash& c) {
  common::index::IndexedRecord r;
  r.id = c.id;
  r.time = c.time;
  r.hostname = c.hostname;
  r.executable = c.executable;
  r.executable_deleted = c.executable_deleted;
  r.signal = c.signal;
  r.signal_name = c.signal_name;
  r.pid = c.pid;
  r.uid = c.uid;
  r.comm = c.comm;
  r.core_reason = std::string(common::to_string(c.core_reason));
  r.core_present = c.core_present;
  r.core_size = c.core_size;
  r.core_removed = c.core_removed;
  r.core_file = c.core_file;
  r.signature = c.signature;
  r.site = c.site;
  return r;
}

void say_rebuilt(const common::index::Index& index) {
  if (!index.rebuilt().empty()) {
    std::fprintf(stderr, "corectl: rebuilding the store's index (%s)\n",
                 common::printable(index.rebuilt()).c_str());
  }
}

// Starts the snapshot and reads the directories' states; false when the file fails under us.
bool read_states(common::index::Index& index, OpenIndex& out) {
  // One snapshot from the directories' states to the last row read (read_unchanged()).
  if (!index.begin_read()) {
    return false;
  }
  auto dirs = index.dirs();
  if (!dirs) {
    index.end_read();
    return false;
  }
  out.dirs = std::move(*dirs);
  return true;
}

// The part of a filter the index's query can narrow by: only what selects a superset of what
// Filter::matches() takes (names that may be shown escaped, basenames and comm-or-basename
// words are left to matches(), which still checks every row).
common::index::RecordQuery query_of(const Filter& f, const std::vector<std::string>& host_dirs,
                                    const std::vector<std::string>& exe_dirs) {
  common::index::RecordQuery q;
  q.hosts = host_dirs;
  q.exes = exe_dirs;
  if (!maybe_escaped(f.hosts)) {
    q.hostnames = f.hosts;
  }
  if (!exe_dirs.empty()) {
    q.executables = f.executables; // full paths, none escaped (load_catalog's exe_by_path)
  }
  q.signals = f.signals;
  q.pids = f.pids;
  q.uids = f.uids;
  q.comms = f.comms;
  q.id_prefixes = f.ids;
  q.signature_prefixes = f.signatures;
  q.since = f.since;
  q.until = f.until;
  return q;
}

} // namespace

OpenIndex open_index(const common::Store& store) {
  OpenIndex out;
  if (const char* off = std::getenv("CORECTL_INDEX"); off && std::string_view(off) == "0") {
    return out;
  }
  using common::index::Access;
  using common::index::Index;
  struct stat st {};
  out.owner = ::fstat(store.fd(), &st) == 0 && st.st_uid == ::geteuid();
  // Read first, also as the owner: opening for writing checks every page of the file, which
  // only a change to write needs (write_changes()).
  if (auto index = Index::open(store.fd(), store.root(), Access::read);
      index && read_states(*index, out)) {
    out.index = std::move(*index);
    return out;
  }
  if (!out.owner) {
    return out; // no index we may use: the files (and the per-user cache) answer
  }
  // Missing, damaged, foreign or of an older schema: the owner creates, rebuilds or migrates it.
  auto index = Index::open(store.fd(), store.root(), Access::write);
  if (!index) {
    return out;
  }
  say_rebuilt(*index);
  if (read_states(*index, out)) {
    out.index = std::move(*index);
  }
  return out;
}

void write_changes(
    const common::Store& store, OpenIndex& index,
    const std::vector<std::pair<common::index::DirKey, common::index::IndexedDir>>& fresh,
    const std::set<common::index::DirKey>& present) {
  using common::index::Access;
  const bool gone = std::any_of(index.dirs.begin(), index.dirs.end(),
                                [&](const auto& kv) { return !present.contains(kv.first); });
  if (!index.index || !index.owner || (fresh.empty() && !gone)) {
    return;
  }
  index.index->end_read();
  if (index.index->access() != Access::write) {
    auto writer = common::index::Index::open(store.fd(), store.root(), Access::write);
    if (!writer) {
      return; // another writer keeps it current
    }
    say_rebuilt(*writer);
    index.index = std::move(*writer);
  }
  // A failure (disk full) leaves the index as it was: the next run reads those files again.
  (void)index.index->update(fresh, present);
}

common::index::IndexedDir indexed_dir(const CachedDir& d) {
  common::index::IndexedDir out;
  out.state = {d.stamp.ino, d.stamp.mtime_sec * 1'000'000'000 + d.stamp.mtime_nsec, d.entries};
  out.malformed = d.malformed;
  std::set<std::string> listed;
  for (const auto& c : d.crashes) {
    out.records.push_back(indexed_of(c));
    listed.insert(c.id);
  }
  for (const auto& id : d.ids) {
    if (!listed.contains(id)) {
      common::index::IndexedRecord r;
      r.id = id;
      r.listed = false;
      out.records.push_back(std::move(r));
    }
  }
  return out;
}

bool read_unchanged(OpenIndex& index,
                    const std::vector<std::pair<common::index::DirKey, Parse>>& unchanged,
                    const Filter& filter, const std::vector<std::string>& host_dirs,
                    const std::vector<std::string>& exe_dirs, Catalog& cat,
                    std::vector<uint64_t>& ids) {
  if (unchanged.empty()) {
    return true;
  }
  std::set<common::index::DirKey> all;
  std::set<common::index::DirKey> wanted;
  for (const auto& [key, parse] : unchanged) {
    all.insert(key);
    if (parse == Parse::yes) {
      wanted.insert(key);
    }
  }
  // At most one crash per name in the directory (the states match the directories now): room
  // for them at once rather than 100,000 crashes moved on each growth.
  size_t bound = 0;
  for (const auto& key : wanted) {
    bound += index.dirs.at(key).state.entries;
  }
  cat.crashes.reserve(cat.crashes.size() + bound);
  const size_t crashes_before = cat.crashes.size();
  const size_t ids_before = ids.size();
  const common::index::RecordQuery query = query_of(filter, host_dirs, exe_dirs);
  // Without a query every row comes anyway, and the ids with them.
  const bool ids_from_rows = query.empty();
  common::index::DirKey last;
  bool last_known = false;
  bool last_all = false;
  bool last_wanted = false;
  auto selected = index.index->select(
      query, [&](const common::index::DirKey& key, common::index::IndexedRecord&& r) {
        if (!last_known || key != last) {
          last = key;
          last_known = true;
          last_all = all.contains(key);
          last_wanted = wanted.contains(key);
        }
        if (ids_from_rows && last_all) {
          add_id(ids, r.id);
        }
        // An id no file name could have is a forged row: the file scan would never list it.
        if (!last_wanted || !r.listed || !common::is_record_id(r.id)) {
          return;
        }
        Crash c = crash_of(std::move(r));
        if (filter.matches(c)) {
          c.host_dir = key.first;
          c.exe_dir = key.second;
          cat.crashes.push_back(std::move(c));
        }
      });
  auto listed = selected && !ids_from_rows
                    ? index.index->each_id([&](const common::index::DirKey& key, std::string&& id) {
                        if (all.contains(key)) {
                          add_id(ids, id);
                        }
                      })
                    : selected;
  if (!listed) {
    cat.crashes.resize(crashes_before);
    ids.resize(ids_before);
    return false;
  }
  for (const auto& key : wanted) {
    if (const size_t malformed = index.dirs.at(key).malformed; malformed > 0) {
      cat.problems.malformed += malformed;
      if (cat.problems.first.empty()) {
        cat.problems.first =
            "Malformed record(s) in " + common::quoted(key.first + "/" + key.second);
      }
    }
  }
  return true;
}

} // namespace cli
