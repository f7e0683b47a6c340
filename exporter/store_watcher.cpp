#include "exporter/store_watcher.hpp"

#include "common/base/escape.hpp"
#include "common/base/io.hpp"
#include "common/base/json_bounds.hpp"
#include "common/packages/group_state.hpp"
#include "common/store/ledger.hpp"
#include "common/store/names.hpp"
#include "common/store/record.hpp"
#include "exporter/record_row.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace exporter {

namespace {

constexpr int k_dir_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;

// What a record file needs to be counted, and what every exe directory is watched for.
// IN_CREATE covers linkat() of the handler's O_TMPFILE, IN_MOVED_TO a rename into place (the
// hidden-temp fallback, or a record written elsewhere and moved in); both mean "complete".
// IN_CLOSE_WRITE catches a file written in place, which is read again when it was incomplete.
constexpr uint32_t k_exe_mask = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE |
                                IN_MOVED_FROM | IN_ONLYDIR | IN_DONT_FOLLOW;
constexpr uint32_t k_host_mask =
    IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR | IN_DONT_FOLLOW;
// The root also carries the ledger, which corectl replaces by rename (IN_MOVED_TO).
constexpr uint32_t k_root_mask = k_exe_mask | IN_DELETE_SELF | IN_MOVE_SELF;

// The store root's own entry among the skipped paths (a root that cannot be listed).
constexpr const char* k_root_relpath = ".";

std::string relpath(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  std::string out(a);
  for (std::string_view part : {b, c}) {
    if (!part.empty()) {
      out += '/';
      out += part;
    }
  }
  return out;
}

// <id>.json → id, <id>.core.zst → id; nullopt for other names.
std::optional<uint64_t> id_of(std::string_view name, std::string_view suffix) {
  if (!name.ends_with(suffix)) {
    return std::nullopt;
  }
  return parse_record_id(name.substr(0, name.size() - suffix.size()));
}

// The kernel names an O_TMPFILE inode "#<inode number>" in events about it (the handler's
// unnamed temporaries get IN_MODIFY/IN_CLOSE_WRITE before linkat gives them a real name).
bool is_tmpfile_name(std::string_view name) {
  return name.size() > 1 && name[0] == '#' &&
         name.find_first_not_of("0123456789", 1) == std::string_view::npos;
}

// What another process does to the index file: replacing, removing, truncating or rewriting it,
// or changing its owner. IN_MODIFY is ours too: the check after it is a stat() when the file is
// as our last write left it (index_sync.cpp).
constexpr uint32_t k_index_mask = IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_CREATE | IN_DELETE |
                                  IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |
                                  IN_ONLYDIR | IN_DONT_FOLLOW;

} // namespace

common::Expected<std::unique_ptr<StoreWatcher>> StoreWatcher::create(const std::string& root,
                                                                     CrashState& state,
                                                                     std::mutex& mutex,
                                                                     UseIndex use_index) {
  auto store = common::Store::open(root);
  if (!store) {
    return std::unexpected(store.error());
  }
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    return common::fail_errno("Failed to create an inotify instance", errno);
  }
  auto watcher = std::unique_ptr<StoreWatcher>(
      new StoreWatcher(std::move(*store), common::UniqueFd(fd), state, mutex));
  if (use_index == UseIndex::yes) {
    watcher->m_index = IndexSync::open(watcher->m_store);
  }
  return watcher;
}

StoreWatcher::StoreWatcher(common::Store store, common::UniqueFd inotify, CrashState& state,
                           std::mutex& mutex)
    : m_store(std::move(store)), m_inotify(std::move(inotify)), m_state(state), m_mutex(mutex) {}

uint32_t StoreWatcher::dir_index(const std::string& host, const std::string& exe) {
  auto [it, added] =
      m_dir_index.try_emplace(std::make_pair(host, exe), static_cast<uint32_t>(m_dirs.size()));
  if (added) {
    m_dirs.emplace_back(host, exe);
  }
  return it->second;
}

bool StoreWatcher::add_watch(const std::string& rel, Watch watch) {
  const std::string path = rel.empty() ? m_store.root() : m_store.root() + "/" + rel;
  const uint32_t mask = watch.kind == Kind::root    ? k_root_mask
                        : watch.kind == Kind::host  ? k_host_mask
                        : watch.kind == Kind::index ? k_index_mask
                                                    : k_exe_mask;
  const int wd = ::inotify_add_watch(m_inotify.get(), path.c_str(), mask);
  if (wd < 0) {
    if (errno == ENOSPC && !m_degraded) {
      spdlog::error("Failed to watch {}: inotify watch limit reached (fs.inotify.max_user_watches);"
                    " continuing with a full rescan every 30 s",
                    common::printable(common::quoted(path)));
      m_degraded = true;
    } else if (errno != ENOSPC && errno != ENOENT) {
      spdlog::warn("Failed to watch {}: {}", common::printable(common::quoted(path)),
                   std::strerror(errno));
    }
    return false;
  }
  m_watches[wd] = std::move(watch);
  return true;
}

common::Expected<common::UniqueFd> StoreWatcher::open_exe_dir(const std::string& host,
                                                              const std::string& exe) const {
  // One component at a time with O_NOFOLLOW: a symlink planted in the store must not lead the
  // exporter (and its counts) outside it.
  auto hfd = common::open_at(m_store.fd(), host, k_dir_flags);
  if (!hfd) {
    return hfd;
  }
  return common::open_at(hfd->get(), exe, k_dir_flags);
}

uint64_t StoreWatcher::core_bytes(int exe_dirfd, uint64_t id) const {
  struct stat st {};
  const std::string name = format_record_id(id) + std::string(common::k_core_suffix);
  if (::fstatat(exe_dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
    return 0;
  }
  return allocated_bytes(st);
}

bool StoreWatcher::record_exists(uint64_t id, uint32_t dir) const {
  const auto& [host, exe] = m_dirs[dir];
  struct stat st {};
  const std::string path =
      relpath(host, exe, format_record_id(id) + std::string(common::k_record_suffix));
  return ::fstatat(m_store.fd(), path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

void StoreWatcher::ingest_record(int exe_dirfd, uint32_t dir, uint64_t id,
                                 common::index::IndexedDir* rows, bool& complete) {
  const auto& [host, exe] = m_dirs[dir];
  const std::string id_text = format_record_id(id);
  auto row = read_record_row(exe_dirfd, host, exe, id_text);
  if (!row) {
    complete = false;
    // Gone already (retired between listing and reading) is not an error.
    m_state.set_skipped(
        relpath(host, exe, id_text + std::string(common::k_record_suffix)),
        row.error().sys_errno == ENOENT ? std::nullopt : std::optional<SkipReason>(SkipReason::io));
    return;
  }
  count_row(dir, id, *row);
  if (rows) {
    rows->records.push_back(std::move(*row));
  }
}

void StoreWatcher::observe_group(const std::string& group, int64_t time,
                                 const common::SeriesKey& key, uint32_t dir,
                                 const std::string& id) {
  GroupTracker& groups = m_state.groups();
  std::string refines;
  std::optional<common::CrashVersion> version;
  // The whole record only for the few that need it (a group not seen yet, a crash after a
  // resolve mark), read again from its file (a row from the index has no text): bounded like
  // every record read, its size and depth checked before a DOM is built.
  if (groups.wants_details(group, time)) {
    ++m_group_reads;
    const auto& [host, exe] = m_dirs[dir];
    auto fd =
        common::open_at(m_store.fd(), relpath(host, exe, id + std::string(common::k_record_suffix)),
                        O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    auto text = fd ? common::read_fd(fd->get(), "record", common::k_max_record_bytes)
                   : common::Expected<std::string>(std::unexpected(fd.error()));
    const auto j = text && common::json_bounds_error(*text, common::k_max_record_bytes).empty()
                       ? nlohmann::json::parse(*text, nullptr, false)
                       : nlohmann::json();
    if (j.is_object()) {
      if (auto c = j.find("crash"); c != j.end() && c->is_object()) {
        if (auto r = c->find("signature_refines"); r != c->end() && r->is_string()) {
          refines = r->get<std::string>();
        }
      }
      version = common::crash_version(j);
    }
  }
  groups.observe(group, time, common::GroupLabel{key.hostname, key.executable, key.signal},
                 std::move(refines), std::move(version));
}

void StoreWatcher::load_group_files() {
  GroupTracker& groups = m_state.groups();
  if (!m_groups_loaded) {
    m_groups_loaded = true;
    auto seen = common::read_seen(m_store.fd());
    if (!seen) {
      // Started over: the counters restart (a reset Prometheus handles) rather than count every
      // group in the store as new.
      spdlog::error("Not using the seen-set {}/{}/{}: {}; starting a new one from the groups in "
                    "the store",
                    common::printable(m_store.root()), common::k_groups_dir, common::k_seen_name,
                    seen.error().message);
    }
    groups.load(seen ? std::move(*seen) : std::nullopt);
  }
  const Stamp marks = file_stamp(std::string(common::k_groups_dir) + "/" + common::k_marks_name);
  if (marks != m_marks_stamp) {
    auto read = common::read_marks(m_store.fd());
    if (read) {
      groups.set_marks(std::move(*read));
      m_marks_stamp = marks;
    } else {
      spdlog::warn("Ignoring the resolve marks: {}", common::printable(read.error().message));
      m_marks_stamp = marks;
    }
  }
}

void StoreWatcher::settle() {
  m_state.settle();
  load_group_files();
  GroupTracker& groups = m_state.groups();
  if (groups.settle()) {
    if (auto w = common::write_seen(m_store.fd(), groups.seen()); !w) {
      if (!m_seen_write_failed) {
        spdlog::warn("Failed to write the seen-set ({}); new-signature and regression counts "
                     "are not kept across a restart until it can be written",
                     common::printable(w.error().message));
      }
      m_seen_write_failed = true;
    } else {
      m_seen_write_failed = false;
    }
  }
}

void StoreWatcher::count_row(uint32_t dir, uint64_t id, const common::index::IndexedRecord& row) {
  using common::index::Form;
  const auto& [host, exe] = m_dirs[dir];
  const std::string rel = relpath(host, exe, row.id + std::string(common::k_record_suffix));
  switch (row.form.value_or(Form::not_regular)) {
  case Form::link: // refused, as a link planted by the store's owner must be
    m_state.set_skipped(rel, SkipReason::io);
    return;
  case Form::not_regular:
    m_state.set_skipped(rel, SkipReason::malformed);
    return;
  case Form::by_place:
    // A crash must not hide from the counters by making its record unreadable (a 3 MiB record
    // of long mapped paths, or a broken one): it still counts, under the labels its place in
    // the store gives, and it stays listed as unreadable so the alert on those fires.
    m_state.set_skipped(rel, SkipReason::malformed);
    break;
  case Form::parsed:
    m_state.set_skipped(rel, std::nullopt);
    break;
  }
  const common::SeriesKey series = series_of_row(row, host, exe);
  if (m_state.add_record(id, dir, series, row.time, row.record_bytes, row.core_bytes) &&
      row.form == Form::parsed) {
    observe_group(common::group_key(row.signature, row.executable, row.signal), row.time, series,
                  dir, row.id);
  }
}

void StoreWatcher::scan_exe_dir(const std::string& host, const std::string& exe, int dirfd,
                                bool rescan) {
  const uint32_t dir = dir_index(host, exe);
  const std::string rel = relpath(host, exe);
  const common::index::DirKey key{host, exe};
  // Watch first, list second: a record linked in between is then both listed and reported,
  // and add_record() ignores the second sighting.
  add_watch(rel, Watch{Kind::exe, host, dir});
  // The state before the listing: a change after it makes the state differ from the row's.
  struct stat st {};
  const bool stated = ::fstat(dirfd, &st) == 0;
  common::index::DirState state;
  state.ino = static_cast<uint64_t>(st.st_ino);
  state.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  std::vector<std::string> names;
  auto listed = common::list_dir(
      dirfd,
      [&](std::string_view n) {
        ++state.entries; // hidden names too: they are entries of the state the index keeps
        if (!n.starts_with('.')) {
          names.emplace_back(n);
        }
      },
      common::Hidden::include);
  std::vector<uint64_t> ids;
  for (const auto& name : names) {
    if (auto id = id_of(name, common::k_record_suffix)) {
      ids.push_back(*id);
    } else if (!id_of(name, common::k_core_suffix) && !id_of(name, common::k_report_suffix)) {
      // A runtime's report beside its record is the store's own, not foreign.
      m_state.set_skipped(relpath(host, exe, name), SkipReason::foreign);
    }
  }
  std::sort(ids.begin(), ids.end());
  // Unchanged since the index saw it: its rows instead of its files, if they name exactly the
  // records listed.
  std::optional<std::vector<common::index::IndexedRecord>> rows;
  if (m_index && listed && stated && !rescan) {
    rows = m_index->rows_if(key, state);
    if (rows && (rows->size() != ids.size() ||
                 !std::equal(ids.begin(), ids.end(), rows->begin(), [](uint64_t id, const auto& r) {
                   return format_record_id(id) == r.id;
                 }))) {
      rows.reset();
    }
  }
  ++m_listed_dirs;
  if (rows) {
    ++m_from_index;
    for (size_t i = 0; i < ids.size(); ++i) {
      // An id already counted elsewhere (a copy of a record) is counted once, as from the files.
      if (!m_state.has_record(ids[i])) {
        count_row(dir, ids[i], (*rows)[i]);
      }
    }
  } else {
    // The index's rows are written for whole directories only, so a writer reads every record
    // of a directory it lists for the first time, counting only those not yet known.
    const bool collect = m_index && m_index->writer() && !rescan;
    common::index::IndexedDir fresh;
    bool complete = listed && stated;
    for (uint64_t id : ids) {
      if (m_state.has_record(id)) {
        if (rescan) {
          m_state.touch(id);
        }
        if (!collect) {
          continue;
        }
        auto row = read_record_row(dirfd, host, exe, format_record_id(id));
        complete = complete && row.has_value();
        if (row) {
          fresh.records.push_back(std::move(*row));
        }
      } else {
        ingest_record(dirfd, dir, id, collect ? &fresh : nullptr, complete);
      }
    }
    if (m_index && collect && complete) {
      fresh.state = state;
      fresh.malformed = static_cast<size_t>(
          std::count_if(fresh.records.begin(), fresh.records.end(),
                        [](const auto& r) { return r.form != common::index::Form::parsed; }));
      m_index->fresh(key, std::move(fresh));
    } else if (m_index) {
      m_index->stale(key, !rescan);
    }
  }
  if (m_walk_present) {
    m_walk_present->insert(key);
  }
  // The records listed before a failing readdir() are counted; the directory stays reported.
  m_state.set_skipped(rel, listed ? std::nullopt : std::optional(SkipReason::io));
}

bool StoreWatcher::walk(const common::Store::WalkScope& scope, bool rescan) {
  common::Store::WalkEvents events;
  events.host_opened = [&](std::string_view h) {
    const std::string host(h);
    // Watched before it is listed, like an executable directory.
    add_watch(host, Watch{Kind::host, host, 0});
    m_state.set_skipped(host, std::nullopt);
  };
  events.foreign = [&](std::string_view rel, int) {
    m_state.set_skipped(std::string(rel), SkipReason::foreign);
  };
  events.failed = [&](std::string_view rel, const common::Error&) {
    m_state.set_skipped(std::string(rel), SkipReason::io);
  };
  auto walked =
      m_store.walk(scope, events, [&](std::string_view host, std::string_view exe, int dirfd) {
        scan_exe_dir(std::string(host), std::string(exe), dirfd, rescan);
      });
  if (scope.host.empty()) {
    if (!walked) {
      spdlog::error("{}; counts stay as they are until the next scan",
                    common::printable(walked.error().message));
    }
    m_state.set_skipped(k_root_relpath, walked ? std::nullopt : std::optional(SkipReason::io));
  }
  return walked.has_value();
}

StoreWatcher::Stamp StoreWatcher::ledger_stamp() const {
  return file_stamp(common::k_ledger_name);
}

StoreWatcher::Stamp StoreWatcher::file_stamp(const std::string& relpath) const {
  struct stat st {};
  if (::fstatat(m_store.fd(), relpath.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return Stamp{};
  }
  return Stamp{true, st.st_ino, int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec,
               st.st_size};
}

void StoreWatcher::reload_ledger(bool force, bool check_records) {
  const Stamp stamp = ledger_stamp();
  if (!force && stamp == m_ledger_stamp) {
    return;
  }
  // Streamed into the state: a ledger of many series is never held whole.
  auto loaded = m_state.load_ledger(
      [&](const common::LedgerVisitor& visit) { return common::scan_store_ledger(m_store, visit); },
      [&](uint64_t id, uint32_t dir) { return !check_records || record_exists(id, dir); });
  if (!loaded) {
    // Keep the last good ledger: dropping it would make every retired crash vanish from the
    // counts. The file is replaced atomically, so this means real corruption, not a race.
    if (stamp != m_ledger_stamp) {
      spdlog::error("{}, keeping the previous counts", common::printable(loaded.error().message));
    }
    m_ledger_stamp = stamp;
    m_state.set_skipped(common::k_ledger_name, SkipReason::malformed);
    return;
  }
  m_ledger_stamp = stamp;
  m_state.set_skipped(common::k_ledger_name, std::nullopt);
}

double StoreWatcher::scan() {
  const auto start = std::chrono::steady_clock::now();
  std::lock_guard lock(m_mutex);
  if (m_root_lost && !recover_root()) {
    m_rescan = false;
    return 0; // nothing to list: the counts stay as they are until the store is back
  }
  const bool rescan = m_scanned;
  if (rescan) {
    m_state.count_rescan();
  }
  // The ledger is read after the listing: a vacuum running meanwhile has counted (as pending)
  // every record it deletes before deleting it, and set_ledger() checks the records of series
  // whose ledger count grew, so each crash is counted once whatever the interleaving.
  const Stamp before = ledger_stamp();
  m_state.begin_rescan();
  if (add_watch("", Watch{Kind::root, {}, 0}) && !rescan) {
    watch_parent();
  }
  load_group_files();
  m_from_index = m_listed_dirs = 0;
  if (m_index) {
    watch_index();
    m_index->begin_scan();
    m_walk_present.emplace();
  }
  const bool walked = walk({}, rescan);
  if (m_index) {
    // Directories gone from a store listed whole leave the index too.
    m_index->end_scan(walked ? &*m_walk_present : nullptr);
    m_walk_present.reset();
  }
  m_state.end_rescan();
  // When the ledger did not change while we listed, every record we saw was there with that
  // ledger in place, so the per-record existence check (an fstatat() each) can be skipped.
  reload_ledger(/*force=*/true, /*check_records=*/ledger_stamp() != before || rescan);
  settle();
  m_scanned = true;
  m_rescan = false;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  m_state.set_scan_seconds(seconds);
  return seconds;
}

void StoreWatcher::handle_exe_event(const Watch& w, uint32_t mask, std::string_view n) {
  const auto& [host, exe] = m_dirs[w.dir];
  const std::string name(n);
  const bool appeared = (mask & (IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)) != 0;
  const bool vanished = (mask & (IN_DELETE | IN_MOVED_FROM)) != 0;
  if (m_index) {
    // Any change of the directory changes its state; a record's or core's also its row.
    const auto record = id_of(name, common::k_record_suffix);
    const auto core = record ? record : id_of(name, common::k_core_suffix);
    m_index->changed({host, exe}, core ? format_record_id(*core) : std::string());
  }
  if (auto id = id_of(name, common::k_record_suffix)) {
    // A record counted by its place is read again when rewritten: once readable, it is no
    // longer reported unreadable (its crash stays in the series it was first counted in).
    if (appeared && (!m_state.has_record(*id) || m_state.is_skipped(relpath(host, exe, name)))) {
      if (auto dfd = open_exe_dir(host, exe)) {
        bool complete = true;
        ingest_record(dfd->get(), w.dir, *id, nullptr, complete);
      }
    } else if (vanished) {
      // Normally the ledger event that marks this id pending came first. If we have not seen
      // one, look at the ledger file before deciding the crash is gone from both.
      if (!m_state.is_pending(*id)) {
        reload_ledger(/*force=*/false, /*check_records=*/true);
      }
      m_state.remove_record(*id, w.dir);
      m_state.set_skipped(relpath(host, exe, name), std::nullopt);
    }
  } else if (auto cid = id_of(name, common::k_core_suffix)) {
    if (appeared) {
      if (auto dfd = open_exe_dir(host, exe)) {
        m_state.set_core_bytes(*cid, w.dir, core_bytes(dfd->get(), *cid));
      }
    } else if (vanished) {
      m_state.set_core_bytes(*cid, w.dir, 0);
    }
  } else if (id_of(name, common::k_report_suffix)) {
    // A runtime's report beside its record: nothing the exporter counts.
  } else if (!name.starts_with('.') && (mask & IN_ISDIR) == 0) {
    m_state.set_skipped(relpath(host, exe, name),
                        appeared ? std::optional(SkipReason::foreign) : std::nullopt);
  }
}

void StoreWatcher::handle_event(int wd, uint32_t mask, std::string_view name) {
  if (mask & IN_Q_OVERFLOW) {
    spdlog::warn("inotify queue overflowed; rescanning the store");
    m_rescan = true;
    return;
  }
  auto it = m_watches.find(wd);
  if (it == m_watches.end()) {
    return;
  }
  if (it->second.kind == Kind::index) {
    // Another process touched the index (or its directory went): checked at the next flush.
    // Ours change the file and its WAL too (a stat() tells them apart); the -shm changes with
    // every reader, through a mapping that inotify does not see anyway.
    const bool file = name.starts_with(common::index::k_index_file) &&
                      !((mask & IN_MODIFY) && name.ends_with("-shm"));
    if (m_index && (file || (mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)))) {
      m_index->suspect();
    }
    if (mask & IN_IGNORED) {
      m_watches.erase(it);
    }
    return;
  }
  if (mask & IN_IGNORED) {
    m_watches.erase(it);
    return;
  }
  const Watch w = it->second;
  if (w.kind == Kind::parent) {
    // The root's name changed in its directory. Removing the root itself says nothing on the
    // root's own watch while the exporter holds it open (IN_DELETE_SELF comes with the last
    // close), so its name is watched: gone or replaced is lost; while lost, a scan looks whether
    // it is a store again.
    if (name == root_name()) {
      if (m_root_lost) {
        m_rescan = true;
      } else if (!root_is_ours()) {
        lose_root();
      }
    }
    return;
  }
  if (m_root_lost) {
    return; // events of the old directories, wherever they are now
  }
  if (w.kind == Kind::root && (mask & (IN_DELETE_SELF | IN_MOVE_SELF))) {
    lose_root();
    return;
  }
  if (name.empty() || is_tmpfile_name(name)) {
    return;
  }
  if (w.kind == Kind::exe) {
    handle_exe_event(w, mask, name);
    return;
  }
  if (name == common::k_ledger_name && w.kind == Kind::root) {
    if (mask & (IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)) {
      reload_ledger(/*force=*/false, /*check_records=*/true);
    }
    return;
  }
  if (name == common::index::k_index_dir && w.kind == Kind::root) {
    if (m_index) {
      m_index->suspect(); // the index's directory removed, replaced or moved
    }
    return;
  }
  if (name.starts_with('.')) {
    return; // temporaries of atomic writes
  }
  const std::string child(name);
  const std::string rel = w.kind == Kind::root ? child : relpath(w.host, child);
  if (mask & IN_MOVED_FROM && mask & IN_ISDIR) {
    // Its records left without an event each: only a listing tells what is still there.
    m_rescan = true;
  } else if (mask & (IN_CREATE | IN_MOVED_TO)) {
    if ((mask & IN_ISDIR) && common::is_safe_component(child)) {
      if (w.kind == Kind::root) {
        walk({common::Store::Listing::ours, child, {}}, false);
      } else {
        walk({common::Store::Listing::ours, w.host, child}, false);
      }
    } else {
      m_state.set_skipped(rel, SkipReason::foreign);
    }
  } else if (mask & (IN_DELETE | IN_MOVED_FROM)) {
    m_state.set_skipped(rel, std::nullopt);
  }
}

std::string StoreWatcher::root_name() const {
  const std::string& root = m_store.root();
  const size_t end = root.find_last_not_of('/');
  const size_t slash = end == std::string::npos ? end : root.rfind('/', end);
  return slash == std::string::npos ? root.substr(0, end + 1) : root.substr(slash + 1, end - slash);
}

void StoreWatcher::lose_root() {
  if (m_root_lost) {
    return;
  }
  spdlog::error("Store {} was removed or moved; counts stay as they are until it is back",
                common::printable(common::quoted(m_store.root())));
  m_root_lost = true;
  // The root may have come back already: look once now. Later the parent's watch says when
  // (without it, the periodic scan of a degraded watcher finds the store within 30 s).
  m_rescan = true;
}

void StoreWatcher::watch_parent() {
  const std::string& root = m_store.root();
  const size_t end = root.find_last_not_of('/');
  const size_t slash = end == std::string::npos ? end : root.rfind('/', end);
  const std::string parent = slash == std::string::npos ? "."
                             : slash == 0               ? "/"
                                                        : root.substr(0, slash);
  const int wd =
      ::inotify_add_watch(m_inotify.get(), parent.c_str(),
                          IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR);
  if (wd >= 0) {
    m_watches[wd] = Watch{Kind::parent, {}, 0};
  }
}

bool StoreWatcher::root_is_ours() const {
  struct stat now {
  }, ours{};
  return ::stat(m_store.root().c_str(), &now) == 0 && ::fstat(m_store.fd(), &ours) == 0 &&
         now.st_dev == ours.st_dev && now.st_ino == ours.st_ino;
}

bool StoreWatcher::recover_root() {
  auto store = common::Store::open(m_store.root());
  if (!store) {
    return false;
  }
  for (const auto& [wd, watch] : m_watches) {
    ::inotify_rm_watch(m_inotify.get(), wd);
  }
  m_watches.clear();
  m_store = std::move(*store);
  m_root_lost = false;
  watch_parent();
  spdlog::warn("Store {} is back (re-created or moved back); counting again",
               common::printable(common::quoted(m_store.root())));
  return true;
}

void StoreWatcher::watch_index() {
  // Absent (no writer created it yet, or we only read it): nothing to watch, nothing to heal.
  add_watch(common::index::k_index_dir, Watch{Kind::index, {}, 0});
}

int StoreWatcher::flush_index() {
  if (!m_index || m_root_lost) {
    return -1;
  }
  // Without the state's lock: the index is the watcher's alone, and scrapes need not wait on it.
  const auto flushed = m_index->flush(m_store, [&] { return m_dirs; });
  if (flushed.reopened) {
    watch_index();
  }
  return flushed.next_ms;
}

common::Expected<void> StoreWatcher::process_events() {
  // Big enough for a burst of a crash storm in one read(); events are variable-length.
  alignas(struct inotify_event) char buf[64 * 1024];
  {
    std::lock_guard lock(m_mutex);
    for (;;) {
      const ssize_t n = ::read(m_inotify.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        if (errno == EAGAIN) {
          break;
        }
        return common::fail_errno("Failed to read inotify events", errno);
      }
      size_t off = 0;
      while (off + sizeof(struct inotify_event) <= static_cast<size_t>(n)) {
        struct inotify_event ev {};
        std::memcpy(&ev, buf + off, sizeof ev);
        const char* name_start = buf + off + sizeof ev;
        // The name is NUL-padded to the event's length.
        const std::string_view name(name_start, ::strnlen(name_start, ev.len));
        handle_event(ev.wd, ev.mask, ev.len ? name : std::string_view{});
        off += sizeof ev + ev.len;
      }
    }
    if (!m_rescan) {
      settle();
      return {};
    }
  }
  scan();
  return {};
}

} // namespace exporter
