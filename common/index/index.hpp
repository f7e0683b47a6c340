// The index: the store's records summarised in one SQLite file (WAL mode), so that a reader
// starting cold reads one file instead of every record. The files stay the truth: each
// <host>/<exe> directory's row keeps the directory's state (inode, mtime, entry count) as it was
// when its records were read, and a reader rescans only the directories whose state differs.
// The index is derived and disposable: missing, corrupt, truncated or foreign (wrong owner, a
// link, another schema) it is rebuilt by a writer or ignored by a reader, never trusted.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

struct sqlite3;

namespace common::index {

// <store>/.index/index.sqlite (and SQLite's -wal and -shm beside it), plus the writers' lock.
// A directory of its own so that the exporter's unit can be given write access to it alone.
inline constexpr const char* k_index_dir = ".index";
inline constexpr const char* k_index_file = "index.sqlite";
inline constexpr const char* k_lock_file = "writer.lock";
// The schema this build writes; older files are migrated, newer or unknown ones rebuilt.
inline constexpr int k_schema_version = 3;
// PRAGMA application_id of our files ("pcIX"): a database of anything else is foreign.
inline constexpr int32_t k_application_id = 0x70634958;
// Modes: like records (the store user and its group).
inline constexpr unsigned k_index_dir_mode = 0750;
inline constexpr unsigned k_index_file_mode = 0640;

// A directory's state when its records were read. Records and cores are only created, renamed
// over or unlinked, each of which changes the directory's mtime and, but for a rename over, its
// entry count.
struct DirState {
  uint64_t ino = 0;
  int64_t mtime_ns = 0;
  uint64_t entries = 0; // names in the directory
  bool operator==(const DirState&) const = default;
};

// How the exporter counts a record file (schema 3): read and counted by its labels, counted by
// its place in the store (too large or not a valid record), or not counted at all (a symbolic
// link, or not a regular file).
enum class Form : uint8_t { parsed = 0, by_place = 1, link = 2, not_regular = 3 };

// One record as list views, filters, counters and groups need it.
struct IndexedRecord {
  std::string id;
  bool listed = true; // false: a record that could not be read at all (counted, not listed)
  int64_t time = 0;
  std::string hostname;
  std::string executable;
  bool executable_deleted = false;
  int signal = 0;
  std::string signal_name;
  std::optional<int64_t> pid;
  std::optional<int64_t> uid;
  std::string comm;
  std::string core_reason;
  bool core_present = false;
  uint64_t core_size = 0;
  bool core_removed = false;
  bool core_file = false;
  std::string signature;
  std::string site;
  // What the exporter counts (schema 3). A row without a form (written by a reader that does not
  // count) makes the exporter read its directory's files again.
  std::optional<Form> form;
  uint64_t record_bytes = 0; // allocated bytes of the record file
  uint64_t core_bytes = 0;   // allocated bytes of its core (a regular file), 0 without
  bool operator==(const IndexedRecord&) const = default;
};

struct IndexedDir {
  DirState state;
  size_t malformed = 0; // records that did not parse (listed by their place, or not at all)
  std::vector<IndexedRecord> records;
};

using DirKey = std::pair<std::string, std::string>; // (host component, executable component)

// One group of crashes by signature: a derived view (the groups' own state lives in files).
struct GroupRow {
  std::string signature;
  int64_t first_seen = 0;
  int64_t last_seen = 0;
  uint64_t count = 0;
  std::vector<std::string> hosts; // distinct hostnames, sorted
};

enum class Access { read, write };

// Which records select() passes on: a superset of what a reader's filter wants, narrowed with
// the table's keys and indexes where they apply; the reader still checks every row it gets.
// An empty list means any value; values of one field are OR-ed, different fields AND-ed.
struct RecordQuery {
  std::vector<std::string> hosts;       // host components (the primary key's first column)
  std::vector<std::string> exes;        // executable components
  std::vector<std::string> hostnames;   // exact hostnames
  std::vector<std::string> executables; // exact executable paths
  std::vector<int> signals;
  std::vector<int64_t> pids;
  std::vector<int64_t> uids;
  std::vector<std::string> comms;              // exact comm
  std::vector<std::string> id_prefixes;        // lower-case hex
  std::vector<std::string> signature_prefixes; // of a non-empty signature, byte for byte
  std::optional<int64_t> since;                // inclusive, seconds since the epoch
  std::optional<int64_t> until;                // inclusive
  bool empty() const;
};

class Index {
public:
  // Opens the index of the store at `store_fd` (path `store_root`). Access::write takes the
  // writers' lock (without waiting) and creates, migrates or rebuilds the file as needed, each
  // rebuild logged once; it fails when the lock is held or the index cannot be written, and the
  // caller then reads. Access::read opens an existing, valid file read-only, or fails.
  static Expected<Index> open(int store_fd, const std::string& store_root, Access access);

  Index(Index&&) noexcept;
  Index& operator=(Index&&) noexcept;
  ~Index();

  Access access() const { return m_access; }
  // Why the file was rebuilt on open ("" when it was not).
  const std::string& rebuilt() const { return m_rebuilt; }

  // Every directory the index holds, with its records.
  Expected<std::map<DirKey, IndexedDir>> load() const;
  // The stored state of every directory (cheap: no records).
  Expected<std::map<DirKey, DirState>> states() const;
  // The stored directories with their states and malformed counts, without their records.
  Expected<std::map<DirKey, IndexedDir>> dirs() const;
  // Calls `fn` with every record `q` may select (unlisted ones too: `listed` says), in no
  // particular order.
  Expected<void> select(const RecordQuery& q,
                        const std::function<void(const DirKey&, IndexedRecord&&)>& fn) const;
  // Calls `fn` with the id of every record, listed or not.
  Expected<void> each_id(const std::function<void(const DirKey&, std::string&&)>& fn) const;
  // A read transaction: what dirs(), select() and each_id() return between the two comes from
  // one snapshot, whatever a writer commits meanwhile. end_read() after a failed begin is a no-op.
  Expected<void> begin_read();
  void end_read();
  // The groups of crashes with a signature, most crashes first.
  Expected<std::vector<GroupRow>> groups() const;

  // In one transaction: replaces the rows of `fresh` directories and drops every directory not
  // in `present`. A write error (disk full) rolls back: the index stays as it was, still valid.
  Expected<void> update(const std::vector<std::pair<DirKey, IndexedDir>>& fresh,
                        const std::set<DirKey>& present);

  // One directory as the index holds it (nullopt when it holds no row for it).
  Expected<std::optional<IndexedDir>> dir(const DirKey& key) const;
  // In one transaction: a directory's new state, its records in `put` added or replaced (by id),
  // those in `removed` dropped, its count of malformed records recomputed from its rows (records
  // whose form is not `parsed`). Rolls back on any error, like update().
  Expected<void> patch(const DirKey& key, const DirState& state,
                       const std::vector<IndexedRecord>& put,
                       const std::vector<std::string>& removed);
  // Drops a directory and its records (one that could not be read whole).
  Expected<void> forget(const DirKey& key);
  // Checks the file again, as open() does, through a connection of its own (so that no page this
  // one cached hides a change): its application id and schema version, and its pages (PRAGMA
  // quick_check). For a writer that saw another process touch the file.
  Expected<void> verify() const;
  // The directories with a record row that has no form (written by a reader that does not count).
  Expected<std::set<DirKey>> formless() const;

private:
  Index() = default;
  Expected<void> check_schema();
  Expected<void> migrate();

  sqlite3* m_db = nullptr;
  UniqueFd m_lock;
  Access m_access = Access::read;
  std::string m_rebuilt;
  std::string m_path; // of the file, for verify()
  bool m_reading = false;
};

// The schema steps, one per version: step i takes a database from version i to i + 1. Exposed so
// tests can build a file of an older version and watch it migrate.
const std::vector<const char*>& schema_steps();

// The state of an open directory now: its inode and mtime, and the names it holds.
Expected<DirState> dir_state(int dirfd);

} // namespace common::index
