#include "cli/catalog/catalog.hpp"

#include "cli/catalog/cache.hpp"
#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/base/path.hpp"
#include "common/index/index.hpp"
#include "common/store/names.hpp"
#include "common/store/record_summary_view.hpp"
#include "common/store/user_view.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
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

using nlohmann::json;

constexpr int k_dir_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

// A record that cannot be parsed (or read whole) is still a crash: listed from its place in
// the store (host and executable directories, id, file time), so nothing hides a crash from
// `corectl list` by making its record unreadable.
Crash by_place(int efd, const std::string& exe, const std::string& host, const std::string& id) {
  Crash c;
  c.id = id;
  c.hostname = host;
  c.executable = "/" + common::decode_exe(exe);
  c.signal_name = "unknown";
  c.site = "(unreadable record)";
  struct stat st {};
  const std::string name = id + std::string(common::k_record_suffix);
  if (::fstatat(efd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    c.time = static_cast<int64_t>(st.st_mtime);
  }
  return c;
}

// Reads the records of <host>/<exe>; with Parse::no only their ids are collected (directories
// the filter rules out still count for the id abbreviation, which must hold store-wide).
enum class Parse { no, yes };

struct WorkerResult {
  std::vector<Crash> crashes;
  LoadProblems problems;
  std::vector<uint64_t> ids; // every id seen (for the abbreviation length), add_id()
  std::vector<std::pair<std::pair<std::string, std::string>, CachedDir>> fresh; // for the cache
  // Directories whose index rows still hold (same inode, mtime and entry count), and whether
  // their records are wanted or only their ids.
  std::vector<std::pair<common::index::DirKey, Parse>> unchanged;
};

// What earlier reads left of the directories: the index's rows, or else the per-user cache's
// entries (cache.hpp). Either may be empty.
struct Known {
  const std::map<common::index::DirKey, common::index::IndexedDir>* indexed = nullptr;
  const SummaryCache* cache = nullptr;
};

void first_problem(LoadProblems& p, const std::string& message) {
  if (p.first.empty()) {
    p.first = message;
  }
}

void note(LoadProblems& p, int err, const std::string& what) {
  if (err == EACCES || err == EPERM) {
    ++p.denied;
  } else if (err == ELOOP || err == ENOTDIR || err == EINVAL) {
    // A symbolic link, a file where a directory belongs, a FIFO or device where a record
    // belongs: put there by the store's owner, not an I/O failure. Skipped and reported, so it
    // cannot hide the rest of the store or stop retention.
    ++p.malformed;
  } else {
    ++p.unreadable;
  }
  if (p.first.empty()) {
    p.first = common::Error::from_errno(what, err).message;
  }
}

// Appends the records of a cached (or freshly read) directory that pass the filter.
void take(const CachedDir& d, const std::string& host, const std::string& exe, const Filter& filter,
          Parse parse, WorkerResult& out) {
  for (const auto& id : d.ids) {
    add_id(out.ids, id);
  }
  if (parse == Parse::no) {
    return;
  }
  if (d.malformed > 0) {
    out.problems.malformed += d.malformed;
    if (out.problems.first.empty()) {
      out.problems.first = "Malformed record(s) in " + common::quoted(host + "/" + exe);
    }
  }
  for (const auto& c : d.crashes) {
    if (filter.matches(c)) {
      out.crashes.push_back(c);
      out.crashes.back().host_dir = host;
      out.crashes.back().exe_dir = exe;
    }
  }
}

void load_exe_dir(int store_fd, const std::string& host, const std::string& exe,
                  const Filter& filter, Parse parse, const Known& known, WorkerResult& out) {
  const std::string rel = host + "/" + exe;
  const int hfd = ::openat(store_fd, host.c_str(), k_dir_flags);
  if (hfd < 0) {
    note(out.problems, errno, "Failed to open " + common::quoted(host));
    return;
  }
  common::UniqueFd host_fd(hfd);
  // Opened (which needs read permission) even when the cache answers: see cache.hpp.
  const int efd = ::openat(hfd, exe.c_str(), k_dir_flags);
  if (efd < 0) {
    note(out.problems, errno, "Failed to open " + common::quoted(rel));
    return;
  }
  common::UniqueFd exe_fd(efd);
  ++out.problems.readable_dirs;
  struct stat st {};
  if (::fstat(efd, &st) != 0) {
    note(out.problems, errno, "Failed to stat " + common::quoted(rel));
    return;
  }
  const DirStamp stamp{static_cast<uint64_t>(st.st_ino), st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
  if (known.cache) {
    if (auto it = known.cache->find({host, exe});
        it != known.cache->end() && it->second.stamp == stamp) {
      take(it->second, host, exe, filter, parse, out);
      return;
    }
  }
  // Every name counts, hidden ones too (common::index::dir_state): a rename over a record keeps
  // the count but not the mtime, an unlink and a create within one mtime tick keep the mtime
  // but not (always) the count.
  std::vector<std::string> names;
  if (auto listed = common::list_dir(
          efd, [&](std::string_view n) { names.emplace_back(n); }, common::Hidden::include);
      !listed) {
    note(out.problems, listed.error().sys_errno, "Failed to list " + common::quoted(rel));
    return;
  }
  if (known.indexed) {
    const common::index::DirState now{stamp.ino, stamp.mtime_sec * 1'000'000'000 + stamp.mtime_nsec,
                                      names.size()};
    if (auto it = known.indexed->find({host, exe});
        it != known.indexed->end() && it->second.state == now) {
      out.unchanged.emplace_back(common::index::DirKey{host, exe}, parse);
      return;
    }
  }
  std::sort(names.begin(), names.end());
  const std::string core_suffix(common::k_core_suffix);
  CachedDir d;
  d.stamp = stamp;
  d.entries = names.size();
  std::vector<std::string> bad_ids;
  bool complete = true;
  for (const auto& name : names) {
    if (!name.ends_with(common::k_record_suffix)) {
      continue;
    }
    const std::string id = name.substr(0, name.size() - common::k_record_suffix.size());
    if (!common::is_record_id(id)) {
      continue;
    }
    if (parse == Parse::no) {
      d.ids.push_back(id);
      continue;
    }
    auto text = common::read_file(efd, name, common::k_max_record_bytes);
    const std::string what = common::quoted(rel + "/" + name);
    if (!text) {
      const int err = text.error().sys_errno;
      if (err == ELOOP || err == EINVAL) { // not a regular file: skipped like a bad record
        bad_ids.push_back(id);
        ++d.malformed;
        first_problem(out.problems, text.error().message);
        continue;
      }
      if (err != 0) {
        bad_ids.push_back(id);
        note(out.problems, err, "Failed to read " + what);
        complete = false;
        continue;
      }
      // Too large to read: listed by its place in the store below.
    }
    common::Expected<Crash> crash = text ? summarise(*text) : std::unexpected(text.error());
    if (!crash || crash->id != id) {
      ++d.malformed;
      first_problem(out.problems,
                    "Malformed record " + what + ": " +
                        (!crash ? crash.error().message : "its id does not match its file name"));
      // Still a crash: listed (and counted) by its place, host and executable directory and id.
      crash = by_place(efd, exe, host, id);
    }
    crash->core_file = std::binary_search(names.begin(), names.end(), id + core_suffix);
    d.ids.push_back(id);
    d.crashes.push_back(std::move(*crash));
  }
  // Crash ids first, then the ids of records that did not parse (the cache's layout).
  d.ids.insert(d.ids.end(), bad_ids.begin(), bad_ids.end());
  take(d, host, exe, filter, parse, out);
  // Not cached: partial reads, id-only listings, and directories changed in the last 2 s.
  const auto now = static_cast<int64_t>(std::time(nullptr));
  if (parse == Parse::yes && complete && st.st_mtim.tv_sec < now - 2) {
    out.fresh.emplace_back(std::pair{host, exe}, std::move(d));
  }
}

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

// True when the store root can be listed; a user who may only traverse it (o+x) reaches their
// own crashes through their view instead (common/store/user_view).
bool root_listable(const common::Store& store) {
  const int fd = ::openat(store.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  ::close(fd);
  return true;
}

// The crashes of the calling user's view, each read from its place in the store (a view names
// places, never content). Links whose record is gone (retention removed it) are skipped.
std::vector<Located> view_places(const common::Store& store, LoadProblems& problems) {
  size_t malformed = 0;
  auto entries = common::read_user_view(store.fd(), ::getuid(), malformed);
  if (!entries) {
    // No view (ENOENT: the user never had a crash they may read) is no permission either.
    const int err = entries.error().sys_errno == ENOENT ? EACCES : entries.error().sys_errno;
    note(problems, err, "Failed to open store " + common::quoted(store.root()));
    return {};
  }
  ++problems.readable_dirs;
  problems.malformed += malformed;
  std::vector<Located> out;
  for (auto& e : *entries) {
    out.push_back({std::move(e.host), std::move(e.exe), std::move(e.id)});
  }
  return out;
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

// Whether a filter value may be a shown (escaped) name: its directory is then not the pure
// function of the value, and every directory is read.
bool maybe_escaped(const std::vector<std::string>& values) {
  return std::any_of(values.begin(), values.end(),
                     [](const std::string& v) { return v.find('\\') != std::string::npos; });
}

// The index (common/index) as the summaries of unchanged directories: CORECTL_INDEX=0 turns it
// off. The store's owner writes it (when no exporter holds the writers' lock); everyone else who
// may read it only reads, and what changed since its writer last looked is read from the files.
struct OpenIndex {
  std::optional<common::index::Index> index;
  bool owner = false; // the caller owns the store: it may write the index
  std::map<common::index::DirKey, common::index::IndexedDir> dirs; // states, no records
};

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

// Writes the directories read from the files into the index, and drops those gone from the
// store, when the caller owns the store and no other writer (the exporter) holds the lock.
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

} // namespace

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

// The crashes (and ids) of the directories whose index rows still hold, from the index: SQL
// narrows by the query, matches() decides. False when the index could not be read; what it
// added is then taken back.
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

namespace {

using Found = std::expected<std::vector<Located>, LookupFailure>;

// The records of a store we may list whose id starts with `want`.
Found find_in_store(const common::Store& store, const std::string& want, std::string_view prefix) {
  std::vector<Located> found;
  // Directories we may not read: "not there" must be told from "not allowed".
  size_t denied = 0;
  std::string denied_what;
  common::Store::WalkEvents events;
  events.failed = [&](std::string_view rel, const common::Error& e) {
    if (e.sys_errno == EACCES || e.sys_errno == EPERM) {
      ++denied;
      denied_what = rel;
    }
  };
  auto walked = store.for_each_record(
      [&](const common::StoreEntry& e) {
        if (e.id.starts_with(want) && common::is_record_id(e.id)) {
          found.push_back({e.host, e.exe, e.id});
        }
      },
      events);
  if (!walked) {
    const int err = walked.error().sys_errno;
    return std::unexpected(
        LookupFailure{err == EACCES || err == EPERM ? LookupError::denied : LookupError::not_found,
                      "No record " + std::string(prefix) + " found: " + walked.error().message,
                      {}});
  }
  if (found.empty()) {
    if (denied > 0) {
      return std::unexpected(LookupFailure{
          LookupError::denied,
          "No record " + std::string(prefix) + " among the records readable to you; " +
              std::to_string(denied) + " store director" + (denied == 1 ? "y is" : "ies are") +
              " not readable (e.g. " + common::quoted(denied_what) + ": Permission denied)",
          {}});
    }
    return std::unexpected(
        LookupFailure{LookupError::not_found, "No record with id " + std::string(prefix), {}});
  }
  return found;
}

// The records of the calling user's view whose id starts with `want` (and that still exist).
// Anything else is not theirs to see, so it is "denied", never "not found".
Found find_in_view(const common::Store& store, const std::string& want, std::string_view prefix) {
  std::vector<Located> found;
  LoadProblems problems;
  for (auto& where : view_places(store, problems)) {
    struct stat st {};
    const std::string rel = common::record_relpath(where.host_dir, where.exe_dir, where.id);
    if (where.id.starts_with(want) &&
        ::fstatat(store.fd(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      found.push_back(std::move(where));
    }
  }
  if (found.empty()) {
    return std::unexpected(
        LookupFailure{LookupError::denied,
                      "No record " + std::string(prefix) + " among the records readable to you",
                      {}});
  }
  return found;
}

} // namespace

std::expected<std::string, LookupFailure> id_prefix(std::string_view prefix) {
  std::string want;
  for (char ch : prefix) {
    want += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  if (want.size() > 16 || !common::is_hex(want)) {
    return std::unexpected(LookupFailure{LookupError::bad_prefix,
                                         "'" + std::string(prefix) +
                                             "' is not a record id (ids are 16 hex characters)",
                                         {}});
  }
  return want;
}

std::expected<Located, LookupFailure> resolve_id(const common::Store& store,
                                                 std::string_view prefix) {
  auto checked = id_prefix(prefix);
  if (!checked) {
    return std::unexpected(checked.error());
  }
  const std::string& want = *checked;
  Found found =
      root_listable(store) ? find_in_store(store, want, prefix) : find_in_view(store, want, prefix);
  if (!found) {
    return std::unexpected(std::move(found.error()));
  }
  if (found->size() > 1) {
    std::sort(found->begin(), found->end(),
              [](const Located& a, const Located& b) { return a.id < b.id; });
    return std::unexpected(LookupFailure{LookupError::ambiguous,
                                         "Id prefix " + std::string(prefix) + " is ambiguous",
                                         std::move(*found)});
  }
  return found->front();
}

common::Expected<FullRecord> read_record(const common::Store& store, const Located& where) {
  const std::string rel = common::record_relpath(where.host_dir, where.exe_dir, where.id);
  auto text = common::read_file(store.fd(), rel, common::k_max_record_bytes);
  if (!text) {
    const std::string what = "Failed to read record " + common::quoted(store.root() + "/" + rel);
    if (text.error().sys_errno == 0) { // the one failure without errno: the size limit
      return common::fail(what + ": larger than " + std::to_string(common::k_max_record_bytes) +
                          " bytes");
    }
    return common::fail_errno(what, text.error().sys_errno);
  }
  return parse_full_record(*text, where, store.root() + "/" + rel);
}

common::Expected<FullRecord> parse_full_record(std::string_view text, const Located& where,
                                               const std::string& place) {
  FullRecord out;
  auto parsed = common::parse_record_json(text);
  if (!parsed) {
    return common::fail("Malformed record " + common::quoted(place) + ": " +
                        parsed.error().message);
  }
  out.json = std::move(*parsed);
  auto rec = common::record_from_json(out.json);
  if (!rec) {
    return common::fail("Malformed record " + common::quoted(place) + ": " + rec.error().message);
  }
  // The id and the directories come from where the file was found: the store's owner writes
  // the text, and an id that differs from the file name would point root at another crash.
  if (rec->id != where.id) {
    return common::fail("Malformed record " + common::quoted(place) + ": it names another id (" +
                        common::quoted(rec->id) + ")");
  }
  rec->store_host = where.host_dir;
  rec->store_exe = where.exe_dir;
  out.record = std::move(*rec);
  return out;
}

} // namespace cli
