#include "common/index/index.hpp"

#include "common/base/escape.hpp"
#include "common/base/io.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace common::index {

namespace {

constexpr int k_dir_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
// A reader waits this long for a writer's checkpoint; a writer for a reader's snapshot.
constexpr int k_busy_timeout_ms = 2000;

// The schema, one step per version. Version 1: the directories and their records. Version 2:
// the indexes list filters use and the groups view.
const std::vector<const char*> k_steps = {
    "CREATE TABLE dirs (host TEXT NOT NULL, exe TEXT NOT NULL, ino INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, entries INTEGER NOT NULL, malformed INTEGER NOT NULL,"
    " PRIMARY KEY (host, exe)) WITHOUT ROWID;"
    "CREATE TABLE records (host TEXT NOT NULL, exe TEXT NOT NULL, id TEXT NOT NULL,"
    " listed INTEGER NOT NULL, time INTEGER NOT NULL, hostname TEXT NOT NULL,"
    " executable TEXT NOT NULL, executable_deleted INTEGER NOT NULL, signal INTEGER NOT NULL,"
    " signal_name TEXT NOT NULL, pid INTEGER, uid INTEGER, comm TEXT NOT NULL,"
    " core_reason TEXT NOT NULL, core_present INTEGER NOT NULL, core_size INTEGER NOT NULL,"
    " core_removed INTEGER NOT NULL, core_file INTEGER NOT NULL, signature TEXT NOT NULL,"
    " site TEXT NOT NULL, PRIMARY KEY (host, exe, id)) WITHOUT ROWID;",
    "CREATE INDEX records_time ON records (time, id);"
    "CREATE INDEX records_signature ON records (signature) WHERE signature != '';"
    "CREATE VIEW groups AS SELECT signature, min(time) AS first_seen, max(time) AS last_seen,"
    " count(*) AS count, group_concat(DISTINCT hostname) AS hosts FROM records"
    " WHERE listed AND signature != '' GROUP BY signature;",
    // Version 3: what the exporter counts, so that it starts from the index too. A row of an
    // older version has no form: the exporter reads that directory's files again.
    "ALTER TABLE records ADD COLUMN form INTEGER;"
    "ALTER TABLE records ADD COLUMN record_bytes INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE records ADD COLUMN core_bytes INTEGER NOT NULL DEFAULT 0;",
};

constexpr const char* k_record_columns =
    "id, listed, time, hostname, executable, executable_deleted, signal, signal_name, pid, uid,"
    " comm, core_reason, core_present, core_size, core_removed, core_file, signature, site, form,"
    " record_bytes, core_bytes";
// The largest Form value a row may hold; anything else is read as "no form".
constexpr int64_t k_max_form = static_cast<int64_t>(Form::not_regular);

std::string sqlite_message(sqlite3* db, const std::string& what) {
  return what + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
}

// A prepared statement, finalized on every path.
class Statement {
public:
  Statement(sqlite3* db, const char* sql) : m_db(db) {
    m_rc = sqlite3_prepare_v2(db, sql, -1, &m_stmt, nullptr);
  }
  ~Statement() { sqlite3_finalize(m_stmt); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  bool ok() const { return m_rc == SQLITE_OK; }
  sqlite3_stmt* get() const { return m_stmt; }
  void bind(int i, int64_t v) { sqlite3_bind_int64(m_stmt, i, v); }
  void bind(int i, const std::string& v) {
    sqlite3_bind_text(m_stmt, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  void bind(int i, const std::optional<int64_t>& v) {
    v ? sqlite3_bind_int64(m_stmt, i, *v) : sqlite3_bind_null(m_stmt, i);
  }
  int step() { return sqlite3_step(m_stmt); }
  void reset() {
    sqlite3_reset(m_stmt);
    sqlite3_clear_bindings(m_stmt);
  }
  int64_t i64(int col) const { return sqlite3_column_int64(m_stmt, col); }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(m_stmt, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(m_stmt, col)))
             : std::string();
  }
  // Valid until the next step() or reset().
  std::string_view view(int col) const {
    const auto* p = sqlite3_column_text(m_stmt, col);
    return p ? std::string_view(reinterpret_cast<const char*>(p),
                                static_cast<size_t>(sqlite3_column_bytes(m_stmt, col)))
             : std::string_view();
  }
  std::optional<int64_t> opt(int col) const {
    if (sqlite3_column_type(m_stmt, col) == SQLITE_NULL) {
      return std::nullopt;
    }
    return i64(col);
  }

private:
  sqlite3* m_db;
  sqlite3_stmt* m_stmt = nullptr;
  int m_rc;
};

Expected<void> exec(sqlite3* db, const char* sql, const std::string& what) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = what + ": " + (err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    return fail(msg);
  }
  return {};
}

Expected<int64_t> pragma_int(sqlite3* db, const char* sql) {
  Statement st(db, sql);
  if (!st.ok() || st.step() != SQLITE_ROW) {
    return fail(sqlite_message(db, std::string("Failed to read ") + sql));
  }
  return st.i64(0);
}

// The SQL that inserts one record row (or replaces the row of its id).
std::string insert_record_sql() {
  return std::string("INSERT OR REPLACE INTO records (host, exe, ") + k_record_columns +
         ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
         " ?18, ?19, ?20, ?21, ?22, ?23)";
}

// The SQL that selects k_record_columns of the rows `where` names.
std::string select_records_sql(const char* where) {
  return std::string("SELECT host, exe, ") + k_record_columns + " FROM records " + where;
}

// Binds and inserts one record row of directory `key`; false on a write error.
bool insert_record(Statement& put, const DirKey& key, const IndexedRecord& r) {
  int i = 1;
  put.bind(i++, key.first);
  put.bind(i++, key.second);
  put.bind(i++, r.id);
  put.bind(i++, int64_t{r.listed});
  put.bind(i++, r.time);
  put.bind(i++, r.hostname);
  put.bind(i++, r.executable);
  put.bind(i++, int64_t{r.executable_deleted});
  put.bind(i++, int64_t{r.signal});
  put.bind(i++, r.signal_name);
  put.bind(i++, r.pid);
  put.bind(i++, r.uid);
  put.bind(i++, r.comm);
  put.bind(i++, r.core_reason);
  put.bind(i++, int64_t{r.core_present});
  // SQLite integers are signed: sizes above 2^63 do not occur (a core is bounded).
  put.bind(i++, static_cast<int64_t>(r.core_size));
  put.bind(i++, int64_t{r.core_removed});
  put.bind(i++, int64_t{r.core_file});
  put.bind(i++, r.signature);
  put.bind(i++, r.site);
  put.bind(i++, r.form ? std::optional<int64_t>(static_cast<int64_t>(*r.form)) : std::nullopt);
  put.bind(i++, static_cast<int64_t>(r.record_bytes));
  put.bind(i++, static_cast<int64_t>(r.core_bytes));
  const int rc = put.step();
  put.reset();
  return rc == SQLITE_DONE;
}

// The record of a row selected by select_records_sql() (columns from 2 on).
IndexedRecord record_of(const Statement& st) {
  IndexedRecord r;
  r.id = st.text(2);
  r.listed = st.i64(3) != 0;
  r.time = st.i64(4);
  r.hostname = st.text(5);
  r.executable = st.text(6);
  r.executable_deleted = st.i64(7) != 0;
  r.signal = static_cast<int>(st.i64(8));
  r.signal_name = st.text(9);
  r.pid = st.opt(10);
  r.uid = st.opt(11);
  r.comm = st.text(12);
  r.core_reason = st.text(13);
  r.core_present = st.i64(14) != 0;
  r.core_size = static_cast<uint64_t>(st.i64(15));
  r.core_removed = st.i64(16) != 0;
  r.core_file = st.i64(17) != 0;
  r.signature = st.text(18);
  r.site = st.text(19);
  // A value no writer produces is no form: the directory's files are read again.
  if (const auto form = st.opt(20); form && *form >= 0 && *form <= k_max_form) {
    r.form = static_cast<Form>(*form);
  }
  // Negative sizes are no writer's either; read as unknown (0).
  r.record_bytes = static_cast<uint64_t>(std::max<int64_t>(st.i64(21), 0));
  r.core_bytes = static_cast<uint64_t>(std::max<int64_t>(st.i64(22), 0));
  return r;
}

// The index file's path for SQLite. The directory it is in was opened without following links
// and checked; SQLITE_OPEN_NOFOLLOW refuses a link in the file's place.
std::string file_path(const std::string& root) {
  return root + "/" + k_index_dir + "/" + k_index_file;
}

// Checks that the file (if any) is a regular file of the store's owner.
Expected<void> check_file(int index_dirfd, uid_t owner, bool& exists) {
  struct stat st {};
  exists = false;
  if (::fstatat(index_dirfd, k_index_file, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) {
      return {};
    }
    return fail_errno("Failed to stat the index", errno);
  }
  exists = true;
  if (!S_ISREG(st.st_mode)) {
    return fail("the index is not a regular file");
  }
  if (st.st_uid != owner) {
    return fail("the index belongs to uid " + std::to_string(st.st_uid) +
                ", not to the store's owner");
  }
  return {};
}

void remove_files(int index_dirfd) {
  for (const std::string suffix : {"", "-wal", "-shm", "-journal"}) {
    ::unlinkat(index_dirfd, (std::string(k_index_file) + suffix).c_str(), 0);
  }
}

} // namespace

const std::vector<const char*>& schema_steps() {
  return k_steps;
}

Expected<DirState> dir_state(int dirfd) {
  struct stat st {};
  if (::fstat(dirfd, &st) != 0) {
    return fail_errno("Failed to stat a store directory", errno);
  }
  DirState s;
  s.ino = static_cast<uint64_t>(st.st_ino);
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  auto listed = list_dir(
      dirfd, [&](std::string_view) { ++s.entries; }, Hidden::include);
  if (!listed) {
    return std::unexpected(listed.error());
  }
  return s;
}

Index::Index(Index&& o) noexcept
    : m_db(std::exchange(o.m_db, nullptr)), m_lock(std::move(o.m_lock)), m_access(o.m_access),
      m_rebuilt(std::move(o.m_rebuilt)), m_path(std::move(o.m_path)),
      m_reading(std::exchange(o.m_reading, false)) {}

Index& Index::operator=(Index&& o) noexcept {
  if (this != &o) {
    sqlite3_close(m_db);
    m_db = std::exchange(o.m_db, nullptr);
    m_lock = std::move(o.m_lock);
    m_access = o.m_access;
    m_rebuilt = std::move(o.m_rebuilt);
    m_path = std::move(o.m_path);
    m_reading = std::exchange(o.m_reading, false);
  }
  return *this;
}

Index::~Index() {
  sqlite3_close(m_db);
}

Expected<void> Index::check_schema() {
  auto app = pragma_int(m_db, "PRAGMA application_id");
  if (!app) {
    return std::unexpected(app.error());
  }
  auto version = pragma_int(m_db, "PRAGMA user_version");
  if (!version) {
    return std::unexpected(version.error());
  }
  if (*app == 0 && *version == 0) {
    auto tables = pragma_int(m_db, "SELECT count(*) FROM sqlite_master");
    if (!tables) {
      return std::unexpected(tables.error());
    }
    if (*tables == 0) {
      return {}; // a new, empty file: migrate() creates the schema
    }
  }
  if (*app != k_application_id) {
    return fail("the index is another application's database");
  }
  if (*version < 1 || *version > k_schema_version) {
    return fail("the index has schema version " + std::to_string(*version) + ", this build " +
                std::to_string(k_schema_version));
  }
  if (m_access == Access::read && *version != k_schema_version) {
    return fail("the index has schema version " + std::to_string(*version) +
                " and is migrated by its writer");
  }
  return {};
}

Expected<void> Index::migrate() {
  auto version = pragma_int(m_db, "PRAGMA user_version");
  if (!version) {
    return std::unexpected(version.error());
  }
  for (auto v = static_cast<size_t>(*version); v < k_steps.size(); ++v) {
    // Each step and its version number in one transaction: a step half-done is never seen.
    const std::string sql = std::string("BEGIN IMMEDIATE;") + k_steps[v] +
                            "PRAGMA application_id = " + std::to_string(k_application_id) +
                            "; PRAGMA user_version = " + std::to_string(v + 1) + "; COMMIT;";
    if (auto done = exec(m_db, sql.c_str(), "Failed to migrate the index"); !done) {
      exec(m_db, "ROLLBACK", "rollback");
      return done;
    }
  }
  return {};
}

Expected<Index> Index::open(int store_fd, const std::string& store_root, Access access) {
  struct stat root_st {};
  if (::fstat(store_fd, &root_st) != 0) {
    return fail_errno("Failed to stat store " + quoted(store_root), errno);
  }
  const uid_t owner = root_st.st_uid;
  if (access == Access::write && ::geteuid() != owner) {
    return fail("Only the store's owner writes its index");
  }
  if (access == Access::write && ::mkdirat(store_fd, k_index_dir, k_index_dir_mode) != 0 &&
      errno != EEXIST) {
    return fail_errno("Failed to create the index directory", errno);
  }
  const int dfd = ::openat(store_fd, k_index_dir, k_dir_flags);
  if (dfd < 0) {
    return fail_errno("Failed to open the index directory", errno);
  }
  UniqueFd index_dir(dfd);
  struct stat dir_st {};
  if (::fstat(dfd, &dir_st) != 0 || dir_st.st_uid != owner) {
    return fail("the index directory does not belong to the store's owner");
  }

  Index index;
  index.m_access = access;
  index.m_path = file_path(store_root);
  if (access == Access::write) {
    const int lfd =
        ::openat(dfd, k_lock_file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, k_index_file_mode);
    if (lfd < 0) {
      return fail_errno("Failed to open the index lock", errno);
    }
    index.m_lock = UniqueFd(lfd);
    // One writer: a second one (another exporter, a vacuum) reads instead of waiting.
    if (::flock(lfd, LOCK_EX | LOCK_NB) != 0) {
      return fail_errno("The index has another writer", errno);
    }
  }

  const std::string path = file_path(store_root);
  auto attempt = [&]() -> Expected<void> {
    bool exists = false;
    if (auto ok = check_file(dfd, owner, exists); !ok) {
      return ok;
    }
    if (!exists && access == Access::read) {
      return fail("no index");
    }
    const int flags = SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX |
                      (access == Access::write ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                                               : SQLITE_OPEN_READONLY);
    sqlite3_close(index.m_db);
    index.m_db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &index.m_db, flags, nullptr) != SQLITE_OK) {
      return fail(sqlite_message(index.m_db, "Failed to open the index"));
    }
    sqlite3_busy_timeout(index.m_db, k_busy_timeout_ms);
    if (access == Access::write) {
      // Readers like records: the store user and its group, whatever the writer's umask.
      if (const int f = ::openat(dfd, k_index_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC); f >= 0) {
        UniqueFd file(f);
        if (::fchmod(f, k_index_file_mode) != 0) {
          return fail_errno("Failed to set the index's mode", errno);
        }
      }
      if (auto wal = exec(index.m_db, "PRAGMA journal_mode = WAL", "Failed to enable WAL"); !wal) {
        return wal;
      }
      // The -wal and -shm files stay when the writer closes: a reader who may not create files
      // in the index's directory (the store's group) can only open a WAL database whose -shm
      // exists (SQLite then maps it read-only).
      // Truncated to zero at each checkpoint, so no stale frames outlive the writer.
      int persist = 1;
      sqlite3_file_control(index.m_db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
      if (auto limit = exec(index.m_db, "PRAGMA journal_size_limit = 0", "Failed to limit the WAL");
          !limit) {
        return limit;
      }
      // The index is derived from the files: a commit lost to a power cut costs a rescan of
      // those directories, never a wrong answer (WAL keeps the file consistent), so commits
      // need not wait for an fsync each.
      if (auto sync =
              exec(index.m_db, "PRAGMA synchronous = NORMAL", "Failed to set the index's sync");
          !sync) {
        return sync;
      }
    }
    if (auto ok = index.check_schema(); !ok) {
      return ok;
    }
    if (access == Access::write) {
      if (auto ok = index.migrate(); !ok) {
        return ok;
      }
      // A truncated or damaged file often opens fine; its pages tell.
      Statement check(index.m_db, "PRAGMA quick_check");
      if (!check.ok() || check.step() != SQLITE_ROW || check.text(0) != "ok") {
        return fail(sqlite_message(index.m_db, "the index failed its check"));
      }
    }
    return {};
  };
  auto opened = attempt();
  if (!opened && access == Access::write) {
    // Never trusted, never fatal: the files are the truth, so the index starts again empty.
    index.m_rebuilt = opened.error().message;
    sqlite3_close(index.m_db);
    index.m_db = nullptr;
    remove_files(dfd);
    opened = attempt();
  }
  if (!opened) {
    return std::unexpected(opened.error());
  }
  return index;
}

Expected<std::map<DirKey, DirState>> Index::states() const {
  std::map<DirKey, DirState> out;
  Statement st(m_db, "SELECT host, exe, ino, mtime_ns, entries FROM dirs");
  if (!st.ok()) {
    return fail(sqlite_message(m_db, "Failed to read the index"));
  }
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) {
    out[{st.text(0), st.text(1)}] =
        DirState{static_cast<uint64_t>(st.i64(2)), st.i64(3), static_cast<uint64_t>(st.i64(4))};
  }
  if (rc != SQLITE_DONE) {
    return fail(sqlite_message(m_db, "Failed to read the index"));
  }
  return out;
}

Expected<std::map<DirKey, IndexedDir>> Index::load() const {
  // One read transaction: the directories and their records from the same snapshot.
  if (auto begun = exec(m_db, "BEGIN", "Failed to read the index"); !begun) {
    return std::unexpected(begun.error());
  }
  auto done = [&](auto result) {
    exec(m_db, "COMMIT", "commit");
    return result;
  };
  auto listed = dirs();
  if (!listed) {
    return done(std::move(listed));
  }
  std::map<DirKey, IndexedDir> out = std::move(*listed);
  Statement st(m_db, select_records_sql("ORDER BY host, exe, id").c_str());
  int rc = st.ok() ? SQLITE_ROW : SQLITE_ERROR;
  IndexedDir* dir = nullptr;
  DirKey last;
  while (st.ok() && (rc = st.step()) == SQLITE_ROW) {
    DirKey key{st.text(0), st.text(1)};
    if (!dir || key != last) {
      auto it = out.find(key);
      if (it == out.end()) {
        return done(Expected<std::map<DirKey, IndexedDir>>(
            fail("Malformed index: a record of a directory it does not hold")));
      }
      dir = &it->second;
      last = std::move(key);
    }
    IndexedRecord r = record_of(st);
    dir->records.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) {
    return done(Expected<std::map<DirKey, IndexedDir>>(
        fail(sqlite_message(m_db, "Failed to read the index"))));
  }
  return done(Expected<std::map<DirKey, IndexedDir>>(std::move(out)));
}

bool RecordQuery::empty() const {
  return hosts.empty() && exes.empty() && hostnames.empty() && executables.empty() &&
         signals.empty() && pids.empty() && uids.empty() && comms.empty() && id_prefixes.empty() &&
         signature_prefixes.empty() && !since && !until;
}

Expected<void> Index::begin_read() {
  if (m_reading) {
    return {};
  }
  if (auto begun = exec(m_db, "BEGIN", "Failed to read the index"); !begun) {
    return begun;
  }
  m_reading = true;
  return {};
}

void Index::end_read() {
  if (m_reading) {
    exec(m_db, "COMMIT", "commit");
    m_reading = false;
  }
}

Expected<std::map<DirKey, IndexedDir>> Index::dirs() const {
  std::map<DirKey, IndexedDir> out;
  Statement st(m_db, "SELECT host, exe, ino, mtime_ns, entries, malformed FROM dirs");
  int rc = st.ok() ? SQLITE_ROW : SQLITE_ERROR;
  while (st.ok() && (rc = st.step()) == SQLITE_ROW) {
    auto& d = out[{st.text(0), st.text(1)}];
    d.state =
        DirState{static_cast<uint64_t>(st.i64(2)), st.i64(3), static_cast<uint64_t>(st.i64(4))};
    d.malformed = static_cast<size_t>(st.i64(5));
  }
  if (rc != SQLITE_DONE) {
    return fail(sqlite_message(m_db, "Failed to read the index"));
  }
  return out;
}

namespace {

// Appends "AND column IN (?n, …)" for a non-empty list, numbering the parameters from `next`.
template <typename T>
void where_in(std::string& sql, const char* column, const std::vector<T>& values, int& next) {
  if (values.empty()) {
    return;
  }
  sql += std::string(" AND ") + column + " IN (";
  for (size_t i = 0; i < values.size(); ++i) {
    sql += (i ? ", ?" : "?") + std::to_string(next++);
  }
  sql += ")";
}

template <typename T>
void bind_all(Statement& st, const std::vector<T>& values, int& next) {
  for (const auto& v : values) {
    if constexpr (std::is_same_v<T, int>) {
      st.bind(next++, int64_t{v});
    } else {
      st.bind(next++, v);
    }
  }
}

} // namespace

Expected<void> Index::select(const RecordQuery& q,
                             const std::function<void(const DirKey&, IndexedRecord&&)>& fn) const {
  // Every value is a bound parameter; only the number of them shapes the text. The lists are
  // the command line's, so their lengths are bounded by it (and by SQLite's parameter limit,
  // beyond which prepare fails and the caller reads the files).
  std::string sql = select_records_sql("WHERE 1");
  int next = 1;
  where_in(sql, "host", q.hosts, next);
  where_in(sql, "exe", q.exes, next);
  where_in(sql, "hostname", q.hostnames, next);
  where_in(sql, "executable", q.executables, next);
  where_in(sql, "signal", q.signals, next);
  where_in(sql, "pid", q.pids, next);
  where_in(sql, "uid", q.uids, next);
  where_in(sql, "comm", q.comms, next);
  const int first_prefix = next;
  if (!q.id_prefixes.empty()) {
    // A prefix as a range of the ordered ids ('~' sorts after every hex digit).
    sql += " AND (";
    for (size_t i = 0; i < q.id_prefixes.size(); ++i) {
      sql += (i ? " OR " : "") + std::string("(id >= ?") + std::to_string(next) + " AND id < ?" +
             std::to_string(next + 1) + ")";
      next += 2;
    }
    sql += ")";
  }
  const int first_signature = next;
  if (!q.signature_prefixes.empty()) {
    // Bytes, not characters (a signature need not be valid UTF-8): the prefix compared as a
    // blob; `signature >= ?` lets the signature index start the scan there.
    sql += " AND signature != '' AND (";
    for (size_t i = 0; i < q.signature_prefixes.size(); ++i) {
      const std::string n = std::to_string(next++);
      sql += (i ? " OR " : "") + std::string("(signature >= ?") + n +
             " AND substr(CAST(signature AS BLOB), 1, length(CAST(?" + n + " AS BLOB))) = CAST(?" +
             n + " AS BLOB))";
    }
    sql += ")";
  }
  const int since_at = next;
  if (q.since) {
    sql += " AND time >= ?" + std::to_string(next++);
  }
  const int until_at = next;
  if (q.until) {
    sql += " AND time <= ?" + std::to_string(next++);
  }
  Statement st(m_db, sql.c_str());
  if (!st.ok()) {
    return fail(sqlite_message(m_db, "Failed to read the index"));
  }
  int at = 1;
  bind_all(st, q.hosts, at);
  bind_all(st, q.exes, at);
  bind_all(st, q.hostnames, at);
  bind_all(st, q.executables, at);
  bind_all(st, q.signals, at);
  bind_all(st, q.pids, at);
  bind_all(st, q.uids, at);
  bind_all(st, q.comms, at);
  // SQLITE_STATIC binds: the ends of the ranges live until the statement is done.
  std::vector<std::string> ends;
  ends.reserve(q.id_prefixes.size());
  at = first_prefix;
  for (const auto& p : q.id_prefixes) {
    ends.push_back(p + "~");
    st.bind(at++, p);
    st.bind(at++, ends.back());
  }
  at = first_signature;
  for (const auto& p : q.signature_prefixes) {
    st.bind(at++, p);
  }
  if (q.since) {
    st.bind(since_at, *q.since);
  }
  if (q.until) {
    st.bind(until_at, *q.until);
  }
  int rc;
  DirKey key;
  while ((rc = st.step()) == SQLITE_ROW) {
    // Rows of one directory usually come together: the key's strings are reused.
    if (key.first != st.view(0) || key.second != st.view(1)) {
      key = {st.text(0), st.text(1)};
    }
    fn(key, record_of(st));
  }
  if (rc != SQLITE_DONE) {
    return fail(sqlite_message(m_db, "Failed to read the index"));
  }
  return {};
}

Expected<void> Index::each_id(const std::function<void(const DirKey&, std::string&&)>& fn) const {
  Statement st(m_db, "SELECT host, exe, id FROM records");
  if (!st.ok()) {
    return fail(sqlite_message(m_db, "Failed to read the index"));
  }
  int rc;
  DirKey key;
  while ((rc = st.step()) == SQLITE_ROW) {
    if (key.first != st.view(0) || key.second != st.view(1)) {
      key = {st.text(0), st.text(1)};
    }
    fn(key, st.text(2));
  }
  if (rc != SQLITE_DONE) {
    return fail(sqlite_message(m_db, "Failed to read the index"));
  }
  return {};
}

Expected<std::vector<GroupRow>> Index::groups() const {
  std::vector<GroupRow> out;
  Statement st(m_db, "SELECT signature, first_seen, last_seen, count, hosts FROM groups"
                     " ORDER BY count DESC, signature");
  int rc = st.ok() ? SQLITE_ROW : SQLITE_ERROR;
  while (st.ok() && (rc = st.step()) == SQLITE_ROW) {
    GroupRow g{st.text(0), st.i64(1), st.i64(2), static_cast<uint64_t>(st.i64(3)), {}};
    const std::string hosts = st.text(4);
    for (size_t start = 0; start <= hosts.size() && !hosts.empty();) {
      const size_t comma = hosts.find(',', start);
      g.hosts.push_back(hosts.substr(start, comma - start));
      if (comma == std::string::npos) {
        break;
      }
      start = comma + 1;
    }
    std::sort(g.hosts.begin(), g.hosts.end());
    out.push_back(std::move(g));
  }
  if (rc != SQLITE_DONE) {
    return fail(sqlite_message(m_db, "Failed to read the index's groups"));
  }
  return out;
}

Expected<void> Index::update(const std::vector<std::pair<DirKey, IndexedDir>>& fresh,
                             const std::set<DirKey>& present) {
  if (m_access != Access::write) {
    return fail("The index is open read-only");
  }
  if (auto begun = exec(m_db, "BEGIN IMMEDIATE", "Failed to update the index"); !begun) {
    return begun;
  }
  auto rollback = [&](const std::string& what) -> Expected<void> {
    const std::string msg = sqlite_message(m_db, what);
    exec(m_db, "ROLLBACK", "rollback");
    return fail(msg);
  };
  {
    std::vector<DirKey> gone;
    auto stored = states();
    if (!stored) {
      exec(m_db, "ROLLBACK", "rollback");
      return std::unexpected(stored.error());
    }
    for (const auto& [key, state] : *stored) {
      if (!present.contains(key)) {
        gone.push_back(key);
      }
    }
    Statement del_dir(m_db, "DELETE FROM dirs WHERE host = ?1 AND exe = ?2");
    Statement del_rec(m_db, "DELETE FROM records WHERE host = ?1 AND exe = ?2");
    Statement put_dir(m_db, "INSERT INTO dirs VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    Statement put_rec(m_db, insert_record_sql().c_str());
    if (!del_dir.ok() || !del_rec.ok() || !put_dir.ok() || !put_rec.ok()) {
      return rollback("Failed to update the index");
    }
    auto drop = [&](const DirKey& key) {
      for (Statement* s : {&del_dir, &del_rec}) {
        s->bind(1, key.first);
        s->bind(2, key.second);
        const int rc = s->step();
        s->reset();
        if (rc != SQLITE_DONE) {
          return false;
        }
      }
      return true;
    };
    for (const auto& key : gone) {
      if (!drop(key)) {
        return rollback("Failed to update the index");
      }
    }
    for (const auto& [key, d] : fresh) {
      if (!drop(key)) {
        return rollback("Failed to update the index");
      }
      put_dir.bind(1, key.first);
      put_dir.bind(2, key.second);
      put_dir.bind(3, static_cast<int64_t>(d.state.ino));
      put_dir.bind(4, d.state.mtime_ns);
      put_dir.bind(5, static_cast<int64_t>(d.state.entries));
      put_dir.bind(6, static_cast<int64_t>(d.malformed));
      const int rc = put_dir.step();
      put_dir.reset();
      if (rc != SQLITE_DONE) {
        return rollback("Failed to update the index");
      }
      for (const auto& r : d.records) {
        if (!insert_record(put_rec, key, r)) {
          return rollback("Failed to update the index");
        }
      }
    }
  }
  if (sqlite3_exec(m_db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return rollback("Failed to commit the index");
  }
  return {};
}

Expected<std::optional<IndexedDir>> Index::dir(const DirKey& key) const {
  if (auto begun = exec(m_db, "BEGIN", "Failed to read the index"); !begun) {
    return std::unexpected(begun.error());
  }
  auto done = [&](auto result) {
    exec(m_db, "COMMIT", "commit");
    return result;
  };
  using Result = Expected<std::optional<IndexedDir>>;
  Statement row(m_db, "SELECT ino, mtime_ns, entries, malformed FROM dirs"
                      " WHERE host = ?1 AND exe = ?2");
  if (!row.ok()) {
    return done(Result(fail(sqlite_message(m_db, "Failed to read the index"))));
  }
  row.bind(1, key.first);
  row.bind(2, key.second);
  const int rc = row.step();
  if (rc == SQLITE_DONE) {
    return done(Result(std::nullopt));
  }
  if (rc != SQLITE_ROW) {
    return done(Result(fail(sqlite_message(m_db, "Failed to read the index"))));
  }
  IndexedDir d;
  d.state =
      DirState{static_cast<uint64_t>(row.i64(0)), row.i64(1), static_cast<uint64_t>(row.i64(2))};
  d.malformed = static_cast<size_t>(row.i64(3));
  Statement st(m_db, select_records_sql("WHERE host = ?1 AND exe = ?2 ORDER BY id").c_str());
  if (!st.ok()) {
    return done(Result(fail(sqlite_message(m_db, "Failed to read the index"))));
  }
  st.bind(1, key.first);
  st.bind(2, key.second);
  int rrc;
  while ((rrc = st.step()) == SQLITE_ROW) {
    d.records.push_back(record_of(st));
  }
  if (rrc != SQLITE_DONE) {
    return done(Result(fail(sqlite_message(m_db, "Failed to read the index"))));
  }
  return done(Result(std::move(d)));
}

Expected<void> Index::patch(const DirKey& key, const DirState& state,
                            const std::vector<IndexedRecord>& put,
                            const std::vector<std::string>& removed) {
  if (m_access != Access::write) {
    return fail("The index is open read-only");
  }
  if (auto begun = exec(m_db, "BEGIN IMMEDIATE", "Failed to update the index"); !begun) {
    return begun;
  }
  auto rollback = [&](const std::string& what) -> Expected<void> {
    const std::string msg = sqlite_message(m_db, what);
    exec(m_db, "ROLLBACK", "rollback");
    return fail(msg);
  };
  {
    Statement del(m_db, "DELETE FROM records WHERE host = ?1 AND exe = ?2 AND id = ?3");
    Statement ins(m_db, insert_record_sql().c_str());
    // The directory's row last: its malformed count is that of the rows now there.
    Statement dir(m_db, "INSERT OR REPLACE INTO dirs (host, exe, ino, mtime_ns, entries, malformed)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, (SELECT count(*) FROM records"
                        " WHERE host = ?1 AND exe = ?2 AND (form IS NULL OR form != 0)))");
    if (!del.ok() || !ins.ok() || !dir.ok()) {
      return rollback("Failed to update the index");
    }
    for (const auto& id : removed) {
      del.bind(1, key.first);
      del.bind(2, key.second);
      del.bind(3, id);
      const int rc = del.step();
      del.reset();
      if (rc != SQLITE_DONE) {
        return rollback("Failed to update the index");
      }
    }
    for (const auto& r : put) {
      if (!insert_record(ins, key, r)) {
        return rollback("Failed to update the index");
      }
    }
    dir.bind(1, key.first);
    dir.bind(2, key.second);
    dir.bind(3, static_cast<int64_t>(state.ino));
    dir.bind(4, state.mtime_ns);
    dir.bind(5, static_cast<int64_t>(state.entries));
    if (dir.step() != SQLITE_DONE) {
      return rollback("Failed to update the index");
    }
  }
  if (sqlite3_exec(m_db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return rollback("Failed to commit the index");
  }
  return {};
}

Expected<void> Index::forget(const DirKey& key) {
  if (m_access != Access::write) {
    return fail("The index is open read-only");
  }
  if (auto begun = exec(m_db, "BEGIN IMMEDIATE", "Failed to update the index"); !begun) {
    return begun;
  }
  for (const char* sql : {"DELETE FROM dirs WHERE host = ?1 AND exe = ?2",
                          "DELETE FROM records WHERE host = ?1 AND exe = ?2"}) {
    Statement st(m_db, sql);
    if (st.ok()) {
      st.bind(1, key.first);
      st.bind(2, key.second);
    }
    if (!st.ok() || st.step() != SQLITE_DONE) {
      const std::string msg = sqlite_message(m_db, "Failed to update the index");
      exec(m_db, "ROLLBACK", "rollback");
      return fail(msg);
    }
  }
  if (sqlite3_exec(m_db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    const std::string msg = sqlite_message(m_db, "Failed to commit the index");
    exec(m_db, "ROLLBACK", "rollback");
    return fail(msg);
  }
  return {};
}

Expected<void> Index::verify() const {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(m_path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> own(db, sqlite3_close);
  if (rc != SQLITE_OK) {
    return fail(sqlite_message(db, "Failed to open the index"));
  }
  sqlite3_busy_timeout(db, k_busy_timeout_ms);
  auto app = pragma_int(db, "PRAGMA application_id");
  auto version = pragma_int(db, "PRAGMA user_version");
  if (!app || !version) {
    return std::unexpected(!app ? app.error() : version.error());
  }
  if (*app != k_application_id) {
    return fail("the index is another application's database");
  }
  if (*version != k_schema_version) {
    return fail("the index has schema version " + std::to_string(*version) + ", this build " +
                std::to_string(k_schema_version));
  }
  Statement check(db, "PRAGMA quick_check");
  if (!check.ok() || check.step() != SQLITE_ROW || check.text(0) != "ok") {
    return fail(sqlite_message(db, "the index failed its check"));
  }
  return {};
}

Expected<std::set<DirKey>> Index::formless() const {
  std::set<DirKey> out;
  Statement st(m_db, "SELECT DISTINCT host, exe FROM records WHERE form IS NULL");
  int rc = st.ok() ? SQLITE_ROW : SQLITE_ERROR;
  while (st.ok() && (rc = st.step()) == SQLITE_ROW) {
    out.insert({st.text(0), st.text(1)});
  }
  if (rc != SQLITE_DONE) {
    return fail(sqlite_message(m_db, "Failed to read the index"));
  }
  return out;
}

} // namespace common::index
