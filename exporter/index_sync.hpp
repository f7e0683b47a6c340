// The exporter's side of the store's index (common/index): it starts from the index's rows for
// the directories whose state is unchanged, and, as the index's one writer while it runs, keeps
// the rows current from what its inotify watch reports. The index is never the exporter's
// truth: its counts come from the files (or from rows of unchanged directories), so whatever
// happens to the index file, /metrics stays what the files say; the index is checked and
// rebuilt when something else touched it.
#pragma once

#include "common/index/index.hpp"
#include "common/store/store.hpp"

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace exporter {

class IndexSync {
public:
  using DirKey = common::index::DirKey;
  using IndexedDir = common::index::IndexedDir;
  using IndexedRecord = common::index::IndexedRecord;

  // Opens the index of `store` as its writer (creating, migrating or rebuilding it, logged), or
  // only for reading when another process writes it (a second exporter); nullptr when neither
  // works (no index yet and no right to write one): the exporter then reads the files.
  static std::unique_ptr<IndexSync> open(const common::Store& store);

  bool writer() const { return m_index && m_index->access() == common::index::Access::write; }

  // Before a full scan: reads the stored directory states once.
  void begin_scan();
  // The rows of directory `key` when the index holds every one of them (each with a form) for
  // exactly this state; nullopt otherwise (the directory's files are read instead).
  std::optional<std::vector<IndexedRecord>> rows_if(const DirKey& key,
                                                    const common::index::DirState& state);
  // A directory read whole from its files: written with the next batch (or at the next flush
  // when it changed too recently to be indexed; see index_sync.cpp).
  void fresh(const DirKey& key, IndexedDir&& dir);
  // A directory whose rows may be stale: the next flush compares its state (`whole`: reads it
  // whole).
  void stale(const DirKey& key, bool whole);
  // A file of directory `key` changed: its record `id` (its record or its core) is read again.
  void changed(const DirKey& key, const std::string& id);
  // After a full walk: the directories present (the index drops the others), or nullptr when the
  // walk failed (nothing is dropped).
  void end_scan(const std::set<DirKey>* present);
  // Something happened in the index's directory: the file is checked at the next flush.
  void suspect() { m_suspect = true; }

  struct Flushed {
    int next_ms = -1;      // when to flush again (-1: nothing pending)
    bool reopened = false; // the index was opened again (its directory's watch is to be renewed)
  };
  // Writes the changes that are due. `all_dirs` names every directory the exporter knows, which
  // are all compared after the index was rebuilt or taken over from another writer.
  Flushed flush(const common::Store& store, const std::function<std::vector<DirKey>()>& all_dirs);

private:
  struct Dirty {
    bool whole = false;        // read every record again
    bool check = false;        // compare the state, read whole if it differs
    std::set<std::string> ids; // records to read again
  };

  explicit IndexSync(const common::Store& store);
  bool reopen(const common::Store& store, const char* why);
  void write_batch(const std::set<DirKey>* present);
  const common::Store* m_store = nullptr; // the store it was opened for (outlives this)
  // Brings one directory's rows up to date; false when it is to be tried again later.
  bool sync_dir(const common::Store& store, const DirKey& key, Dirty& dirty, int64_t now_ns);
  bool healthy(const common::Store& store);
  void write_failed(const common::Error& e);

  std::optional<common::index::Index> m_index;
  std::map<DirKey, common::index::DirState> m_stored; // during a scan
  std::vector<std::pair<DirKey, IndexedDir>> m_batch;
  size_t m_batch_records = 0;
  std::map<DirKey, Dirty> m_dirty;
  // The file as our last write left it: a change by anyone else shows as another stamp.
  struct Stamp {
    uint64_t dev = 0, ino = 0;
    int64_t size = 0, mtime_ns = 0;
    int64_t wal_size = 0, wal_mtime_ns = 0; // a commit of someone else's lands in the WAL
    bool operator==(const Stamp&) const = default;
  };
  Stamp stamp_now(const common::Store& store, struct stat& st) const;
  void stamp_file(const common::Store& store);
  Stamp m_file;
  bool m_suspect = false;
  bool m_failing = false; // the last write failed (logged once until one succeeds)
  std::chrono::steady_clock::time_point m_retry_at{};
  std::chrono::steady_clock::time_point m_takeover_at{};
};

} // namespace exporter
