// Follows the store: a full scan at start (from the store's index for the directories it holds
// unchanged), then inotify on the root, every host directory and every executable directory,
// feeding a CrashState and keeping the index current (index_sync.hpp).
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"
#include "common/store/store.hpp"
#include "exporter/crash_state.hpp"
#include "exporter/index_sync.hpp"

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace exporter {

class StoreWatcher {
public:
  // Whether the store's index is used (read at start, written while running).
  enum class UseIndex { yes, no };

  // Opens the store root and an inotify instance; every change to `state` happens under `mutex`.
  static common::Expected<std::unique_ptr<StoreWatcher>> create(const std::string& root,
                                                                CrashState& state,
                                                                std::mutex& mutex,
                                                                UseIndex use_index = UseIndex::yes);

  // Lists the whole store (watching each directory before listing it, so nothing created
  // meanwhile is missed), reads every record not yet known and the ledger, then settles the
  // state. Records no longer there are removed. Returns the scan's duration in seconds.
  double scan();

  // Of the directories the last full scan listed, how many were counted from the index's rows
  // (the rest from their files).
  std::pair<size_t, size_t> indexed_dirs() const { return {m_from_index, m_listed_dirs}; }
  // Whole records read for their groups' versions so far (new groups, crashes after a mark).
  size_t group_reads() const { return m_group_reads; }

  // The inotify descriptor, to poll for readability.
  int fd() const { return m_inotify.get(); }

  // Reads the events available now and applies them (a full scan() after a queue overflow).
  // Returns an error only when the inotify descriptor itself fails.
  common::Expected<void> process_events();

  // Writes the index's pending changes; returns the milliseconds until it wants to run again
  // (-1: nothing pending).
  int flush_index();

  // True when some directory could not be watched (the inotify watch limit), or the store's
  // root was removed or moved: the caller then calls scan() periodically, so changes show up
  // late but are never lost, and a store that comes back is found even without an event.
  bool degraded() const { return m_degraded || m_root_lost; }

private:
  // `parent`: the directory the store's root is in, watched while the root is gone, for the
  // root to come back (re-created, or moved back).
  // `index`: the index's own directory, for another process touching the index file.
  enum class Kind { root, host, exe, parent, index };
  struct Watch {
    Kind kind = Kind::root;
    std::string host; // host component (host and exe watches)
    uint32_t dir = 0; // directory index (exe watches)
  };
  // When the ledger file last changed, to reread it only when it did.
  struct Stamp {
    bool exists = false;
    ino_t ino = 0;
    int64_t mtime_ns = 0;
    off_t size = 0;
    bool operator==(const Stamp&) const = default;
  };

  StoreWatcher(common::Store store, common::UniqueFd inotify, CrashState& state, std::mutex& mutex);

  uint32_t dir_index(const std::string& host, const std::string& exe);
  bool add_watch(const std::string& relpath, Watch watch);
  // Walks the part of the store in `scope` (common::Store::walk), watching each directory
  // before listing it and reading the records not yet known.
  // Returns false when the walk failed (for the whole store: its root could not be listed).
  bool walk(const common::Store::WalkScope& scope, bool rescan);
  void scan_exe_dir(const std::string& host, const std::string& exe, int dirfd, bool rescan);
  // Reads <id>.json and counts it (count_row); its row is added to `rows` when given. `complete`
  // turns false when the file could not be read.
  void ingest_record(int exe_dirfd, uint32_t dir, uint64_t id, common::index::IndexedDir* rows,
                     bool& complete);
  // Counts a record as its row says (read from its file or from the index), or marks it skipped.
  void count_row(uint32_t dir, uint64_t id, const common::index::IndexedRecord& row);
  void watch_index();
  uint64_t core_bytes(int exe_dirfd, uint64_t id) const;
  bool record_exists(uint64_t id, uint32_t dir) const;
  Stamp ledger_stamp() const;
  Stamp file_stamp(const std::string& relpath) const; // of a file in the store, by its path
  // A record counted for the first time, for the group tracker (group_tracker.hpp); its file
  // (`id` in directory `dir`) is read again only when the tracker needs its details.
  void observe_group(const std::string& group, int64_t time, const common::SeriesKey& key,
                     uint32_t dir, const std::string& id);
  // The group files: the seen-set read once, the marks reread when their file changed. Before
  // a scan too: a group the seen-set knows needs no record read, and a crash after a mark is
  // only told from one before it with the marks at hand.
  void load_group_files();
  // CrashState::settle(), then the groups: load_group_files(), the seen-set written when it
  // changed (before the counts can be scraped).
  void settle();
  // Rereads the ledger when its file changed (or always, with `force`); `check_records` makes
  // set_ledger() verify that records of grown series still exist.
  void reload_ledger(bool force, bool check_records);
  void handle_event(int wd, uint32_t mask, std::string_view name);
  void handle_exe_event(const Watch& w, uint32_t mask, std::string_view name);
  // The root was removed or moved: logged once, counts kept, its path watched for a new root.
  void lose_root();
  std::string root_name() const; // the last component of the store's path
  void watch_parent();           // the directory the root is in, for its name (Kind::parent)
  bool root_is_ours() const;     // the store's path still names the directory we hold
  // Whether the store's path names a directory again; then it is the store (every old watch
  // dropped: they follow the old directories), logged once. Before a scan while the root is lost.
  bool recover_root();
  common::Expected<common::UniqueFd> open_exe_dir(const std::string& host,
                                                  const std::string& exe) const;

  common::Store m_store;
  common::UniqueFd m_inotify;
  CrashState& m_state;
  std::mutex& m_mutex;
  std::vector<std::pair<std::string, std::string>> m_dirs; // index → (host, exe) components
  std::map<std::pair<std::string, std::string>, uint32_t> m_dir_index;
  std::unordered_map<int, Watch> m_watches;
  Stamp m_ledger_stamp;
  std::unique_ptr<IndexSync> m_index; // null without an index (UseIndex::no)
  std::optional<std::set<common::index::DirKey>> m_walk_present; // during a full scan
  size_t m_from_index = 0;
  size_t m_group_reads = 0;
  size_t m_listed_dirs = 0;
  bool m_degraded = false;
  bool m_root_lost = false;
  bool m_rescan = false;
  bool m_scanned = false;
  bool m_groups_loaded = false;
  Stamp m_marks_stamp;
  bool m_seen_write_failed = false; // logged once until a write succeeds again
};

} // namespace exporter
